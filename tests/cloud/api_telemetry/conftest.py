"""The app with its telemetry store opened by the app's own lifespan, from settings:
the local store over SQLite, or the harness's InfluxDB over the harness's PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.api import create_app
from kickstand.cloud.config import Settings
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.models import Station, User
from kickstand.cloud.security import create_access_token
from kickstand.cloud.seed import DemoRefs
from kickstand.cloud.telemetry import InfluxTelemetryStore, TelemetryStore
from tests.cloud.conftest import demo_refs

JWT = "test-secret-" + "x" * 40


@dataclass
class TelemetryApi:
    app: FastAPI
    client: httpx.AsyncClient
    maker: async_sessionmaker[AsyncSession]
    demo: DemoRefs
    settings: Settings
    store: TelemetryStore
    backend: str

    async def headers(self, email: str = "operator@example.com") -> dict[str, str]:
        async with self.maker() as s:
            user = await s.get_one(User, self.demo.user_ids[email])
            token = create_access_token(
                self.settings, user.id, user.permissions, user.token_generation
            )
        return {"Authorization": f"Bearer {token}"}

    async def settle(self) -> None:
        """Every point written so far is queryable."""
        await self.store.flush()
        if isinstance(self.store, InfluxTelemetryStore):
            await self.store.writer.drain()

    async def station_id(self, device_id: str) -> int:
        async with self.maker() as s:
            found = await s.scalar(select(Station.id).where(Station.device_id == device_id))
        assert found is not None
        return found


BACKENDS = [
    "local",
    pytest.param("influx", marks=[pytest.mark.influx, pytest.mark.postgres]),
]


@pytest.fixture(params=BACKENDS)
async def tapi(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TelemetryApi]:
    """The app over SQLite + the local telemetry store, or PostgreSQL + InfluxDB 1.6."""
    if request.param == "influx":
        influx = request.getfixturevalue("influx")
        database = request.getfixturevalue("influx_fresh")
        db_url: str = request.getfixturevalue("pg_seeded_url")
        influx_env = {"INFLUX_URL": influx.url, "INFLUX_DATABASE": database}
    else:
        db_url = request.getfixturevalue("sqlite_url")
        influx_env = {}
    settings = Settings(
        DATABASE_URL=db_url, VAR_DIR=tmp_path / "var", JWT_SECRET=JWT, **influx_env
    )
    engine = create_engine(db_url)
    app = create_app(settings, engine=engine)
    try:
        # The app's own lifespan opens the store from the settings (httpx does not run it).
        async with app.router.lifespan_context(app):
            store = app.state.telemetry_store
            assert store is not None
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://kickstand.test"
            ) as client:
                yield TelemetryApi(
                    app, client, create_sessionmaker(engine), demo_refs(db_url), settings,
                    store, request.param,
                )
        assert app.state.telemetry_store is None
    finally:
        await engine.dispose()
