"""Settings: secrets policy, defaults, nothing built at import time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from kickstand.cloud.config import Settings


def test_development_generates_and_keeps_a_secret(tmp_path: Path) -> None:
    first = Settings(ENVIRONMENT="development", VAR_DIR=tmp_path / "var")
    second = Settings(ENVIRONMENT="development", VAR_DIR=tmp_path / "var")
    assert first.jwt_secret == second.jwt_secret
    assert len(first.jwt_secret) >= 32
    assert (tmp_path / "var" / "jwt-secret").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("secret", [None, "changethis", "secret", "short-but-not-placeholder"])
def test_production_refuses_missing_placeholder_or_short_secret(
    secret: str | None, tmp_path: Path
) -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(ENVIRONMENT="production", JWT_SECRET=secret, VAR_DIR=tmp_path)


def test_production_accepts_a_real_secret(tmp_path: Path) -> None:
    s = Settings(ENVIRONMENT="production", JWT_SECRET="k" * 48, VAR_DIR=tmp_path)
    assert s.DATABASE_URL == "sqlite+aiosqlite:///var/kickstand.sqlite3"
    assert s.MQTT_URL is None and s.INFLUX_URL is None
    assert not (tmp_path / "jwt-secret").exists()


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u@db/k")
    monkeypatch.setenv("MQTT_URL", "mqtt://broker:1883")
    monkeypatch.setenv("COMMAND_TIMEOUT_S", "2.5")
    monkeypatch.setenv("ENVIRONMENT", "bogus")
    with pytest.raises(ValidationError, match="ENVIRONMENT"):
        Settings(VAR_DIR=tmp_path)
    monkeypatch.setenv("ENVIRONMENT", "development")
    s = Settings(VAR_DIR=tmp_path)
    assert s.DATABASE_URL.startswith("postgresql") and s.MQTT_URL == "mqtt://broker:1883"
    assert s.COMMAND_TIMEOUT_S == 2.5


def test_importing_the_cloud_builds_nothing(tmp_path: Path) -> None:
    code = (
        "import kickstand.cloud.api, kickstand.cloud.api.main, kickstand.cloud.trips, "
        "kickstand.cloud.seed, kickstand.cloud.__main__; import os; print(sorted(os.listdir('.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"  # no var/, no database, no secret file
