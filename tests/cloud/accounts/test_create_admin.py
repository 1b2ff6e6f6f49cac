"""The first administrator of a fresh deployment (`python -m kickstand.cloud create-admin`),
and the demo seed refusing to run outside development. Run as commands, in a fresh folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from sqlalchemy import create_engine, select

from kickstand.cloud.api import create_app
from kickstand.cloud.config import Settings
from kickstand.cloud.models import User, UserRole
from tests.cloud.test_cloud_cli import run

SECRET = "x" * 48


def users(db: Path) -> list[tuple[str, str]]:
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return [(r.email, r.role) for r in conn.execute(select(User.email, User.role))]
    finally:
        engine.dispose()


async def test_create_admin_on_a_fresh_production_database(tmp_path: Path) -> None:
    prod = {"ENVIRONMENT": "production", "JWT_SECRET": SECRET}
    early = run("create-admin", "--email", "root@city.example", "--password-stdin",
                cwd=tmp_path, stdin="a-long-admin-password\n", **prod)  # fmt: skip
    assert early.returncode == 1 and "python -m kickstand.cloud migrate" in early.stderr
    assert "Traceback" not in early.stderr
    assert run("migrate", cwd=tmp_path, **prod).returncode == 0
    db = tmp_path / "var" / "kickstand.sqlite3"

    short = run("create-admin", "--email", "root@city.example", "--password-stdin",
                cwd=tmp_path, stdin="too-short\n", **prod)  # fmt: skip
    assert short.returncode == 1 and "12 to 255 characters" in short.stderr
    created = run(
        "create-admin",
        "--email",
        "Root@City.example",
        "--full-name",
        "City Admin",
        "--password-stdin",
        cwd=tmp_path,
        stdin="a-long-admin-password\n",
        **prod,
    )
    assert created.returncode == 0, created.stderr
    assert "administrator root@city.example created" in created.stdout
    assert users(db) == [("root@city.example", UserRole.ADMIN.value)]
    again = run("create-admin", "--email", "root@city.example", "--password-stdin",
                cwd=tmp_path, stdin="another-long-password\n", **prod)  # fmt: skip
    assert again.returncode == 1 and "already has an account" in again.stderr

    # The administrator logs in at once (email confirmed) and is an administrator.
    app = create_app(
        Settings(
            DATABASE_URL=f"sqlite+aiosqlite:///{db}", ENVIRONMENT="production", JWT_SECRET=SECRET
        )
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://kickstand.test"
    ) as client:
        r = await client.post(
            "/v1/auth/login",
            json={"email": "root@city.example", "password": "a-long-admin-password"},
        )
        assert r.status_code == 200, r.text


def test_the_demo_seed_refuses_outside_development(tmp_path: Path) -> None:
    prod = {"ENVIRONMENT": "production", "JWT_SECRET": SECRET}
    refused = run("seed", cwd=tmp_path, **prod)
    assert refused.returncode == 2
    assert "ENVIRONMENT=development" in refused.stderr and "create-admin" in refused.stderr
    assert "alice" not in refused.stdout
    assert not (tmp_path / "var" / "kickstand.sqlite3").exists(), "refused before any write"
    seeded = run("seed", cwd=tmp_path)
    assert seeded.returncode == 0, seeded.stderr
    assert "alice@example.com / alice-demo-1" in seeded.stdout


def test_make_run_refuses_outside_development(tmp_path: Path) -> None:
    """`make run` seeds the demo accounts too: it stops before starting anything."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SMTP_HOST")}
    refused = subprocess.run(
        [sys.executable, "-m", "kickstand.simulators.demo", "--api-port", "0"],
        cwd=tmp_path,
        env={**env, "ENVIRONMENT": "production", "JWT_SECRET": SECRET},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2, refused.stderr
    assert "ENVIRONMENT=development" in refused.stderr
    assert not (tmp_path / "var" / "kickstand.sqlite3").exists()
