"""`python -m kickstand.cloud`: migrate and seed (idempotent) in a fresh folder; the ingest slot."""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import create_engine, inspect

from kickstand.cloud.__main__ import main
from kickstand.cloud.models import Base
from kickstand.cloud.seed import run_seed


def run(*args: str, cwd: Path, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """The command in ``cwd``, without the caller's cloud settings (plus ``env``)."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "ENVIRONMENT", "JWT_SECRET")
    }
    return subprocess.run(
        [sys.executable, "-m", "kickstand.cloud", *args],
        cwd=cwd,
        env={**clean, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_migrate_then_seed_twice(tmp_path: Path) -> None:
    migrated = run("migrate", cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    db = tmp_path / "var" / "kickstand.sqlite3"
    assert db.exists()
    tables = set(inspect(create_engine(f"sqlite:///{db}")).get_table_names())
    assert set(Base.metadata.tables) <= tables and "alembic_version" in tables
    first = run("seed", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "alice@example.com / alice-demo-1" in first.stdout
    assert "rows created" in first.stdout and " 0 rows created" not in first.stdout
    # Again, in-process (same code path as the command): nothing new is created.
    second = asyncio.run(run_seed(f"sqlite+aiosqlite:///{db}", environment="development"))
    assert ": 0 rows created" in second


def test_ingest_slot_reports_clearly_when_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_import = importlib.import_module

    def no_ingest(name: str, package: str | None = None) -> ModuleType:
        if name.startswith("kickstand.cloud.ingest"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", no_ingest)
    assert main(["ingest"]) == 2
    assert "expected kickstand.cloud.ingest.__main__:run" in capsys.readouterr().err


def test_unknown_subcommand_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["fly"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err
