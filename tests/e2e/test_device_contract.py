"""The device contract of SPEC §4.3/§4.4 and §4.8 (clock), end to end: the REAL station agent
against simulated spot boards, Mosquitto, the ingest worker and the API (tests/e2e/city.py).

* a status moves a vehicle: the cloud's record drifted (LY0008 in spot 2), the station
  reports it in spot 4 and spot 2 EMPTY after a reboot; the API follows, a rider rents it;
* maintenance in and out through the dashboard API, echoed by the station's status; a
  whole station's, decided while it was unreachable, sent again after its birth;
* a silent station (link stalled, no Will) goes offline on the map and in the rent path
  at the same moment, three heartbeat intervals after it fell silent; the ingest sweep
  tells of it once (``station.updated``, online false), and of its return;
* a station whose clock is 6 s fast, or 6 s slow, of the command signer still unlocks.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import func, select, update

from kickstand.cloud.alerts.engine import AlertEngine
from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import AlertState, AlertType
from kickstand.cloud.ingest.apply import BatchApplier, IngestStats
from kickstand.cloud.ingest.tables import DeviceStatus
from kickstand.cloud.liveness import PRESENCE_COLUMNS, Presence, why_offline
from kickstand.cloud.models import (
    Device,
    MaintenanceSource,
    OutboxEvent,
    Spot,
    SpotState,
    Station,
    Vehicle,
)
from kickstand.protocol.v1 import enums as pe
from kickstand.testing import MosquittoService, PostgresServer
from tests.e2e.city import City, CloudClock, eventually, seeded_city

pytestmark = [
    pytest.mark.slow,
    pytest.mark.mqtt,
    pytest.mark.postgres,
    pytest.mark.asyncio(loop_scope="module"),
]

ALICE = ("alice@example.com", "alice-demo-1")
BOB = ("bob@example.com", "bob-demo-1")
OPERATOR = ("operator@example.com", "operator-demo-1")
HEARTBEAT_S = 1
CLOUD_CLOCK = CloudClock()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def city(
    mosquitto: MosquittoService,
    pg_server: PostgresServer,
    pg_template: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[City]:
    async with seeded_city(
        mosquitto,
        pg_server,
        pg_template,
        tmp_path_factory.mktemp("contract-city"),
        # The seed docks LY0007-9 at st-0003 spots 1-3; the rig holds LY0008 in spot 4.
        stations={
            "st-0003": {1: "LY0007", 3: "LY0009", 4: "LY0008"},
            "st-0004": {1: "LY0010", 2: "LY0011", 3: "LY0012"},
        },
        unlock_window_s=5,
        heartbeat_s=HEARTBEAT_S,
        cloud_clock_ms=CLOUD_CLOCK,
    ) as c:
        yield c


async def rent(city: City, who: tuple[str, str], spot_id: int) -> tuple[int, dict[str, Any]]:
    headers = await city.login(*who)
    r = await city.client().post(
        "/v1/rents",
        json={"spot_id": spot_id},
        headers={**headers, "Idempotency-Key": f"contract-{uuid.uuid4().hex}"},
    )
    return r.status_code, r.json()


async def vehicle_spot(city: City, serial: str) -> int | None:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        spot_id: int | None = await s.scalar(
            select(Vehicle.spot_id).where(Vehicle.serial_number == serial)
        )
        return spot_id


async def cluster_of(city: City, device_id: str) -> int:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        cluster_id: int = (
            await s.execute(select(Station.cluster_id).where(Station.device_id == device_id))
        ).scalar_one()
        return cluster_id


async def test_a_status_moves_a_vehicle_the_cloud_had_in_another_spot(city: City) -> None:
    spot2, spot4 = await city.spot_id("st-0003", 2), await city.spot_id("st-0003", 4)
    await eventually(lambda: _is(vehicle_spot(city, "LY0008"), spot4), 15)
    # The cloud's record drifts (a lost event, a manual edit): LY0008 back in spot 2.
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s, s.begin():
        await s.execute(
            update(Vehicle).where(Vehicle.serial_number == "LY0008").values(spot_id=spot2)
        )
    # A reboot: the station reports every spot after its birth (no dock event this time:
    # nothing changed on the station).
    await city.rigs["st-0003"].restart_agent()
    await eventually(lambda: _is(vehicle_spot(city, "LY0008"), spot4), 15)

    cluster = await cluster_of(city, "st-0003")
    r = await city.client().get(f"/v1/clusters/{cluster}/spots")
    spots = {s["displayed_number"]: s for s in r.json()["data"]}
    assert spots[2]["vehicle_id"] is None
    assert spots[4]["vehicle_id"] is not None
    assert spots[4]["lock_status"] == pe.LockState.LOCKED  # the protocol's code: 0
    status, body = await rent(city, ALICE, spot4)
    assert status == 201, body
    assert body["data"]["serial_number"] == "LY0008"


async def test_maintenance_in_and_out_through_the_dashboard(city: City) -> None:
    spot1 = await city.spot_id("st-0003", 1)
    operator = await city.login(*OPERATOR)
    r = await city.client().put(
        f"/v1/dashboard/spots/{spot1}/maintenance",
        json={"in_maintenance": True, "reason": "lock check"},
        headers=operator,
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["station_answer"] == "done" and data["in_maintenance"] is True
    assert data["maintenance_source"] == MaintenanceSource.OPERATOR
    # The station's echo: it reports the spot in MAINTENANCE.
    await eventually(lambda: _reported(city, 1, pe.SpotState.MAINTENANCE), 10)
    status, body = await rent(city, BOB, spot1)
    assert status == 409 and body["reason"] == "spot-unavailable", body

    r = await city.client().put(
        f"/v1/dashboard/spots/{spot1}/maintenance",
        json={"in_maintenance": False},
        headers=operator,
    )
    assert r.status_code == 200 and r.json()["data"]["station_answer"] == "done", r.text
    await eventually(lambda: _reported(city, 1, pe.SpotState.DOCKED_LOCKED), 10)
    await eventually(lambda: _spot_state_is(city, spot1, SpotState.ACTIVE), 10)

    # A rider is not an operator.
    rider = await city.login(*ALICE)
    r = await city.client().put(
        f"/v1/dashboard/spots/{spot1}/maintenance", json={"in_maintenance": True}, headers=rider
    )
    assert r.status_code == 403


async def test_a_silent_station_goes_offline_on_the_map_and_in_the_rent_path_together(
    city: City,
) -> None:
    cluster = await cluster_of(city, "st-0004")
    spot1 = await city.spot_id("st-0004", 1)

    async def map_down() -> bool:
        r = await city.client().get(f"/v1/clusters/{cluster}")
        down: bool = r.json()["data"]["cluster_is_down"]
        return down

    assert not await map_down()
    city.rigs["st-0004"].stall_link()
    silent_since = time.monotonic()
    # Poll both answers in turn; each flips once. They must flip together.
    map_down_at: float | None = None
    rent_path_down_at: float | None = None
    while map_down_at is None or rent_path_down_at is None:
        assert time.monotonic() - silent_since < 20, "the station never went offline"
        if map_down_at is None and await map_down():
            map_down_at = time.monotonic()
        presence = await _presence(city, "st-0004")
        if rent_path_down_at is None and why_offline(presence, datetime.now(UTC)) is not None:
            rent_path_down_at = time.monotonic()
    assert abs(map_down_at - rent_path_down_at) < 0.3, (map_down_at, rent_path_down_at)
    went_down_after = map_down_at - silent_since
    # Silence, not a Will: the broker has not given up on the connection yet.
    assert (await _presence(city, "st-0004")).online is True
    status, body = await rent(city, ALICE, spot1)
    assert status == 503 and body["reason"] == "device-offline", body
    assert "silent" in body["message"] or "offline" in body["message"]
    # Three heartbeat intervals after it was last heard (up to one interval before the
    # stall, and last_seen_at is written every half interval).
    assert 2 * HEARTBEAT_S - 0.5 <= went_down_after <= 3 * HEARTBEAT_S + 3, went_down_after
    # The alerts' sweep asks the same rule: the outage is raised, and stopped once back.
    assert await _station_offline_alert(city, "st-0004") == AlertState.NEW
    # The ingest sweep takes it offline in the record and tells of it, once.
    told_after = await _last_outbox_id(city)
    await _ingest_sweep(city)
    await _ingest_sweep(city)
    assert await _told_online(city, "st-0004", told_after) == [False]

    city.rigs["st-0004"].restore_link()
    await eventually(lambda: _not(map_down()), 20)
    assert await _station_offline_alert(city, "st-0004") == AlertState.STOPPED
    # Back: told once more.
    await eventually(lambda: _is(_told_online(city, "st-0004", told_after), [False, True]), 10)


@pytest.mark.parametrize("skew_s", [6, -6])
async def test_a_station_whose_clock_is_a_few_seconds_off_still_unlocks(
    city: City, skew_s: int
) -> None:
    agent = city.rigs["st-0003"].agent
    assert agent is not None
    CLOUD_CLOCK.skew_ms = skew_s * 1000
    try:
        # The station syncs to the ingest clock on its next heartbeat's TimeReply.
        await eventually(lambda: _true(abs(agent.link.clock.offset_ms - skew_s * 1000) < 500), 10)
        spot = await city.spot_id("st-0003", 3 if skew_s > 0 else 1)
        status, body = await rent(city, BOB, spot)
        assert status == 201, body
    finally:
        CLOUD_CLOCK.skew_ms = 0


async def test_a_whole_station_in_maintenance_is_told_again_until_it_agrees(city: City) -> None:
    """The station is unreachable when the operator decides: the decision stands, and the
    station, back and reporting spot 0 in service after its birth, is told again."""
    station_id = await _station_id(city, "st-0004")
    spot1 = await city.spot_id("st-0004", 1)
    operator = await city.login(*OPERATOR)
    city.rigs["st-0004"].stall_link()
    try:
        await eventually(lambda: _offline(city, "st-0004"), 20)
        r = await city.client().put(
            f"/v1/dashboard/stations/{station_id}/maintenance",
            json={"in_maintenance": True, "reason": "cabinet repair"},
            headers=operator,
        )
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert data["in_maintenance"] is True and data["station_answer"] == "device-offline"
        assert {s["maintenance_source"] for s in data["spots"]} == {MaintenanceSource.STATION}
    finally:
        city.rigs["st-0004"].restore_link()
    # Not told yet: the station still says it is in service.
    assert not await _station_reported(city, "st-0004", pe.DeviceState.MAINTENANCE)
    # Its birth is followed by every status; spot 0 disagrees, the cloud sends it again.
    await city.rigs["st-0004"].restart_agent()
    await eventually(lambda: _station_reported(city, "st-0004", pe.DeviceState.MAINTENANCE), 20)
    status, body = await rent(city, ALICE, spot1)
    assert status == 409 and body["reason"] == "spot-unavailable", body

    r = await city.client().put(
        f"/v1/dashboard/stations/{station_id}/maintenance",
        json={"in_maintenance": False},
        headers=operator,
    )
    assert r.status_code == 200 and r.json()["data"]["station_answer"] == "done", r.text
    await eventually(
        lambda: _not(_station_reported(city, "st-0004", pe.DeviceState.MAINTENANCE)), 10
    )
    await eventually(lambda: _spot_state_is(city, spot1, SpotState.ACTIVE), 10)


# -- helpers ---------------------------------------------------------------------------


async def _is(value: Any, expected: object) -> bool:
    return bool(await value == expected)


async def _not(value: Any) -> bool:
    return not await value


async def _true(value: bool) -> bool:
    return value


async def _presence(city: City, device_id: str) -> Presence:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        row = (
            await s.execute(select(*PRESENCE_COLUMNS).where(Device.device_id == device_id))
        ).one()
        return Presence(*row)


async def _station_offline_alert(city: City, device_id: str) -> AlertState | None:
    """Run the alert sweep now; the state of the station's station-offline alert."""
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s, s.begin():
        await AlertEngine().sweep(s)
        state: AlertState | None = await s.scalar(
            select(FleetAlert.state)
            .where(
                FleetAlert.alert_type == AlertType.STATION_OFFLINE,
                FleetAlert.device_id == device_id,
            )
            .order_by(FleetAlert.id.desc())
        )
        return state


