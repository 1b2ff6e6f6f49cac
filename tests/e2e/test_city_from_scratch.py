"""An operator builds a city from nothing (issue 16), end to end and over HTTP only.

A database with only an administrator (migrated, ``create_admin``: not the demo seed). The
administrator creates a network, its border and an organizational unit, and gives the
operator role on it to a person who signed up; the operator sets prices, creates a cluster,
commissions a station (its real agent was refused before, is accepted after), registers a
bike docked in it and a kick-scooter with its controller; a rider who signed up (credited
by the administrator) rents the bike, rides and docks at another spot, and is billed by the
operator's prices; the operator sees the trip, puts its spot in maintenance and back, reads
the overview and usage stats, changes the prices, stops the billing of a stuck trip,
decommissions the vehicles and then the emptied station (its device refused at its boot).

Real PostgreSQL and Mosquitto, the ingest worker, the API under uvicorn with its mail relay
(an in-process SMTP sink), the REAL station agent against simulated spot boards
(``tests.e2e.city``) and the REAL vehicle agent on the vehicle simulator. The database is
read for assertions only (the stations' reported spot states), never written.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from kickstand.cloud.accounts.admin import create_admin
from kickstand.cloud.commands import load_signer
from kickstand.cloud.ingest.apply import INFO_TTL_S, UNKNOWN_TTL_S
from kickstand.cloud.ingest.tables import DeviceStatus
from kickstand.cloud.migrations import upgrade
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1.enums import BootStatus
from kickstand.simulators.station.sim import StationRig
from kickstand.simulators.vehicle import VehicleFleet
from kickstand.simulators.vehicle.fleet import FleetMember
from kickstand.testing import MosquittoService, PostgresServer
from kickstand.testing.mailsink import MailSink
from tests.e2e.city import City, eventually

pytestmark = [pytest.mark.slow, pytest.mark.mqtt, pytest.mark.postgres]

ADMIN = ("root@city.example", "a-long-admin-password")
OPERATOR = ("olga@city.example", "olga-operator-1")
RIDER = ("rita@city.example", "rita-rider-1")
DEVICE = "st-GRE0001"
SERIAL = "GRE0001"
#: A kick-scooter with its controller (the real vehicle agent), parked in the street.
SCOOTER = "GRS0001"
PARKED = (5.7260, 45.1890)  # (lng, lat)
FAST_VEHICLE = {
    "riding_interval_s": 0.3,
    "parked_interval_s": 1.0,
    "boot_timeout_s": 2.0,
    "reconnect_min_s": 0.1,
    "reconnect_max_s": 0.4,
    "keepalive_s": 5,
}
TZ = "Europe/Paris"
LAT, LNG = 45.1885, 5.7245
#: The network's border: a square of about 2 km around the station ([lng, lat] points).
BORDER = [[5.71, 45.18], [5.74, 45.18], [5.74, 45.20], [5.71, 45.20], [5.71, 45.18]]
#: The operator's prices: a whole-week rule (equal start and end), nothing included.
FIRST_PRICES = {"unlock_price": "0.40", "use_per_minute_price": "0.25"}
#: The prices after the change (for trips starting after it).
SECOND_PRICES = {"unlock_price": "0.70", "use_per_minute_price": "0.20"}
CREDIT = Decimal("10.00")


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, f"{r.request.method} {r.request.url}: {r.text}"
    return r.json().get("data")


def pricing(network_id: int, prices: dict[str, str]) -> dict[str, Any]:
    return {
        "network_id": network_id,
        "start_dow": 1,
        "start_hod": "00:00:00",
        "end_dow": 1,
        "end_hod": "00:00:00",
        "unlock_included_time": 0,
        "freefloat_lock_price": "0",
        "on_hold_price": "0.05",
        **prices,
    }


def priced(prices: dict[str, str], start: datetime, end: datetime) -> Decimal:
    """The billing rule by hand: unlock price, then every started minute (nothing included)
    at the per-minute price; one whole-week rule, so the weekday does not matter."""
    minutes = math.ceil(max(0.0, (end - start).total_seconds()) / 60)
    return Decimal(prices["unlock_price"]) + Decimal(prices["use_per_minute_price"]) * minutes


@contextlib.asynccontextmanager
async def empty_city(
    mosquitto: MosquittoService, pg_server: PostgresServer, workdir: Path, **options: Any
) -> AsyncIterator[City]:
    """A City on a migrated database holding only an administrator (dropped afterwards)."""
    database = pg_server.new_database(suffix="from_scratch")
    try:
        await upgrade(database.url)
        await create_admin(database.url, ADMIN[0], ADMIN[1], "City Admin")
        async with City(
            mqtt_url=mosquitto.url,
            broker_host=mosquitto.host,
            broker_port=mosquitto.port,
            database_url=database.url,
            workdir=workdir,
            stations={},
            **options,
        ) as city:
            yield city
    finally:
        pg_server.drop_database(database.name)


async def sign_up(city: City, sink: MailSink, email: str, password: str) -> dict[str, str]:
    """Seed 001 sign-up, the confirmation code from the mail, log in."""
    api = city.client()
    ok(
        await api.post(
            "/v1/auth/signup", json={"email": email, "password": password, "accept_terms": True}
        ),
        201,
    )
    mail = await sink.wait_for(email, kind="email-confirm")
    ok(await api.post("/v1/auth/email/confirm", json={"token": sink.token_in(mail)}))
    return await city.login(email, password)


async def user_id(city: City, admin: dict[str, str], email: str) -> int:
    found = ok(
        await city.client().get(
            "/v1/dashboard/users/search", params={"email": email}, headers=admin
        )
    )
    (user,) = [u for u in found if u["email"] == email]
    return int(user["id"])


async def map_cluster(city: City, headers: dict[str, str], cluster_id: int) -> dict[str, Any]:
    """The cluster as the rider map shows it ({} when it is not on the map)."""
    data = ok(
        await city.client().get(
            "/v1/map",
            params={"lat": LAT, "lng": LNG, "latdeg": 0.05, "lngdeg": 0.05},
            headers=headers,
        )
    )
    found = [c for c in data["clusters"] if c["cluster_id"] == cluster_id]
    return dict(found[0]) if found else {}


async def rent(city: City, headers: dict[str, str], spot_id: int) -> httpx.Response:
    return await city.client().post(
        "/v1/rents",
        json={"spot_id": spot_id},
        headers={**headers, "Idempotency-Key": f"scratch-{uuid.uuid4().hex}"},
    )


async def rider_trip(city: City, rider: dict[str, str], state: str) -> dict[str, Any] | None:
    trips = ok(await city.client().get("/v1/trips", headers=rider))
    found = [t for t in trips if t["state"] == state]
    return dict(found[0]) if found else None


async def reported(city: City, spot: int, state: pe.SpotState) -> bool:
    """The station's own report of a spot (read for the assertion only)."""
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        value = await s.scalar(
            select(DeviceStatus.state).where(
                DeviceStatus.device_id == DEVICE, DeviceStatus.spot == spot
            )
        )
        return value == int(state)


