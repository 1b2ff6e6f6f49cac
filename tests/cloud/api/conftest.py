"""API fixtures: the app over SQLite or the harness's PostgreSQL, a fake command gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from kickstand.cloud.api import create_app
from kickstand.cloud.config import Settings
from kickstand.cloud.db import create_engine, create_sessionmaker
from tests.cloud.api.support import Api, FakeGateway
from tests.cloud.conftest import demo_refs


@pytest.fixture
def db_url(request: pytest.FixtureRequest) -> str:
    """SQLite unless the test is parametrized with ``BOTH_DATABASES``."""
    if getattr(request, "param", "sqlite") == "sqlite":
        url: str = request.getfixturevalue("sqlite_url")
        return url
    url = request.getfixturevalue("pg_seeded_url")
    return url


@pytest.fixture
async def api(db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    settings = Settings(
        DATABASE_URL=db_url,
        VAR_DIR=tmp_path / "var",
        JWT_SECRET="test-secret-" + "x" * 40,
        COMMAND_TIMEOUT_S=2.0,
        RENT_UNLOCK_WINDOW_S=60,
    )
    engine = create_engine(db_url)
    gateway = FakeGateway()
    app = create_app(settings, command_gateway=gateway, engine=engine)
    maker = create_sessionmaker(engine)
    demo = demo_refs(db_url)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kickstand.test") as client:
        yield Api(client, gateway, maker, demo, "postgres" if "postgresql" in db_url else "sqlite")
    await engine.dispose()
