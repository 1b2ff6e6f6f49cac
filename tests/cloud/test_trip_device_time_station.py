"""Device time with the real station agent (issue 13, point 1, as reproduced in the field):
the rider takes the bike within seconds while the station's link is down; the cloud's
sweep closes the unlock window on server time; the bike is docked at another, online
station; then the first station comes back and its queued removal (with the command id)
arrives last. One trip, at device times, billed once; no unauthorized removal.

Real Mosquitto and PostgreSQL, the cloud's ingest worker and rider API, the station
agent unmodified on simulated spot boards (``tests.e2e.city``).
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import ScalarResult, select

from kickstand.cloud import trips
from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.models import OutboxEvent, Rent, RentStatus, Trip, User, utcnow
from kickstand.testing import MosquittoService, PostgresServer
from tests.e2e.city import City, eventually

pytestmark = [pytest.mark.slow, pytest.mark.mqtt, pytest.mark.postgres]

ALICE = ("alice@example.com", "alice-demo-1")
PARIS = ZoneInfo("Europe/Paris")


def weekday_or_weekend_price(start: datetime, end: datetime) -> Decimal:
    """The seed's pricing by hand (see kickstand.cloud.seed): weekend 0.50 + 0.15/min,
    else 1.00 with 300 s included + 0.10/min; every started minute counts."""
    if start.astimezone(PARIS).isoweekday() in (6, 7):
        unlock, included, per_minute = Decimal("0.50"), 0, Decimal("0.15")
    else:
        unlock, included, per_minute = Decimal("1.00"), 300, Decimal("0.10")
    billable = max(0.0, (end - start).total_seconds() - included)
    return unlock + per_minute * math.ceil(billable / 60)


@pytest.fixture
async def city(
    mosquitto: MosquittoService, pg_server: PostgresServer, pg_template: str, tmp_path: Path
) -> AsyncIterator[City]:
    database = pg_server.new_database(template=pg_template)
    try:
        async with City(
            mqtt_url=mosquitto.url,
            broker_host=mosquitto.host,
            broker_port=mosquitto.port,
            database_url=database.url,
            workdir=tmp_path,
            # The seed docks LY0004-6 at st-0002 and LY0007-9 at st-0003, spots 1-3.
            stations={"st-0002": {2: "LY0005"}, "st-0003": {1: "LY0007"}},
            unlock_window_s=3,  # the cloud's: 5 s (its floor)
        ) as c:
            yield c
    finally:
        pg_server.drop_database(database.name)


async def test_a_ride_started_while_the_station_was_offline_is_one_trip_billed_once(
    city: City,
) -> None:
    assert city.sessionmaker is not None
    maker = city.sessionmaker
    headers = await city.login(*ALICE)
    async with maker() as s:
        before = (
            await s.execute(select(User.wallet_balance).where(User.email == ALICE[0]))
        ).scalar_one()
    start, finish = city.rigs["st-0002"], city.rigs["st-0003"]

    r = await city.client().post(
        "/v1/rents",
        json={"spot_id": await city.spot_id("st-0002", 2)},
        headers={**headers, "Idempotency-Key": f"offline-{uuid.uuid4()}"},
    )
    assert r.status_code == 201, r.text
    rent_id = r.json()["data"]["rent_id"]

    start.cut_link()  # cellular drop: what the station does now waits in its queue
    taken_at = time.time()
    assert start.sim.take(2) == "LY0005"  # inside the station's window: carries the command

    async def rent_row() -> Rent:
        async with maker() as s:
            return await s.get_one(Rent, rent_id)

    # The cloud's window (5 s) closes with no word from the station: the sweep expires it.
    expires_at = (await rent_row()).expires_at
    assert expires_at is not None
    await asyncio.sleep(max(0.0, expires_at.timestamp() - time.time()) + 0.2)
    async with maker() as s, s.begin():
        assert [x.id for x in await trips.expire_stale_rents(s, utcnow())] == [rent_id]
    assert (await rent_row()).status == RentStatus.EXPIRED_NO_REMOVAL

    docked_at = time.time()
    finish.sim.dock(5, "LY0005")  # returned at an online station: its dock arrives first

    async def dock_applied() -> bool:
        async with maker() as s:
            payloads: ScalarResult[dict[str, Any]] = await s.scalars(
                select(OutboxEvent.payload).where(OutboxEvent.topic == "device.event")
            )
            return any(p.get("event") == "VehicleDocked" for p in payloads)

    await eventually(dock_applied)
    start.restore_link()

    async def trip() -> Trip | None:
        async with maker() as s:
            return (await s.scalars(select(Trip).where(Trip.rent_id == rent_id))).first()

    async def finished() -> bool:
        t = await trip()
        return t is not None and t.ended_at is not None

    await eventually(finished, 30)
    ride = await trip()
    assert ride is not None and ride.ended_at is not None and ride.cost is not None
    assert abs(ride.started_at.timestamp() - taken_at) < 1.0, "starts at the REMOVAL time"
    assert abs(ride.ended_at.timestamp() - docked_at) < 1.0, "ends at the DOCKING time"
    assert ride.cost == weekday_or_weekend_price(ride.started_at, ride.ended_at)
    assert (await rent_row()).status == RentStatus.STARTED
    async with maker() as s:
        after = (
            await s.execute(select(User.wallet_balance).where(User.email == ALICE[0]))
        ).scalar_one()
        assert after == before - ride.cost
        updates: ScalarResult[dict[str, Any]] = await s.scalars(
            select(OutboxEvent.payload).where(OutboxEvent.topic == "vehicule.updated")
        )
        assert not any(p.get("unauthorized_removal") for p in updates)
        alerts = (
            await s.scalars(select(FleetAlert.alert_type).where(FleetAlert.device_id == "st-0002"))
        ).all()
        assert alerts == []
