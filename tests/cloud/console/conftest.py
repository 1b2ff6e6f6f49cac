"""The console's tests: the seeded demo database (SQLite copy per test) and the API in process
(httpx over ASGI), with an operator of another network (999) beside the demo's users."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.api import create_app
from kickstand.cloud.config import Settings
from kickstand.cloud.models import User, UserRole
from kickstand.cloud.security import hash_password
from kickstand.cloud.seed import DEMO_CONFIRMED_AT, operator_permissions

OPERATOR = ("operator@example.com", "operator-demo-1")
RIDER = ("alice@example.com", "alice-demo-1")
STRANGER = ("stranger@example.com", "stranger-demo-1")


async def add_operator(
    maker: async_sessionmaker[AsyncSession], who: tuple[str, str], permissions: list[dict[str, Any]]
) -> None:
    """An operator beside the demo's users, logging in with ``who`` (email, password)."""
    async with maker() as session:
        session.add(
            User(
                email=who[0],
                password_hash=hash_password(who[1], demo=True),
                full_name=f"Operator {who[0]}",
                role=UserRole.OPERATOR,
                permissions=permissions,
                email_confirmed_at=DEMO_CONFIRMED_AT,
            )
        )
        await session.commit()


@pytest.fixture
async def app_client(sqlite_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        Settings(DATABASE_URL=sqlite_url, VAR_DIR=tmp_path / "var", CONSOLE_EVENTS_POLL_S=0.05)
    )
    async with app.router.lifespan_context(app):
        maker = app.state.sessionmaker
        # An operator of another network (999): nothing of Lyon (network 1) is theirs.
        await add_operator(maker, STRANGER, operator_permissions(999))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as c:
            c.app = app  # type: ignore[attr-defined]
            yield c
