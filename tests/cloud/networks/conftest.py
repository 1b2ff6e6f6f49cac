"""Networks fixtures: the API over the harness's PostgreSQL and its callers — the demo
network's operator, an operator of another network, a read-only operator of the demo
network, an admin and a rider."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.access.grants import OPERATOR_PERMISSIONS, ou_snapshot
from kickstand.cloud.access.models import OrganizationalUnit
from kickstand.cloud.api import create_app
from kickstand.cloud.config import Settings
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.models import Network, User, UserRole
from kickstand.cloud.security import create_access_token, hash_password
from kickstand.cloud.seed import DemoRefs, operator_permissions
from tests.cloud.api.support import FakeGateway
from tests.cloud.conftest import demo_refs

JWT = "test-secret-" + "x" * 40


@dataclass
class Net:
    client: httpx.AsyncClient
    maker: async_sessionmaker[AsyncSession]
    demo: DemoRefs
    headers: dict[str, dict[str, str]]
    users: dict[str, int]
    network_a: int
    network_b: int
    unit_a: int
    unit_b: int

    async def call(self, who: str, method: str, url: str, **kw: Any) -> httpx.Response:
        return await self.client.request(method, url, headers=self.headers[who], **kw)


async def _user(session: AsyncSession, email: str, role: UserRole, perms: list[Any]) -> User:
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
async def net(pg_seeded_url: str, tmp_path: Path) -> AsyncIterator[Net]:
    settings = Settings(
        DATABASE_URL=pg_seeded_url,
        VAR_DIR=tmp_path / "var",
        JWT_SECRET=JWT,
        COMMAND_TIMEOUT_S=1.0,
        RENT_UNLOCK_WINDOW_S=60,
    )
    engine = create_engine(pg_seeded_url)
    app = create_app(settings, command_gateway=FakeGateway(), engine=engine)
    app.state.access_log.delay_s = 0.0
    demo = demo_refs(pg_seeded_url)
    a = demo.network_id
    maker = create_sessionmaker(engine)
    async with maker() as session:
        other = Network(name="Elsewhere", currency="EUR", timezone="Europe/Paris")
        session.add(other)
        await session.flush()
        unit_a = (
            await session.scalars(select(OrganizationalUnit).order_by(OrganizationalUnit.id))
        ).first()
        assert unit_a is not None and unit_a.networks == [a]
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
            "operator": await session.get_one(User, demo.user_ids["operator@example.com"]),
            "rider": await session.get_one(User, demo.user_ids["alice@example.com"]),
            "other": await _user(
                session,
                "other-op@example.com",
                UserRole.OPERATOR,
                operator_permissions(other.id, unit_b.id),
            ),
            "read-only": await _user(session, "ro-op@example.com", UserRole.OPERATOR, read_only),
            "admin": await _user(session, "admin@example.com", UserRole.ADMIN, []),
        }
        await session.commit()
        headers = {
            name: {
                "Authorization": "Bearer "
                + create_access_token(settings, u.id, u.permissions, u.token_generation)
            }
            for name, u in users.items()
        }
        ids = {name: u.id for name, u in users.items()}
        unit_ids = (unit_a.id, unit_b.id)
        other_id = other.id
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://kickstand.test"
            ) as client:
                yield Net(client, maker, demo, headers, ids, a, other_id, *unit_ids)
    finally:
        await engine.dispose()
