"""The technician's unlock of a spot asks for seed 002's ``unlock.admin`` (not
``stations.advanced``), which migration 0028 gives the operator role and the grants that
came from it; 0028 also indexes the outbox by resource (a station's event history)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import create_async_engine

from kickstand.cloud.api import create_app
from kickstand.cloud.config import Settings
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.migrations import downgrade, upgrade
from kickstand.cloud.models import Spot, Station, User
from tests.cloud.access.test_migration_0010 import OU, sql
from tests.cloud.conftest import demo_refs

OPERATOR = "operator@example.com"


async def test_0028_grants_unlock_admin_through_the_role_and_indexes_the_outbox(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.sqlite3"
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    granted = [
        {"perm_key": "rent", "write": True, "ou": OU},
        {"perm_key": "stations", "write": True, "ou": OU, "role": "operator"},
        {"perm_key": "trips", "write": False, "ou": OU, "role": "operator"},
        {"perm_key": "stations", "write": True, "ou": None},  # not from the role
    ]
    try:
        await upgrade(engine, "0027_usage_rollup_riders_months")
        sql(
            path,
            "INSERT INTO users (id, email, password_hash, role, permissions, wallet_balance,"
            " is_active, token_generation, created_at, lang) VALUES"
            " (1, 'op@example.com', 'x', 'operator', ?, 0, 1, 0, '2026-01-01 00:00:00', 'en')",
            json.dumps(granted),
        )
        await upgrade(engine, "0028_unlock_admin_outbox_index")
        (perms,) = sql(path, "SELECT perms FROM roles WHERE key = 'operator'")[0]
        assert "unlock.admin" in json.loads(str(perms))
        entries = json.loads(str(sql(path, "SELECT permissions FROM users WHERE id = 1")[0][0]))
        assert entries[:4] == granted
        # One entry per unit and write flag of the role's grants, none for the global one.
        assert sorted((e["perm_key"], e["write"], e["role"]) for e in entries[4:]) == [
            ("unlock.admin", False, "operator"),
            ("unlock.admin", True, "operator"),
        ]
        indexes = {r[0] for r in sql(path, "SELECT name FROM sqlite_master WHERE type='index'")}
        assert "ix_outbox_resource" in indexes
        await downgrade(engine, "0027_usage_rollup_riders_months")
        entries = json.loads(str(sql(path, "SELECT permissions FROM users WHERE id = 1")[0][0]))
        assert entries == granted
        (perms,) = sql(path, "SELECT perms FROM roles WHERE key = 'operator'")[0]
        assert "unlock.admin" not in json.loads(str(perms))
        indexes = {r[0] for r in sql(path, "SELECT name FROM sqlite_master WHERE type='index'")}
        assert "ix_outbox_resource" not in indexes
    finally:
        await engine.dispose()


@pytest.fixture
async def api(sqlite_url: str, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    settings = Settings(
        DATABASE_URL=sqlite_url, VAR_DIR=tmp_path / "var", JWT_SECRET="unlock-" + "x" * 40
    )
    engine = create_engine(sqlite_url)
    app = create_app(settings, engine=engine)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://kickstand.test"
    ) as client:
        yield client, sqlite_url
    await engine.dispose()


async def _without(url: str, perm_key: str) -> None:
    """The demo operator's grants less one permission (as an admin editing them would)."""
    engine = create_engine(url)
    async with create_sessionmaker(engine)() as s:
        user = await s.get_one(User, demo_refs(url).user_ids[OPERATOR])
        kept = [e for e in user.permissions if e.get("perm_key") != perm_key]
        await s.execute(update(User).where(User.id == user.id).values(permissions=kept))
        await s.commit()
    await engine.dispose()


async def _unlock(client: httpx.AsyncClient, url: str, key: str) -> httpx.Response:
    engine = create_engine(url)
    async with create_sessionmaker(engine)() as s:
        spot = await s.scalar(select(Spot.id).join(Station, Spot.station_id == Station.id).limit(1))
    await engine.dispose()
    password = demo_refs(url).passwords[OPERATOR]
    login = await client.post("/v1/auth/login", json={"email": OPERATOR, "password": password})
    token = login.json()["data"]["token"]
    return await client.post(
        f"/v1/dashboard/spots/{spot}/unlock",
        json={"reason": "brake check"},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"unlock-{key}"},
    )


def _refused_for_permission(r: httpx.Response) -> bool:
    return r.status_code == 403 and r.json().get("reason") == "permission-missing"


async def test_the_unlock_asks_for_unlock_admin(api: tuple[httpx.AsyncClient, str]) -> None:
    client, url = api
    r = await _unlock(client, url, "operator-role")
    assert not _refused_for_permission(r), r.text  # the role holds it (0028)
    await _without(url, "stations.advanced")
    r = await _unlock(client, url, "no-advanced")
    assert not _refused_for_permission(r), "commissioning is not the technician's unlock"
    await _without(url, "unlock.admin")
    r = await _unlock(client, url, "no-unlock-admin")
    assert _refused_for_permission(r), r.text