async def balance(city: City, admin: dict[str, str], rider_id: int) -> Decimal:
    data = ok(await city.client().get(f"/v1/dashboard/users/{rider_id}/wallets", headers=admin))
    return Decimal(data["balance"])


async def test_an_operator_builds_a_city_from_nothing(
    mosquitto: MosquittoService, pg_server: PostgresServer, tmp_path: Path
) -> None:
    with MailSink(directory=tmp_path / "mail") as sink:
        async with empty_city(
            mosquitto,
            pg_server,
            tmp_path / "city",
            unlock_window_s=5,
            settings={"SMTP_HOST": sink.host, "SMTP_PORT": sink.port},
        ) as city:
            await journey(city, sink, tmp_path)


async def journey(city: City, sink: MailSink, tmp_path: Path) -> None:
    api = city.client()
    admin = await city.login(*ADMIN)

    # ── 1. the administrator: a network, its border, a unit, an operator ───────────────
    network_id = ok(
        await api.post(
            "/v1/dashboard/networks",
            json={
                "name": "Grenoble Vélo",
                "default_vat": "0.2",
                "country_id": 250,
                "currency": "EUR",
                "default_vehicle_guarantee": "0",
                "trip_to_skip_pre_auth_guarantee": 0,
                "timezone": TZ,
                "app_label_id": 1,
            },
            headers=admin,
        )
    )
    ok(
        await api.put(
            "/v1/dashboard/geofencing/border/shape",
            json={"network_id": network_id, "shape": BORDER},
            headers=admin,
        )
    )
    unit_id = ok(
        await api.post(
            "/v1/dashboard/organizational-units",
            json={
                "name": "Grenoble team",
                "networks": [network_id],
                "clusters": [],
                "app_labels": [],
                "organizations": [],
            },
            headers=admin,
        )
    )["id"]
    operator = await sign_up(city, sink, *OPERATOR)
    # Signed up: a rider, not an operator yet.
    r = await api.get("/v1/dashboard/networks/short", headers=operator)
    assert r.status_code == 403 and r.json()["reason"] == "not-an-operator", r.text
    ok(
        await api.post(
            f"/v1/dashboard/users/{await user_id(city, admin, OPERATOR[0])}/roles",
            json={
                "role_key": "operator",
                "organizational_unit": unit_id,
                "write": True,
                "start_date": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
                "end_date": None,
            },
            headers=admin,
        )
    )
    operator = await city.login(*OPERATOR)
    assert ok(await api.get("/v1/dashboard/networks/short", headers=operator)) == [
        {"network_id": network_id, "name": "Grenoble Vélo"}
    ]

    # ── 2. the operator: prices, a cluster, a station, a vehicle ───────────────────────
    rule = ok(
        await api.post(
            "/v1/dashboard/pricing", json=pricing(network_id, FIRST_PRICES), headers=operator
        )
    )
    cluster_id = ok(
        await api.post(
            "/v1/dashboard/clusters",
            json={
                "network_id": network_id,
                "name": "Place Grenette",
                "latitude": LAT,
                "longitude": LNG,
            },
            headers=operator,
        )
    )["cluster_id"]
    vehicle_id = ok(
        await api.post(
            "/v1/dashboard/vehicles",
            json={
                "serial_number": SERIAL,
                "vehicle_type": "bike",
                "model": "Classic",
                "network_id": network_id,
            },
            headers=operator,
        )
    )["vehicle_id"]

    scooter_id = ok(
        await api.post(
            "/v1/dashboard/vehicles",
            json={
                "serial_number": SCOOTER,
                "vehicle_type": "kick-scooter",
                "model": "S1",
                "network_id": network_id,
                "device_id": f"vh-{SCOOTER}",
            },
            headers=operator,
        )
    )["vehicle_id"]

    keys = [load_signer(city.settings).public_key.hex()]
    rig = StationRig(
        DEVICE,
        city.broker_host,
        city.broker_port,
        command_keys=keys,
        workdir=tmp_path / DEVICE,
        spots=4,
        nfc=False,
        unlock_window_s=5,
    )
    rig.sim.dock(1, SERIAL)
    await rig.start()
    try:
        # The real vehicle agent on the simulated scooter, parked in the street: its
        # controller was registered with it, so its birth is accepted at once.
        async with VehicleFleet(
            tmp_path / "fleet",
            mqtt_host=city.broker_host,
            mqtt_port=city.broker_port,
            command_keys=keys,
            gps_interval_s=0.3,
            agent_overrides=FAST_VEHICLE,
        ) as fleet:
            scooter = await fleet.add(SCOOTER, position=PARKED)
            await fleet.wait_online(20)
            town = Town(
                admin, operator, network_id, cluster_id, vehicle_id, scooter_id, rule, rig, scooter
            )
            await city_with_station(city, sink, town)
    finally:
        await rig.stop()


