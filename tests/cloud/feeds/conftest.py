"""Feed fixtures: the API over a fresh copy of the seeded PostgreSQL database, and helpers
that change the city the way the cloud does (a station online, a ride)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud import trips
from kickstand.cloud.api import create_app
from kickstand.cloud.config import Settings
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.models import Device, Network, Station, User, Vehicle
from kickstand.cloud.rent_gateway import UnlockOutcome
from kickstand.cloud.rents import apply_unlock_outcome, open_rent
from kickstand.cloud.seed import DemoRefs
from kickstand.cloud.telemetry import LocalTelemetryStore
from tests.cloud.conftest import demo_refs

BASE = "http://kickstand.test"
SYSTEM = f"{BASE}/gbfs/v3/kickstand-1/"


@dataclass
class City:
    app: FastAPI
    client: httpx.AsyncClient
    maker: async_sessionmaker[AsyncSession]
    demo: DemoRefs

    def fresh(self) -> None:
        """Forget the built documents (a change is visible at once, not after the ttl)."""
        cache = getattr(self.app.state, "feed_cache", None)
        if cache is not None:
            cache.clear()

    async def login(self, email: str) -> dict[str, str]:
        r = await self.client.post(
            "/v1/auth/login", json={"email": email, "password": self.demo.passwords[email]}
        )
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['data']['token']}"}

    async def station_online(self, device_id: str, now: datetime | None = None) -> None:
        """What ingest keeps after an accepted birth and a heartbeat."""
        async with self.maker() as session:
            await session.execute(
                update(Device)
                .where(Device.device_id == device_id)
                .values(online=True, last_seen_at=now or datetime.now(UTC), heartbeat_s=30)
            )
            await session.commit()

    async def ride(
        self,
        serial: str,
        *,
        start: tuple[str, int],
        end: tuple[str, int] | None,
        at: datetime,
        minutes: int = 12,
    ) -> int:
        """Alice rents ``serial`` at a spot, rides it away and (``end``) docks it: the trip
        engine's own path (rent, unlock, removal, dock). Returns the trip id."""
        async with self.maker() as session:
            vehicle = (
                await session.scalars(select(Vehicle).where(Vehicle.serial_number == serial))
            ).one()
            alice = (
                await session.scalars(select(User).where(User.email == "alice@example.com"))
            ).one()
            rent, _, _ = await open_rent(session, alice.id, vehicle_id=vehicle.id, now=at)
            await apply_unlock_outcome(session, rent.id, UnlockOutcome.unlocked(), now=at)
            await session.commit()
        async with self.maker() as session:
            result = await trips.vehicle_removed(session, start[0], start[1], serial, at)
            assert result.trip is not None, result
            trip_id = result.trip.id
            await session.commit()
        if end is not None:
            async with self.maker() as session:
                done = await trips.vehicle_docked(
                    session, end[0], end[1], serial, at + timedelta(minutes=minutes)
                )
                assert done.trip is not None and done.trip.ended_at is not None, done
                await session.commit()
        return trip_id

    async def network_since(self, days: int) -> None:
        """Make the demo network older (the MDS hours before its creation are 404)."""
        async with self.maker() as session:
            await session.execute(
                update(Network)
                .where(Network.id == self.demo.network_id)
                .values(created_at=datetime.now(UTC) - timedelta(days=days))
            )
            await session.commit()

    async def station_id(self, device_id: str) -> int:
        async with self.maker() as session:
            return (
                await session.scalars(select(Station.id).where(Station.device_id == device_id))
            ).one()

    async def get_json(self, url: str, **headers: str) -> Any:
        r = await self.client.get(url, headers=headers)
        assert r.status_code == 200, (url, r.status_code, r.text)
        return r.json()


@pytest.fixture
async def city(pg_seeded_url: str, tmp_path: Path) -> AsyncIterator[City]:
    settings = Settings(
        DATABASE_URL=pg_seeded_url,
        VAR_DIR=tmp_path / "var",
        JWT_SECRET="feeds-test-secret-" + "x" * 40,
    )
    engine = create_engine(pg_seeded_url)
    app = create_app(settings, engine=engine)
    transport = httpx.ASGITransport(app=app)
    # MDS telemetry reads the ride's points from the store (the lifespan is not run here).
    async with LocalTelemetryStore(tmp_path / "telemetry.sqlite3") as store:
        app.state.telemetry_store = store
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            yield City(app, client, create_sessionmaker(engine), demo_refs(pg_seeded_url))
    await engine.dispose()


def run_in_loop(loop: asyncio.AbstractEventLoop, coro: Any) -> Any:
    """From a worker thread: run ``coro`` on the test's loop and wait for it."""
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)
