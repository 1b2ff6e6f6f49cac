"""Seed 002 Networks for operators, through HTTP on PostgreSQL: listing with indicators,
creation (and the creator's reach), the short list, detail, closing, rent settings."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from kickstand.cloud.access.models import OrganizationalUnit
from kickstand.cloud.models import Cluster, Network, Station, Trip, TripStatus, Vehicle
from tests.cloud.networks.conftest import Net

pytestmark = pytest.mark.postgres

BASE = "/v1/dashboard/networks"


def new_network(name: str, **over: Any) -> dict[str, Any]:
    return {
        "name": name,
        "default_vat": 0.2,
        "country_id": 33,
        "currency": "EUR",
        "default_vehicle_guarantee": 150,
        "trip_to_skip_pre_auth_guarantee": 3,
        "timezone": "Europe/Paris",
        "app_label_id": 1,
        **over,
    }


async def test_get_networks_with_indicators(net: Net) -> None:
    r = await net.call("operator", "GET", BASE)
    assert r.status_code == 200, r.text
    rows = r.json()["data"]
    assert [n["network_id"] for n in rows] == [net.network_a]  # not "Elsewhere"
    async with net.maker() as session:
        stations = len(
            (
                await session.scalars(
                    select(Station.id).join(Cluster).where(Cluster.network_id == net.network_a)
                )
            ).all()
        )
        vehicles = len(
            (
                await session.scalars(select(Vehicle.id).where(Vehicle.network_id == net.network_a))
            ).all()
        )
    assert stations > 0 and vehicles > 0
    assert rows[0]["total_stations"] == stations
    assert rows[0]["total_vehicles"] == vehicles
    assert rows[0]["total_trips"] == 0
    everything = await net.call("admin", "GET", BASE, params={"primary_key_dir": "ASC"})
    assert {n["network_id"] for n in everything.json()["data"]} >= {net.network_a, net.network_b}
    other = await net.call("other", "GET", BASE)
    assert [n["network_id"] for n in other.json()["data"]] == [net.network_b]


async def test_create_network_reachable_by_its_creator_and_team(net: Net) -> None:
    r = await net.call("operator", "POST", BASE, json=new_network("Grenoble"))
    assert r.status_code == 200, r.text
    new_id = r.json()["data"]
    # The same token: the grant's unit now names the new network.
    detail = await net.call("operator", "GET", f"{BASE}/{new_id}")
    assert detail.status_code == 200, detail.text
    data = detail.json()["data"]
    assert data["name"] == "Grenoble" and data["timezone"] == "Europe/Paris"
    assert data["default_vat"] == "0.2" and data["default_vehicle_guarantee"] == "150.00"
    assert data["trip_to_skip_pre_auth_guarantee"] == 3 and data["country_id"] == 33
    short = await net.call("operator", "GET", f"{BASE}/short")
    assert {n["network_id"] for n in short.json()["data"]} == {net.network_a, new_id}
    async with net.maker() as session:
        unit = await session.get_one(OrganizationalUnit, net.unit_a)
        assert unit.networks == sorted([net.network_a, new_id])
    # The read-only colleague's unit is the same: it now reads the new network too.
    assert (await net.call("read-only", "GET", f"{BASE}/{new_id}")).status_code == 200
    # Another network's operator does not.
    refused = await net.call("other", "GET", f"{BASE}/{new_id}")
    assert refused.status_code == 403 and refused.json()["reason"] == "network-not-allowed"


async def test_create_network_refusals(net: Net) -> None:
    taken = await net.call("operator", "POST", BASE, json=new_network("elsewhere"))
    assert taken.status_code == 409 and taken.json()["reason"] == "network-name-taken"
    for bad in (
        {"timezone": "Europe/Atlantis"},
        {"currency": "EURO"},
        {"default_vat": 1.5},
        {"trip_to_skip_pre_auth_guarantee": -2},
        {"default_vehicle_guarantee": -1},
        {"name": ""},
    ):
        r = await net.call("operator", "POST", BASE, json={**new_network("Annecy"), **bad})
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["errors"][0]["field"].endswith(next(iter(bad))), r.text
    ro = await net.call("read-only", "POST", BASE, json=new_network("Annecy"))
    assert ro.status_code == 403 and ro.json()["reason"] == "read-only"
    rider = await net.call("rider", "POST", BASE, json=new_network("Annecy"))
    assert rider.status_code == 403 and rider.json()["reason"] == "not-an-operator"


async def test_admin_creates_without_touching_units(net: Net) -> None:
    r = await net.call("admin", "POST", BASE, json=new_network("Chambery"))
    assert r.status_code == 200, r.text
    async with net.maker() as session:
        units: Sequence[OrganizationalUnit] = (
            await session.scalars(select(OrganizationalUnit))
        ).all()
        assert all(r.json()["data"] not in u.networks for u in units)


async def test_delete_network_refused_while_in_use_then_closed(net: Net) -> None:
    busy = await net.call("operator", "DELETE", f"{BASE}/{net.network_a}")
    assert busy.status_code == 409 and busy.json()["reason"] == "network-in-use"
    assert "stations" in busy.json()["message"] and "vehicles" in busy.json()["message"]
    other = await net.call("other", "DELETE", f"{BASE}/{net.network_a}")
    assert other.status_code == 403
    new_id = (await net.call("operator", "POST", BASE, json=new_network("Valence"))).json()["data"]
    assert (await net.call("read-only", "DELETE", f"{BASE}/{new_id}")).status_code == 403
    ok = await net.call("operator", "DELETE", f"{BASE}/{new_id}")
    assert ok.status_code == 200 and ok.json() == {"code": 0}
    assert (await net.call("operator", "GET", f"{BASE}/{new_id}")).status_code == 404
    listed = await net.call("operator", "GET", BASE)
    assert new_id not in {n["network_id"] for n in listed.json()["data"]}
    short = await net.call("operator", "GET", f"{BASE}/short")
    assert new_id not in {n["network_id"] for n in short.json()["data"]}
    riders = await net.client.get("/v1/networks")
    assert new_id not in {n["network_id"] for n in riders.json()["data"]}
    assert (await net.client.get(f"/v1/networks/{new_id}")).status_code == 404
    assert (await net.client.get(f"/v1/networks/{new_id}/pricing")).status_code == 404
    async with net.maker() as session:
        assert (await session.get_one(Network, new_id)).closed_at is not None


async def test_a_running_trip_keeps_a_network_open(net: Net) -> None:
    new_id = (await net.call("operator", "POST", BASE, json=new_network("Vienne"))).json()["data"]
    async with net.maker() as session:
        trip = Trip(
            user_id=net.users["rider"],
            vehicle_id=next(iter(net.demo.vehicle_ids.values())),
            network_id=new_id,
            status=TripStatus.RUNNING,
            started_at=datetime.now(UTC),
            currency="EUR",
        )
        session.add(trip)
        await session.commit()
    busy = await net.call("operator", "DELETE", f"{BASE}/{new_id}")
    assert busy.status_code == 409 and "1 open trips" in busy.json()["message"], busy.text


SETTINGS = {
    "default_vehicle_guarantee": 80,
    "trip_to_skip_pre_auth_guarantee": -1,
    "first_purchase_required": True,
    "min_battery_to_rent": 30,
    "max_simultaneous_rented_vehicle": 1,
    "trip_on_hold": False,
    "credit_depletion_auto_lock": True,
    "min_battery_to_auto_lock": 5,
}
TIMINGS = {
    "trip_too_long_notifications": 7200,
    "trip_too_long_notifications_frequency": 1800,
    "vehicle_stolen": 86400,
    "trip_auto_pause": 600,
    "trip_max_pause": 900,
    "trip_auto_lock": 3600,
}


async def test_rent_settings_and_timings_read_back(net: Net) -> None:
    url = f"{BASE}/{net.network_a}"
    assert (await net.call("operator", "PUT", f"{url}/rent-settings", json=SETTINGS)).json() == {
        "code": 0
    }
    assert (await net.call("operator", "PUT", f"{url}/rent-timings", json=TIMINGS)).json() == {
        "code": 0
    }
    r = await net.call("read-only", "GET", f"{url}/rent-settings")
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data == {
        "network_id": net.network_a,
        **SETTINGS,
        "default_vehicle_guarantee": "80.00",
        **TIMINGS,
    }
    for path, body, field in (
        ("rent-settings", {**SETTINGS, "min_battery_to_rent": 96}, "min_battery_to_rent"),
        ("rent-settings", {**SETTINGS, "max_simultaneous_rented_vehicle": 0}, "max_simultaneous"),
        ("rent-timings", {**TIMINGS, "vehicle_stolen": 60}, "vehicle_stolen"),
    ):
        bad = await net.call("operator", "PUT", f"{url}/{path}", json=body)
        assert bad.status_code == 422 and field in bad.json()["errors"][0]["field"], bad.text
    ro = await net.call("read-only", "PUT", f"{url}/rent-timings", json=TIMINGS)
    assert ro.status_code == 403 and ro.json()["reason"] == "read-only"
    other = await net.call("other", "GET", f"{url}/rent-settings")
    assert other.status_code == 403 and other.json()["reason"] == "network-not-allowed"


async def test_max_simultaneous_rents_is_what_the_rent_path_reads(net: Net) -> None:
    """The demo allows 2 rents at once; an operator sets 1: the rider's second is refused."""
    url = f"{BASE}/{net.network_a}/rent-settings"
    before = await net.call("operator", "GET", url)
    assert before.json()["data"]["max_simultaneous_rented_vehicle"] == 2
    r = await net.call("operator", "PUT", url, json={**SETTINGS, "min_battery_to_rent": 10})
    assert r.status_code == 200, r.text
    rider = net.headers["rider"]
    vehicles = list(net.demo.vehicle_ids.values())
    answers = []
    for n, vid in enumerate(vehicles[:2]):
        answers.append(
            await net.client.post(
                "/v1/rents",
                json={"vehicle_id": vid},
                headers={**rider, "Idempotency-Key": f"net-max-rents-{n}"},
            )
        )
    assert answers[0].status_code == 201, answers[0].text
    assert answers[1].status_code == 409 and answers[1].json()["reason"] == "too-many-rents"
