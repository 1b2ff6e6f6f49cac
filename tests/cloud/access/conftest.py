"""Access fixtures: the app over SQLite and its callers — anonymous, a rider, network A's
operator (the demo's), an operator of another network, a read-only operator of network A,
an admin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from kickstand.cloud.access.grants import OPERATOR_PERMISSIONS, ou_snapshot
from kickstand.cloud.access.models import OrganizationalUnit
from kickstand.cloud.api import create_app
from kickstand.cloud.config import Settings
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.models import Badge, Cluster, Network, Spot, Station, User, UserRole
from kickstand.cloud.security import create_access_token, hash_password
from kickstand.cloud.seed import operator_permissions
from tests.cloud.api.support import FakeGateway
from tests.cloud.conftest import demo_refs

JWT = "test-secret-" + "x" * 40


@dataclass
class Walk:
    app: FastAPI
    client: httpx.AsyncClient
    headers: dict[str, dict[str, str]]
    ids: dict[str, int]
    network_a: int
    #: Objects of network A by collection path ("/speed-zones" -> id).
    objects: dict[str, int]


async def _add_user(session: Any, email: str, role: UserRole, perms: list[Any]) -> User:
    user = User(
        email=email,
        password_hash=hash_password("not-used-here-1", demo=True),
        role=role,
        permissions=perms,
        email_confirmed_at=datetime.now(UTC),
    )
    session.add(user)
    await session.flush()
    return user


@pytest.fixture
async def walk(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Walk]:
    """SQLite; ``@pytest.mark.parametrize("walk", ["postgres"], indirect=True)`` for the
    harness's PostgreSQL."""
    name = "pg_seeded_url" if getattr(request, "param", "sqlite") == "postgres" else "sqlite_url"
    db_url: str = request.getfixturevalue(name)
    settings = Settings(
        DATABASE_URL=db_url, VAR_DIR=tmp_path / "var", JWT_SECRET=JWT, COMMAND_TIMEOUT_S=1.0
    )
    engine = create_engine(db_url)
    app = create_app(settings, command_gateway=FakeGateway(), engine=engine)
    app.state.access_log.delay_s = 0.0  # tests read the log at once; batching is not at issue
    demo = demo_refs(db_url)
    a = demo.network_id
    maker = create_sessionmaker(engine)
    async with maker() as session:
        other = Network(name="Elsewhere", currency="EUR", timezone="Europe/Paris")
        session.add(other)
        await session.flush()
        unit_a = (
            await session.scalars(select(OrganizationalUnit).order_by(OrganizationalUnit.id))
        ).first()
        assert unit_a is not None and unit_a.networks == [a]  # the demo seed's
        unit_b = OrganizationalUnit(
            name="Elsewhere", networks=[other.id], clusters=[], app_labels=[], organizations=[]
        )
        session.add(unit_b)
        await session.flush()
        read_only = [
            {"perm_key": p, "write": False, "ou": ou_snapshot(unit_a.id, [a], [], [], [])}
            for p in OPERATOR_PERMISSIONS
        ]
        users = {
            # Bob asks; Alice is the user operators act on (blocked in the walk, for one).
            "rider": await session.get_one(User, demo.user_ids["bob@example.com"]),
            "operator": await session.get_one(User, demo.user_ids["operator@example.com"]),
            "other": await _add_user(
                session,
                "other-op@example.com",
                UserRole.OPERATOR,
                operator_permissions(other.id, unit_b.id),
            ),
            "read-only": await _add_user(
                session, "ro-op@example.com", UserRole.OPERATOR, read_only
            ),
            "admin": await _add_user(session, "admin@example.com", UserRole.ADMIN, []),
            "alice": await session.get_one(User, demo.user_ids["alice@example.com"]),
        }
        station = (
            await session.scalars(
                select(Station).join(Cluster).where(Cluster.network_id == a).limit(1)
            )
        ).one()
        spot = (await session.scalars(select(Spot).where(Spot.station_id == station.id))).first()
        badge = (await session.scalars(select(Badge).where(Badge.network_id == a).limit(1))).first()
        ids = {
            "vehicle_id": next(iter(demo.vehicle_ids.values())),
            "station_id": station.id,
            "spot_id": spot.id if spot else 1,
            "badge_id": badge.id if badge else 1,
            "user_id": demo.user_ids["alice@example.com"],
            "operator_id": demo.user_ids["operator@example.com"],
            "administrator_id": demo.user_ids["operator@example.com"],
            "rider_id": demo.user_ids["bob@example.com"],
            "organizational_unit": unit_a.id,
            "other_id": users["other"].id,
            "ro_id": users["read-only"].id,
            "network_b": other.id,
        }
        await session.commit()
        headers = {
            name: {
                "Authorization": "Bearer "
                + create_access_token(settings, u.id, u.permissions, u.token_generation)
            }
            for name, u in users.items()
        }
    headers["anonymous"] = {}
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://kickstand.test"
            ) as client:
                yield Walk(app, client, headers, ids, a, {})
    finally:
        await engine.dispose()
