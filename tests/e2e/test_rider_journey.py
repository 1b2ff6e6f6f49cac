"""THE journey, end to end: HTTP → API → broker → real station agent → simulated spot
board → result → API; removal and docking events back through ingest into trips.

Real PostgreSQL (a seeded Lyon network) and Mosquitto; the station agent is
``kickstand.edge.station`` unmodified, its spot boards are simulated on a pty.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from sqlalchemy import func, select

from kickstand.cloud.models import Device, Rent, RentStatus, Trip, User
from kickstand.testing import MosquittoService, PostgresServer
from tests.e2e.city import City, eventually

pytestmark = [
    pytest.mark.slow,
    pytest.mark.mqtt,
    pytest.mark.postgres,
    pytest.mark.asyncio(loop_scope="module"),
]

ALICE = ("alice@example.com", "alice-demo-1")
PARIS = ZoneInfo("Europe/Paris")


def seeded_price(start: datetime, end: datetime) -> Decimal:
    """The demo network's pricing, computed by hand (see kickstand.cloud.seed): Sat 00:00 →
    Mon 00:00 local: 0.50 unlock, nothing included, 0.15/min; else 1.00 unlock, 300 s
    included, 0.10/min. Every started minute after the included time is charged."""
    local = start.astimezone(PARIS)
    weekend = local.isoweekday() in (6, 7)
    if weekend:
        unlock, included, per_minute = Decimal("0.50"), 0, Decimal("0.15")
    else:
        unlock, included, per_minute = Decimal("1.00"), 300, Decimal("0.10")
    billable = max(0.0, (end - start).total_seconds() - included)
    return unlock + per_minute * math.ceil(billable / 60)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def city(
    mosquitto: MosquittoService,
    pg_server: PostgresServer,
    pg_template: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[City]:
    """One city for the module (its scenarios use different spots; wallets are compared
    before/after): starting two stations, ingest and the API takes seconds."""
    database = pg_server.new_database(template=pg_template)
    try:
        async with City(
            mqtt_url=mosquitto.url,
            broker_host=mosquitto.host,
            broker_port=mosquitto.port,
            database_url=database.url,
            workdir=tmp_path_factory.mktemp("city"),
            # The seed docks LY0001-3 at st-0001 spots 1-3 and LY0004-6 at st-0002 spots 1-3.
            stations={
                "st-0001": {1: "LY0001", 2: "LY0002", 3: "LY0003"},
                "st-0002": {1: "LY0004", 2: "LY0005", 3: "LY0006"},
            },
            unlock_window_s=3,
        ) as c:
            yield c
    finally:
        pg_server.drop_database(database.name)


async def rent(city: City, headers: dict[str, str], spot_id: int, key: str) -> tuple[int, dict]:
    r = await city.client().post(
        "/v1/rents", json={"spot_id": spot_id}, headers={**headers, "Idempotency-Key": key}
    )
    return r.status_code, r.json()


async def wallet(city: City, email: str) -> Decimal:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        balance: Decimal = (
            await s.execute(select(User.wallet_balance).where(User.email == email))
        ).scalar_one()
    return balance


async def trip_of_rent(city: City, rent_id: int) -> Trip | None:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        return (await s.scalars(select(Trip).where(Trip.rent_id == rent_id))).first()


async def test_rider_unlocks_rides_and_docks_at_another_station(city: City) -> None:
    headers = await city.login(*ALICE)
    before = await wallet(city, ALICE[0])
    st1, st2 = city.rigs["st-0001"], city.rigs["st-0002"]
    spot = await city.spot_id("st-0001", 1)

    key = f"unlock-{uuid.uuid4()}"
    status, body = await rent(city, headers, spot, key)
    assert status == 201, body
    assert body["code"] == 0 and body["data"]["serial_number"] == "LY0001"
    rent_id = body["data"]["rent_id"]
    assert st1.sim.boards[1].lock.name == "OPEN", "the command crossed the broker to the board"
    # A retried request (same key) answers the same and opens nothing more.
    again_status, again = await rent(city, headers, spot, key)
    assert (again_status, again["data"]["rent_id"]) == (201, rent_id)
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        assert await s.scalar(select(func.count()).select_from(Rent)) == 1

    taken_at = time.time()
    assert st1.sim.take(1) == "LY0001"  # VehicleRemoved → the trip starts

    async def started() -> bool:
        return await trip_of_rent(city, rent_id) is not None

    await eventually(started)
    trip = await trip_of_rent(city, rent_id)
    assert trip is not None and trip.status == "running"
    assert abs(trip.started_at.timestamp() - taken_at) < 1.0

    await asyncio.sleep(1.2)  # the ride
    docked_at = time.time()
    st2.sim.dock(4, "LY0001")  # VehicleDocked at another station → the trip ends

    async def ended() -> bool:
        t = await trip_of_rent(city, rent_id)
        return t is not None and t.status == "finished"

    await eventually(ended)
    r = await city.client().get(f"/v1/trips/{trip.id}", headers=headers)
    assert r.status_code == 200, r.text
    detail = r.json()["data"]
    assert detail["state"] == "finished"
    start = datetime.fromisoformat(detail["start_date"])
    end = datetime.fromisoformat(detail["end_date"])
    assert abs(end.timestamp() - docked_at) < 1.0
    expected = seeded_price(start, end)
    assert Decimal(detail["cost"]) == expected
    assert detail["currency"] == "EUR"
    assert detail["cluster_end_id"] != detail["cluster_start_id"]
    assert await wallet(city, ALICE[0]) == before - expected


async def test_unlock_without_removal_opens_no_trip_and_costs_nothing(city: City) -> None:
    headers = await city.login(*ALICE)
    before = await wallet(city, ALICE[0])
    spot = await city.spot_id("st-0001", 2)
    status, body = await rent(city, headers, spot, f"unlock-{uuid.uuid4()}")
    assert status == 201, body
    rent_id = body["data"]["rent_id"]
    board = city.rigs["st-0001"].sim.boards[2]
    assert board.lock.name == "OPEN"
    assert city.sessionmaker is not None

    async def expired() -> bool:
        async with city.sessionmaker() as s:  # type: ignore[misc]
            r = await s.get(Rent, rent_id)
            return r is not None and r.status == RentStatus.EXPIRED_NO_REMOVAL

    await eventually(expired, 15)  # the agent re-locks after its window: UnlockExpired
    assert board.lock.name == "LOCKED" and board.vehicle_present
    assert await trip_of_rent(city, rent_id) is None
    assert await wallet(city, ALICE[0]) == before


async def test_return_docked_while_the_station_is_offline_ends_at_docking_time(
    city: City,
) -> None:
    headers = await city.login(*ALICE)
    st1, st2 = city.rigs["st-0001"], city.rigs["st-0002"]
    status, body = await rent(city, headers, await city.spot_id("st-0001", 3), "offline-ride-1")
    assert status == 201, body
    rent_id = body["data"]["rent_id"]
    assert st1.sim.take(3) == "LY0003"

    async def started() -> bool:
        return await trip_of_rent(city, rent_id) is not None

    await eventually(started)

    st2.cut_link()  # the return station drops off the network (its Will marks it offline)
    assert city.sessionmaker is not None

    async def offline() -> bool:
        async with city.sessionmaker() as s:  # type: ignore[misc]
            d = (await s.scalars(select(Device).where(Device.device_id == "st-0002"))).one()
            return not d.online

    await eventually(offline)
    # Meanwhile an unlock there fails fast instead of hanging the rider.
    t0 = time.monotonic()
    status, refused = await rent(city, headers, await city.spot_id("st-0002", 1), "offline-try")
    assert status == 503 and refused["code"] != 0, refused
    assert time.monotonic() - t0 < 1.0

    docked_at = time.time()
    st2.sim.dock(5, "LY0003")  # docked while offline: queued on the station's disk
    await asyncio.sleep(2.0)
    trip = await trip_of_rent(city, rent_id)
    assert trip is not None and trip.status == "running", "nothing can reach the cloud yet"
    restored_at = time.time()
    st2.restore_link()

    async def ended() -> bool:
        t = await trip_of_rent(city, rent_id)
        return t is not None and t.status == "finished"

    await eventually(ended, 20)
    trip = await trip_of_rent(city, rent_id)
    assert trip is not None and trip.ended_at is not None
    assert abs(trip.ended_at.timestamp() - docked_at) < 1.0, "ends at the DOCKING time"
    assert trip.ended_at.timestamp() < restored_at - 1.0
    assert trip.cost == seeded_price(trip.started_at, trip.ended_at)