@dataclass(frozen=True, slots=True)
class Town:
    """What the administrator and the operator built (ids as the API answered them)."""

    admin: dict[str, str]
    operator: dict[str, str]
    network_id: int
    cluster_id: int
    vehicle_id: int
    scooter_id: int
    rule: dict[str, Any]
    rig: StationRig
    scooter: FleetMember


async def map_vehicles(city: City, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The free-floating vehicles on the rider map, by serial number."""
    data = ok(
        await city.client().get(
            "/v1/map",
            params={"lat": LAT, "lng": LNG, "latdeg": 0.05, "lngdeg": 0.05},
            headers=headers,
        )
    )
    return {v["serial_number"]: v for v in data["vehicles"]}


async def city_with_station(city: City, sink: MailSink, town: Town) -> None:
    admin, operator, rig = town.admin, town.operator, town.rig
    network_id, cluster_id, vehicle_id = town.network_id, town.cluster_id, town.vehicle_id
    rule = town.rule
    api = city.client()

    async def boot_status_is(status: BootStatus) -> bool:
        assert rig.agent is not None
        return rig.agent.link.boot_status is status

    # Not commissioned yet: its birth is refused.
    await eventually(lambda: boot_status_is(BootStatus.REJECTED), 20)
    station = ok(
        await api.post(
            "/v1/dashboard/stations",
            json={"cluster_id": cluster_id, "device_id": DEVICE, "name": "Grenette", "spots": 4},
            headers=operator,
        )
    )
    station_id = station["station_id"]
    spot = {s["displayed_number"]: s["spot_id"] for s in station["spots"]}
    assert sorted(spot) == [1, 2, 3, 4]
    # The technician powers it up again once ingest forgot the device was unknown.
    await asyncio.sleep(UNKNOWN_TTL_S + 0.5)
    await rig.restart_agent()
    await rig.accepted(within=20)

    rider = await sign_up(city, sink, *RIDER)

    # The vehicle docked in spot 1, reported by the station, is on the rider map.
    async def shown() -> bool:
        c = await map_cluster(city, rider, cluster_id)
        return c.get("available_vehicles") == 1 and c.get("cluster_is_down") is False

    await eventually(shown, 20)
    cluster = await map_cluster(city, rider, cluster_id)
    assert (cluster["total_spots"], cluster["free_spots"]) == (4, 3)
    (vehicle,) = ok(await api.get(f"/v1/clusters/{cluster_id}/vehicles", headers=rider))
    assert (vehicle["serial_number"], vehicle["station_id"]) == (SERIAL, station_id)
    assert ok(await api.get(f"/v1/dashboard/stations/{station_id}", headers=operator))["online"]

    # The scooter's agent reported its position: it is on the rider map, rentable.
    async def parked() -> bool:
        scooter = (await map_vehicles(city, rider)).get(SCOOTER)
        return scooter is not None and scooter["latitude"] is not None

    await eventually(parked, 15)
    scooter = (await map_vehicles(city, rider))[SCOOTER]
    assert scooter["vehicle_id"] == town.scooter_id and scooter["is_available"] is True
    assert abs(scooter["latitude"] - PARKED[1]) < 1e-4
    assert abs(scooter["longitude"] - PARKED[0]) < 1e-4
    fleet = ok(
        await api.get(
            "/v1/dashboard/overview/vehicles", params={"networks": network_id}, headers=operator
        )
    )
    assert (fleet["total"], fleet["docked"], fleet["undocked"], fleet["rentable"]) == (2, 1, 1, 2)

    # ── 3. the rider: credited, rents, rides, docks at another spot, billed ────────────
    rider_id = await user_id(city, admin, RIDER[0])
    ok(
        await api.post(
            f"/v1/dashboard/users/{rider_id}/wallets",
            json={"amount": str(CREDIT), "currency": "EUR", "reason": "welcome credit"},
            headers=admin,
        )
    )
    body = ok(await rent(city, rider, spot[1]), 201)
    assert body["serial_number"] == SERIAL
    assert rig.sim.boards[1].lock.name == "OPEN", "the real agent unlocked the spot"
    assert rig.sim.take(1) == SERIAL

    async def running() -> bool:
        return await rider_trip(city, rider, "running") is not None

    await eventually(running, 10)
    await asyncio.sleep(1.2)  # the ride
    rig.sim.dock(3, SERIAL)

    async def finished() -> bool:
        return await rider_trip(city, rider, "finished") is not None

    await eventually(finished, 10)
    first = await rider_trip(city, rider, "finished")
    assert first is not None
    start, end = (datetime.fromisoformat(first[k]) for k in ("start_date", "end_date"))
    first_cost = priced(FIRST_PRICES, start, end)
    assert (Decimal(first["cost"]), first["currency"]) == (first_cost, "EUR")
    assert await balance(city, admin, rider_id) == CREDIT - first_cost

    # ── 4. the operator: the trip, a spot in maintenance and back, the figures ─────────
    trips = ok(
        await api.get("/v1/dashboard/trips", params={"networks": network_id}, headers=operator)
    )
    assert [(t["trip_id"], t["state"], t["email"], Decimal(t["cost"])) for t in trips] == [
        (first["trip_id"], "finished", RIDER[0], first_cost)
    ]
    detail = ok(await api.get(f"/v1/dashboard/trips/{first['trip_id']}", headers=operator))
    breakdown = detail["cost_detail"]
    assert Decimal(breakdown["unlock_price"]) == Decimal(FIRST_PRICES["unlock_price"])
    assert breakdown["unlock_rule_id"] == rule["pricing_id"]
    assert [(line["minutes"], Decimal(line["unit_price"])) for line in breakdown["lines"]] == [
        (
            math.ceil((end - start).total_seconds() / 60),
            Decimal(FIRST_PRICES["use_per_minute_price"]),
        )
    ]
    assert Decimal(breakdown["total"]) == first_cost and detail["billing_stops"] == []

    # The spot holding the bike, in maintenance: the agent is told (SetMaintenance) and
    # reports it; the spot and its bike leave the rider map; a rent there is refused.
    told = ok(
        await api.put(
            f"/v1/dashboard/spots/{spot[3]}/maintenance",
            json={"in_maintenance": True, "reason": "lock check"},
            headers=operator,
        )
    )
    assert told["station_answer"] == "done" and told["in_maintenance"] is True
    await eventually(lambda: reported(city, 3, pe.SpotState.MAINTENANCE), 10)
    spots = ok(await api.get(f"/v1/clusters/{cluster_id}/spots", headers=rider))
    assert {s["displayed_number"]: s["is_accessible"] for s in spots} == {
        1: True, 2: True, 3: False, 4: True,
    }  # fmt: skip
    cluster = await map_cluster(city, rider, cluster_id)
    assert (cluster["available_vehicles"], cluster["free_spots"]) == (0, 3)
    r = await rent(city, rider, spot[3])
    assert (r.status_code, r.json().get("reason")) == (409, "spot-unavailable"), r.text
    assert rig.sim.boards[3].lock.name == "LOCKED"
    counts = ok(
        await api.get(
            "/v1/dashboard/overview/stations", params={"networks": network_id}, headers=operator
        )
    )
    assert (counts["stations"], counts["spots"], counts["spots_maintenance"]) == (1, 4, 1)
    told = ok(
        await api.put(
            f"/v1/dashboard/spots/{spot[3]}/maintenance",
            json={"in_maintenance": False},
            headers=operator,
        )
    )
    assert told["station_answer"] == "done" and told["in_maintenance"] is False
    await eventually(lambda: reported(city, 3, pe.SpotState.DOCKED_LOCKED), 10)

    async def rentable_again() -> bool:
        return (await map_cluster(city, rider, cluster_id)).get("available_vehicles") == 1

    await eventually(rentable_again, 10)

    today = datetime.now(ZoneInfo(TZ)).date().isoformat()
    figures: dict[str, str | int] = {"networks": network_id, "timezone": TZ}
    info = ok(await api.get("/v1/dashboard/overview/trips", params=figures, headers=operator))
    assert (info["running"], info["today"], info["last_30_days"]) == (0, 1, 1)
    summary = ok(
        await api.get(
            "/v1/dashboard/usage-stats/summary",
            params={**figures, "start_date": today, "end_date": today},
            headers=operator,
        )
    )
    assert (summary["trips"], summary["users"], summary["vehicles"]) == (1, 1, 1)

    # ── 5. new prices; a stuck rental whose billing the operator stops ────────────────
    successor = ok(
        await api.put(
            f"/v1/dashboard/pricing/{rule['pricing_id']}",
            json=pricing(network_id, SECOND_PRICES),
            headers=operator,
        )
    )
    assert successor["replaces_id"] == rule["pricing_id"]
    # A trip starts when the station says the vehicle left, by the station's clock (synced
    # to the cloud's within its round trips): the rider comes a moment after the change.
    await asyncio.sleep(1.5)
    ok(await rent(city, rider, spot[3]), 201)
    assert rig.sim.take(3) == SERIAL
    await eventually(running, 10)
    stuck = await rider_trip(city, rider, "running")
    assert stuck is not None
    changed_at = datetime.fromisoformat(successor["valid_from"])
    assert datetime.fromisoformat(stuck["start_date"]) > changed_at, (stuck, successor)
    await asyncio.sleep(1.1)
    running_detail = ok(await api.get(f"/v1/dashboard/trips/{stuck['trip_id']}", headers=operator))
    # Running: priced now at the new prices (one started minute).
    assert Decimal(running_detail["cost"]) == priced(
        SECOND_PRICES, datetime.fromisoformat(stuck["start_date"]), datetime.now(UTC)
    )
    ok(
        await api.put(
            f"/v1/dashboard/trips/{stuck['trip_id']}/billing-stop",
            json={"date": stuck["start_date"], "reason": "vehicle never returned"},
            headers=operator,
        )
    )
    stopped = ok(await api.get(f"/v1/dashboard/trips/{stuck['trip_id']}", headers=operator))
    assert Decimal(stopped["cost"]) == Decimal(SECOND_PRICES["unlock_price"])
    assert [s["reason"] for s in stopped["billing_stops"]] == ["vehicle never returned"]
    await asyncio.sleep(1.0)
    rig.sim.dock(4, SERIAL)  # found and docked later: nothing more is billed

    async def both_finished() -> bool:
        trips = ok(await api.get("/v1/trips", headers=rider))
        return [t["state"] for t in trips] == ["finished", "finished"]

    await eventually(both_finished, 10)
    ended = ok(await api.get(f"/v1/trips/{stuck['trip_id']}", headers=rider))
    assert Decimal(ended["cost"]) == Decimal(SECOND_PRICES["unlock_price"])
    assert await balance(city, admin, rider_id) == (
        CREDIT - first_cost - Decimal(SECOND_PRICES["unlock_price"])
    )

    # ── 6. decommissioning: the vehicle, then the emptied station ─────────────────────
    ok(
        await api.post(
            f"/v1/dashboard/vehicles/{town.scooter_id}/decommission",
            params={"reason": "lost-or-stolen"},
            headers=operator,
        )
    )
    assert SCOOTER not in await map_vehicles(city, rider)
    ok(
        await api.post(
            f"/v1/dashboard/vehicles/{vehicle_id}/decommission",
            params={"reason": "irreparable", "comment": "frame cracked"},
            headers=operator,
        )
    )
    assert (await map_cluster(city, rider, cluster_id))["available_vehicles"] == 0
    assert ok(await api.get(f"/v1/clusters/{cluster_id}/vehicles", headers=rider)) == []
    retired = ok(
        await api.get(
            "/v1/dashboard/vehicles/decommissioned",
            params={"networks": network_id},
            headers=operator,
        )
    )
    assert sorted((v["vehicle_id"], v["decommission"]["reason"]) for v in retired) == [
        (vehicle_id, "irreparable"),
        (town.scooter_id, "lost-or-stolen"),
    ]
    r = await rent(city, rider, spot[4])
    assert (r.status_code, r.json().get("reason")) == (409, "vehicle-unavailable"), r.text
    assert rig.sim.boards[4].lock.name == "LOCKED"
    r = await api.delete(f"/v1/dashboard/stations/{station_id}", headers=operator)
    assert r.status_code == 409 and r.json()["reason"] == "vehicles-docked", r.text
    # The technician takes the vehicle out (no rent: a forced removal).
    assert rig.sim.force_take(4) == SERIAL

    async def emptied() -> bool:
        r = await api.delete(f"/v1/dashboard/stations/{station_id}", headers=operator)
        return r.status_code == 200

    await eventually(emptied, 10)
    gone = await map_cluster(city, rider, cluster_id)
    assert gone == {} or (gone["total_spots"], gone["available_vehicles"]) == (0, 0), gone

    # Powered up again: refused once ingest's identity cache let go of the device (within
    # INFO_TTL_S, the documented delay of a decommissioning); until then a reboot is still
    # accepted, so the technician tries again every few seconds.
    async def refused_at_boot() -> bool:
        await rig.restart_agent()

        async def answered() -> bool:
            return rig.agent is not None and rig.agent.link.boot_status is not None

        await eventually(answered, 10)
        if await boot_status_is(BootStatus.REJECTED):
            return True
        await asyncio.sleep(3)
        return False

    await eventually(refused_at_boot, INFO_TTL_S + 15)
    assert rig.agent is not None and not rig.agent.link.accepted.is_set()