async def _reported(city: City, spot: int, state: pe.SpotState) -> bool:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        reported = await s.scalar(
            select(DeviceStatus.state).where(
                DeviceStatus.device_id == "st-0003", DeviceStatus.spot == spot
            )
        )
        return reported == int(state)


async def _spot_state_is(city: City, spot_id: int, state: SpotState) -> bool:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        return bool(await s.scalar(select(Spot.state).where(Spot.id == spot_id)) == state)


async def _station_id(city: City, device_id: str) -> int:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        station_id: int = (
            await s.execute(select(Station.id).where(Station.device_id == device_id))
        ).scalar_one()
        return station_id


async def _offline(city: City, device_id: str) -> bool:
    return why_offline(await _presence(city, device_id), datetime.now(UTC)) is not None


async def _station_reported(city: City, device_id: str, state: pe.DeviceState) -> bool:
    """The station's own status (spot 0) as the cloud last applied it."""
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        reported = await s.scalar(
            select(DeviceStatus.state).where(
                DeviceStatus.device_id == device_id, DeviceStatus.spot == 0
            )
        )
        return reported == int(state)


async def _ingest_sweep(city: City) -> None:
    """The ingest's periodic sweep, now (the city's worker runs none)."""
    assert city.sessionmaker is not None
    applier = BatchApplier(city.sessionmaker, IngestStats())
    try:
        await applier.sweep()
    finally:
        await applier.release()


async def _last_outbox_id(city: City) -> int:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        return int(await s.scalar(select(func.max(OutboxEvent.id))) or 0)


async def _told_online(city: City, device_id: str, after_id: int) -> list[bool]:
    """``online`` of the station's ``station.updated`` events after ``after_id``."""
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        station_id = await _station_id(city, device_id)
        rows = await s.scalars(
            select(OutboxEvent)
            .where(
                OutboxEvent.id > after_id,
                OutboxEvent.topic == "station.updated",
                OutboxEvent.resource_id == str(station_id),
            )
            .order_by(OutboxEvent.id)
        )
        return [bool(row.payload["online"]) for row in rows]
