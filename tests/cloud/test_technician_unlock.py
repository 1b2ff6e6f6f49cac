"""A technician's unlock of a spot (``POST /v1/dashboard/spots/{spot_id}/unlock``) through
the real path: the API's MQTT gateway signs the Unlock, Mosquitto carries it, the real
station agent opens the simulated board, the vehicle is taken, and ingest applies the
removal: no rider trip, no unauthorized removal, no unexpected-unlock alert; the vehicle
held in maintenance; the command in the station's history with the operator's id."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.ingest.tables import DeviceCommand
from kickstand.cloud.models import Device, OutboxEvent, Spot, Trip, Vehicle
from kickstand.cloud.operations.models import Maintenance
from kickstand.testing import MosquittoService, PostgresServer
from tests.e2e.city import City, eventually, seeded_city

pytestmark = [pytest.mark.mqtt, pytest.mark.postgres]
OPERATOR = ("operator@example.com", "operator-demo-1")
RIDER = ("alice@example.com", "alice-demo-1")


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
        tmp_path_factory.mktemp("technician-city"),
        stations={"st-0004": {1: "LY0010", 2: "LY0011"}},
        rig_overrides={"fast": True},
        unlock_window_s=5,
    ) as c:
        yield c


async def online(city: City, headers: dict[str, str]) -> None:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        pk = (await s.scalars(select(Device.id).where(Device.device_id == "st-0004"))).one()

    async def is_online() -> bool:
        r = await city.client().get(f"/v1/dashboard/devices/{pk}", headers=headers)
        return r.status_code == 200 and bool(r.json()["data"]["online"])

    await eventually(is_online, 20)


def unlock_headers(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Idempotency-Key": f"tech-{uuid.uuid4()}"}


@pytest.mark.asyncio(loop_scope="module")
async def test_technician_takes_a_vehicle_without_a_trip_or_alert(city: City) -> None:
    assert city.sessionmaker is not None
    headers = await city.login(*OPERATOR)
    await online(city, headers)
    spot = await city.spot_id("st-0004", 2)
    async with city.sessionmaker() as s:
        first_outbox = await s.scalar(select(OutboxEvent.id).order_by(OutboxEvent.id.desc()))

    send = unlock_headers(headers)
    url = f"/v1/dashboard/spots/{spot}/unlock"
    r = await city.client().post(url, json={"reason": "brake check"}, headers=send)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["command"]["outcome"] == "done" and data["command"]["command_type"] == "unlock"
    assert (data["serial_number"], data["vehicle_held"]) == ("LY0011", True)
    board = city.rigs["st-0004"].sim.boards[2]
    assert board.lock.name == "OPEN", "the Unlock crossed the broker to the board"
    # The same key again: the stored answer, nothing sent twice.
    again = await city.client().post(url, json={"reason": "brake check"}, headers=send)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["data"]["command"]["command_id"] == data["command"]["command_id"]

    assert city.rigs["st-0004"].sim.take(2) == "LY0011"  # the technician takes it away

    async def emptied() -> bool:
        async with city.sessionmaker() as s:  # type: ignore[misc]
            v = (await s.scalars(select(Vehicle).where(Vehicle.serial_number == "LY0011"))).one()
            return v.spot_id is None

    await eventually(emptied, 10)
    await city.settled()
    async with city.sessionmaker() as s:
        vehicle = (await s.scalars(select(Vehicle).where(Vehicle.serial_number == "LY0011"))).one()
        assert vehicle.in_maintenance and vehicle.state == "available"
        trips = (await s.scalars(select(Trip).where(Trip.vehicle_id == vehicle.id))).all()
        assert trips == [], "a technician's take is no rider's trip"
        alerts = (await s.scalars(select(FleetAlert.alert_type))).all()
        assert "unexpected-unlock" not in alerts
        events = (
            await s.scalars(
                select(OutboxEvent).where(
                    OutboxEvent.id > (first_outbox or 0), OutboxEvent.topic == "vehicule.updated"
                )
            )
        ).all()
        mine = [e.payload for e in events if e.payload["vehicle_id"] == vehicle.id]
        assert mine, "the take is told (vehicule.updated)"
        assert not any(p["unauthorized_removal"] for p in mine), mine
        record = (
            await s.scalars(
                select(Maintenance).where(
                    Maintenance.vehicle_id == vehicle.id, Maintenance.stopped_at.is_(None)
                )
            )
        ).one()
        assert record.comment == "technician unlock: brake check"
        command = (
            await s.scalars(
                select(DeviceCommand).where(
                    DeviceCommand.command_id == data["command"]["command_id"]
                )
            )
        ).one()
        assert (command.command_type, command.status) == ("unlock", "done")
        assert command.operator_id is not None and command.rent_id is None


@pytest.mark.asyncio(loop_scope="module")
async def test_refused_for_riders_and_unknown_spots(city: City) -> None:
    spot = await city.spot_id("st-0004", 1)
    rider = await city.login(*RIDER)
    r = await city.client().post(
        f"/v1/dashboard/spots/{spot}/unlock", json={"reason": "x"}, headers=unlock_headers(rider)
    )
    assert r.status_code == 403, r.text
    operator = await city.login(*OPERATOR)
    r = await city.client().post(
        "/v1/dashboard/spots/99999/unlock", json={"reason": "x"}, headers=unlock_headers(operator)
    )
    assert r.status_code == 404, r.text
    r = await city.client().post(
        f"/v1/dashboard/spots/{spot}/unlock", json={"reason": "x"}, headers=operator
    )
    assert r.status_code == 422, "the Idempotency-Key is required"
    assert city.rigs["st-0004"].sim.boards[1].lock.name == "LOCKED"


@pytest.mark.asyncio(loop_scope="module")
async def test_console_station_page_unlocks_a_spot_after_confirmation(city: City) -> None:
    assert city.http is not None
    spot = await city.spot_id("st-0004", 1)
    board = city.rigs["st-0004"].sim.boards[1]
    async with httpx.AsyncClient(base_url=str(city.http.base_url), timeout=30) as browser:
        r = await browser.post(
            "/console/login",
            data={"email": OPERATOR[0], "password": OPERATOR[1], "next": "/console/"},
        )
        assert r.status_code == 303, r.text
        maker = city.sessionmaker
        assert maker is not None
        async with maker() as s:
            station_id = (await s.scalars(select(Spot.station_id).where(Spot.id == spot))).one()
        page = await browser.get(f"/console/stations/{station_id}")
        assert page.status_code == 200 and 'value="spot-unlock"' in page.text
        assert "not offered" not in page.text
        form = {"action": "spot-unlock", "spot_id": str(spot), "reason": "latch check"}
        url = f"/console/stations/{station_id}/action"
        asked = await browser.post(url, data=form)
        assert asked.status_code == 200 and "Please confirm" in asked.text
        assert "latch check" in asked.text and board.lock.name == "LOCKED"  # not yet
        attempt = re.search(r'name="attempt" value="([^"]+)"', asked.text)
        assert attempt is not None
        done = await browser.post(url, data={**form, "attempt": attempt.group(1), "confirmed": "1"})
        assert done.status_code == 303, done.text
        assert "done=done" in done.headers["location"]
        assert board.lock.name == "OPEN"
