"""Free-floating fixtures: a migrated Lyon database with test zones, the rider API, and the
ingest applier with the FreeFloatHook (decoded protocol messages fed straight in).

Test zones (Lyon, along latitude 45.7593, riding east from LYF002 at lon 4.8412):

    S speed zone 10 km/h  lon 4.8430–4.8450
    P virtual parking      lon 4.8470–4.8490
    F forbidden zone       lon 4.8510–4.8530
    (the Lyon border ends at lon 4.9300)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kickstand.cloud.alerts.engine import AlertEngine
from kickstand.cloud.api import create_app
from kickstand.cloud.config import Settings
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.freefloat import FreeFloatHook
from kickstand.cloud.geofence import store as zones
from kickstand.cloud.ingest.apply import BatchApplier, Inbound, IngestStats
from kickstand.cloud.models import OutboxEvent, Trip, User, Vehicle
from kickstand.cloud.security import create_access_token
from kickstand.cloud.seed import DemoRefs, seed_demo
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1 import messages as m
from tests.cloud.api.support import FakeGateway

LAT = 45.7593
SPEED_ZONE = (4.8430, 4.8450)
PARKING = (4.8470, 4.8490)
FORBIDDEN = (4.8510, 4.8530)


def box(
    lon0: float, lon1: float, lat0: float = 45.7585, lat1: float = 45.7600
) -> list[list[float]]:
    """The seeds' list-of-points shape."""
    return [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1]]


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


@dataclass
class RecordingSender:
    """A CommandSender that records (unit fake; the MQTT path is tested with the agent)."""

    sent: list[tuple[str, Any]] = field(default_factory=list)

    async def send(
        self,
        device_id: str,
        command: m.CommandBody,
        *,
        rent_id: int | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        self.sent.append((device_id, command))
        return None


@dataclass
class Scooter:
    """A vehicle controller whose decoded messages go straight into the ingest applier."""

    device_id: str
    applier: BatchApplier
    boot_id: int = 7
    seq: int = 0

    def message(self, body: Any, at: datetime) -> Inbound:
        channel = codec.channel_of(body)
        if channel in codec.SEQUENCED_CHANNELS:
            self.seq += 1
            seq = self.seq
        else:
            seq = 0
        # Through the codec, as the wire would carry it.
        payload = codec.encode_up(m.Stamp(self.boot_id, seq, ms(at)), body)
        return Inbound(self.device_id, channel, codec.decode_up(channel, payload))

    async def feed(self, *items: Inbound) -> None:
        await self.applier.apply(list(items))

    async def send(self, body: Any, at: datetime) -> Inbound:
        item = self.message(body, at)
        await self.feed(item)
        return item

    async def position(self, lon: float, at: datetime, lat: float = LAT) -> Inbound:
        return await self.send(m.Telemetry(lat=lat, lon=lon, speed_kmh=15.0, battery_pct=70), at)


@dataclass
class Env:
    refs: DemoRefs
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    client: httpx.AsyncClient
    gateway: FakeGateway
    sender: RecordingSender
    hook: FreeFloatHook
    applier: BatchApplier
    alerts: AlertEngine
    zone_ids: dict[str, int]
    settings: Settings = field(default_factory=Settings)

    def scooter(self, serial: str = "LYF002") -> Scooter:
        return Scooter(f"vh-{serial}", self.applier)

    async def login(self, email: str = "alice@example.com") -> dict[str, str]:
        """Bearer headers of a demo user (a token minted directly: the login route's
        password hashing is slow on purpose and tested elsewhere)."""
        async with self.sessionmaker() as s:
            user = await s.get_one(User, self.refs.user_ids[email])
            token = create_access_token(
                self.settings, user.id, user.permissions, user.token_generation
            )
        return {"Authorization": f"Bearer {token}"}

    async def trips_of(self, serial: str) -> list[Trip]:
        async with self.sessionmaker() as s:
            vid = self.refs.vehicle_ids[serial]
            return list((await s.scalars(select(Trip).where(Trip.vehicle_id == vid))).all())

    async def vehicle(self, serial: str) -> Vehicle:
        async with self.sessionmaker() as s:
            return await s.get_one(Vehicle, self.refs.vehicle_ids[serial])

    async def wallet(self, email: str = "alice@example.com") -> Any:
        async with self.sessionmaker() as s:
            return (await s.get_one(User, self.refs.user_ids[email])).wallet_balance

    async def outbox(self, topic: str) -> list[OutboxEvent]:
        async with self.sessionmaker() as s:
            rows = await s.scalars(
                select(OutboxEvent).where(OutboxEvent.topic == topic).order_by(OutboxEvent.id)
            )
            return list(rows.all())

    async def count(self, model: Any, *where: Any) -> int:
        async with self.sessionmaker() as s:
            return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    async def set_policy(self, policy: str) -> None:
        async with self.sessionmaker() as s, s.begin():
            await zones.set_border_settings(
                s,
                self.refs.network_id,
                trigger_alert=True,
                notify_user=True,
                reduce_vehicle_speed=False,
                play_vehicle_sound=False,
                lock_vehicle=False,
                outside_return_policy=policy,
            )


@pytest.fixture
async def env(pg_seeded_url: str, tmp_path: Path) -> AsyncIterator[Env]:
    pg_url = pg_seeded_url
    engine = create_engine(pg_url)
    maker = create_sessionmaker(engine)
    ids: dict[str, int] = {}
    async with maker() as s, s.begin():
        refs = await seed_demo(s)  # the template is seeded: references only
        nid = refs.network_id
        ids["speed"] = (await zones.create_speed_zone(s, nid, box(*SPEED_ZONE), 10)).id
        ids["parking"] = (await zones.create_virtual_parking(s, nid, box(*PARKING), 10)).id
        ids["forbidden"] = (await zones.create_forbidden_zone(s, nid, box(*FORBIDDEN), "F")).id
    settings = Settings(
        DATABASE_URL=pg_url,
        VAR_DIR=tmp_path / "var",
        JWT_SECRET="test-secret-" + "x" * 40,
        COMMAND_TIMEOUT_S=2.0,
        RENT_UNLOCK_WINDOW_S=60,
    )
    gateway = FakeGateway()
    app = create_app(settings, command_gateway=gateway, engine=engine)
    sender = RecordingSender()
    alerts = AlertEngine(clock=lambda: datetime.now(UTC))
    hook = FreeFloatHook(zones.GeofenceCache(recheck_s=0), commands=sender, alerts=alerts)
    applier = BatchApplier(maker, IngestStats(), alerts=alerts, freefloat=hook)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kickstand.test") as client:
        yield Env(
            refs, engine, maker, client, gateway, sender, hook, applier, alerts, ids, settings
        )
    await hook.aclose()
    await asyncio.sleep(0)
    await engine.dispose()
