"""End to end: the real vehicle agent on the vehicle simulator, the harness's Mosquitto,
an ingest worker with the FreeFloatHook, the signed MQTT command gateway, the rider API,
PostgreSQL. Unlock by QR code → ride through a speed zone (SetSpeedLimit on enter and on
leave, executed by the agent) → lock by hand inside a virtual parking → billed.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from kickstand.cloud.alerts.engine import AlertEngine
from kickstand.cloud.api import create_app
from kickstand.cloud.commands import MqttCommandGateway
from kickstand.cloud.config import Settings
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.freefloat import FreeFloatHook
from kickstand.cloud.geofence import store as zones
from kickstand.cloud.ingest import IngestWorker
from kickstand.cloud.models import Device, Trip, TripStatus, User
from kickstand.cloud.security import create_access_token
from kickstand.cloud.seed import seed_demo
from kickstand.protocol.signing import CommandSigner, generate_private_key
from kickstand.testing import MosquittoService
from tests.cloud.freefloat.conftest import LAT, box

pytestmark = [pytest.mark.postgres, pytest.mark.mqtt]

FAST = {
    "riding_interval_s": 0.3,
    "parked_interval_s": 60.0,
    "lock_poll_s": 0.05,
    "bms_poll_s": 0.5,
    "boot_timeout_s": 2.0,
    "reconnect_min_s": 0.1,
    "reconnect_max_s": 0.4,
    "keepalive_s": 5,
}
# A short street (156 m east at 60 km/h: ~9 s): a 47 m speed zone, then a parking.
START = (4.8412, LAT)
SPEED = (4.8416, 4.8422)
PARK = (4.8428, 4.8436)
END = (4.8432, LAT)  # inside the parking


async def until(condition: Callable[[], object], within_s: float = 15.0) -> None:
    async with asyncio.timeout(within_s):
        for _ in itertools.count():
            if condition():
                return
            await asyncio.sleep(0.05)


async def until_db(check: Callable[[], Awaitable[object]], within_s: float = 15.0) -> None:
    async with asyncio.timeout(within_s):
        for _ in itertools.count():
            if await check():
                return
            await asyncio.sleep(0.1)


def expected_cost(started: datetime, ended: datetime) -> Decimal:
    """The Lyon demo pricing, by hand: weekend (Sat, Sun local) unlock 0.50, nothing included,
    0.15 per started minute; otherwise unlock 1.00, 300 s included, 0.10 per minute."""
    weekend = started.astimezone(ZoneInfo("Europe/Paris")).weekday() >= 5
    unlock, included, per_minute = (
        (Decimal("0.50"), 0, Decimal("0.15"))
        if weekend
        else (Decimal("1.00"), 300, Decimal("0.10"))
    )
    billable = (ended - started).total_seconds() - included
    minutes = math.ceil(billable / 60) if billable > 0 else 0
    return unlock + per_minute * minutes


async def test_free_floating_ride_with_the_real_vehicle_agent(
    pg_seeded_url: str, mosquitto: MosquittoService, tmp_path: Path
) -> None:
    from kickstand.simulators.vehicle import Route, VehicleFleet

    engine = create_engine(pg_seeded_url)
    maker = create_sessionmaker(engine)
    async with maker() as s, s.begin():
        refs = await seed_demo(s)
        nid = refs.network_id
        await zones.create_speed_zone(s, nid, box(*SPEED), 10)
        parking = await zones.create_virtual_parking(s, nid, box(*PARK), 10)
        alice = await s.get_one(User, refs.user_ids["alice@example.com"])
        wallet_before = alice.wallet_balance
    settings = Settings(
        DATABASE_URL=pg_seeded_url,
        VAR_DIR=tmp_path / "var",
        JWT_SECRET="test-secret-" + "x" * 40,
        COMMAND_TIMEOUT_S=5.0,
        RENT_UNLOCK_WINDOW_S=60,
    )
    token = create_access_token(settings, alice.id, alice.permissions, alice.token_generation)
    signer = CommandSigner(generate_private_key())
    gateway = MqttCommandGateway(
        mosquitto.url, signer, maker, timeout_s=5.0, client_id=f"api-{uuid.uuid4().hex[:8]}"
    )
    hook = FreeFloatHook(zones.GeofenceCache(recheck_s=0), commands=gateway, alerts=AlertEngine())
    worker = IngestWorker(
        mosquitto.url,
        maker,
        client_id=f"ingest-{uuid.uuid4().hex[:8]}",
        group=f"g{uuid.uuid4().hex[:8]}",
        batch_max=50,
        alerts=AlertEngine(),
        freefloat=hook,
    )
    app = create_app(settings, command_gateway=gateway, engine=engine)
    fleet = VehicleFleet(
        tmp_path / "fleet",
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        command_keys=[signer.public_key.hex()],
        gps_interval_s=0.2,
        agent_overrides=FAST,
    )
    try:
        async with gateway, worker, fleet:
            scooter = await fleet.add("LYF002", position=START)
            await fleet.wait_online(15)
            agent = scooter.agent
            assert agent is not None

            async def online() -> bool:
                async with maker() as s:
                    return bool(
                        await s.scalar(select(Device.online).where(Device.device_id == "vh-LYF002"))
                    )

            await until_db(online)

            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                r = await client.post(
                    "/v1/freefloat/unlock",
                    json={"qr_code": "https://kickstand.app/v/LYF002"},
                    headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "e2e-unlock-1"},
                )
            assert r.status_code == 201, r.text

            async def trip_running() -> Trip | None:
                async with maker() as s:
                    return (
                        await s.scalars(
                            select(Trip).where(
                                Trip.vehicle_id == refs.vehicle_ids["LYF002"],
                                Trip.status == TripStatus.RUNNING,
                            )
                        )
                    ).first()

            await until_db(trip_running)
            scooter.sim.take_chain_out()
            scooter.sim.ride(Route.of([START, END]), speed_kmh=60)
            await scooter.sim.wait_route_done(30)

            await until(lambda: len([c for c in hook.sent if c.outcome == "done"]) >= 2)
            limits = [(c.command.max_kmh, c.outcome) for c in hook.sent]  # type: ignore[union-attr]
            assert limits == [(10, "done"), (25, "done")], limits
            assert agent.speed_limit_kmh == 25  # the agent applied the last one

            scooter.sim.rider_lock()

            async def finished() -> Trip | None:
                async with maker() as s:
                    return (
                        await s.scalars(
                            select(Trip).where(
                                Trip.vehicle_id == refs.vehicle_ids["LYF002"],
                                Trip.status == TripStatus.FINISHED,
                            )
                        )
                    ).first()

            await until_db(finished)
            trip = await finished()
            assert trip is not None and trip.ended_at is not None
            assert trip.cost_detail is not None
            assert trip.cost_detail["return"]["kind"] == "normal"
            assert trip.cost_detail["return"]["virtual_parking_id"] == parking.id
            assert trip.free_floating_start is True and trip.free_floating_end is False
            assert trip.ended_at > trip.started_at
            assert trip.ended_at <= datetime.now(UTC)
            assert trip.cost == expected_cost(trip.started_at, trip.ended_at)
            async with maker() as s:
                wallet = (await s.get_one(User, refs.user_ids["alice@example.com"])).wallet_balance
            assert wallet == wallet_before - trip.cost
            assert worker.stats.rejected == {}, worker.stats.rejected
    finally:
        await hook.aclose()
        await engine.dispose()
