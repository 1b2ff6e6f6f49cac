"""Seed 002 Vehicles through HTTP on PostgreSQL: register, list and filter, detail, used
serials, decommission (never rentable, off the map, refused on a trip), network change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from kickstand.cloud.models import (
    Device,
    DeviceKind,
    OutboxEvent,
    Trip,
    TripStatus,
    User,
    Vehicle,
)
from tests.cloud.api.support import Api
from tests.cloud.vehicles.conftest import OPERATOR, PG, add_admin, add_network, register

URL = "/v1/dashboard/vehicles"


async def _listed(api: Api, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    r = await api.client.get(
        URL, params={"networks": api.demo.network_id, "page_size": 500, **params}, headers=headers
    )
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


async def _place(api: Api, vehicle_id: int, **values: Any) -> None:
    async with api.sessionmaker() as session:
        await session.execute(update(Vehicle).where(Vehicle.id == vehicle_id).values(**values))
        await session.commit()


async def _start_trip(api: Api, vehicle_id: int) -> int:
    async with api.sessionmaker() as session:
        trip = Trip(
            user_id=api.demo.user_ids["alice@example.com"],
            vehicle_id=vehicle_id,
            network_id=api.demo.network_id,
            status=TripStatus.RUNNING,
            started_at=datetime.now(UTC) - timedelta(minutes=5),
            currency="EUR",
            hold_periods=[],
        )
        session.add(trip)
        await session.commit()
        return trip.id


@PG
async def test_register_list_detail_and_used_serials(api: Api) -> None:
    op = await api.login(OPERATOR)
    made = await register(
        api, op, serial_number="tst001", vehicle_type="kick-scooter", device_id="vh-TST001"
    )
    assert made["serial_number"] == "TST001"  # stored upper case
    assert made["model"] == "Kick One" and made["vehicle_type"] == "kick-scooter"
    assert made["state"] == "available" and made["device_id"] == "vh-TST001"
    assert made["external_lock"] is None and made["decommission"] is None
    async with api.sessionmaker() as session:
        device = await session.scalar(select(Device).where(Device.device_id == "vh-TST001"))
        assert device is not None and device.kind == DeviceKind.VEHICLE  # its birth is known
        topics: list[str] = list(
            await session.scalars(
                select(OutboxEvent.topic).where(OutboxEvent.resource_id == str(made["vehicle_id"]))
            )
        )
        assert topics == ["vehicule.created"]

    r = await api.client.get(f"{URL}/{made['vehicle_id']}", headers=op)
    assert r.status_code == 200 and r.json()["data"]["serial_number"] == "TST001"

    # Filters narrow the listing in SQL; pages follow the id.
    await register(api, op, serial_number="TST002", vehicle_type="bike")
    await _place(api, made["vehicle_id"], battery_level=80)
    serials = {v["serial_number"] for v in await _listed(api, op, serial_number="tst")}
    assert serials == {"TST001", "TST002"}
    kicks = await _listed(api, op, vehicle_type="kick-scooter", serial_number="TST")
    assert [v["serial_number"] for v in kicks] == ["TST001"]
    charged = await _listed(api, op, battery_min=50, serial_number="TST")
    assert [v["serial_number"] for v in charged] == ["TST001"]
    everyone = await _listed(api, op)
    assert len(everyone) == len(api.demo.vehicle_ids) + 2
    first = await api.client.get(
        URL,
        params={"networks": api.demo.network_id, "page_size": 10, "primary_key_dir": "ASC"},
        headers=op,
    )
    page = first.json()
    assert len(page["data"]) == 10 and page["next_primary_key"] == page["data"][-1]["vehicle_id"]
    second = await api.client.get(
        URL,
        params={
            "networks": api.demo.network_id,
            "page_size": 10,
            "primary_key_dir": "ASC",
            "last_primary_key": page["next_primary_key"],
        },
        headers=op,
    )
    assert second.json()["data"][0]["vehicle_id"] > page["next_primary_key"]

    r = await api.client.get(
        f"{URL}/used-serials", params={"serials": "tst001,NOPE99,TST002"}, headers=op
    )
    assert r.status_code == 200 and r.json()["data"] == ["TST001", "TST002"]

    # A serial is given once; a device id is a vehicle's once, and never a station's.
    r = await api.client.post(
        URL,
        json={
            "serial_number": "TST001",
            "vehicle_type": "bike",
            "model": "x",
            "network_id": api.demo.network_id,
        },
        headers=op,
    )
    assert r.status_code == 409 and r.json()["reason"] == "serial-in-use"
    for device_id in ("vh-TST001", api.demo.station_device_ids[0]):
        r = await api.client.post(
            URL,
            json={
                "serial_number": "TST003",
                "vehicle_type": "bike",
                "model": "x",
                "network_id": api.demo.network_id,
                "device_id": device_id,
            },
            headers=op,
        )
        assert r.status_code == 409 and r.json()["reason"] == "device-in-use", r.text
    r = await api.client.post(
        URL,
        json={"serial_number": "AB1", "vehicle_type": "bike", "model": "x", "network_id": 1},
        headers=op,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"].endswith("serial_number")


@PG
async def test_decommission_takes_it_off_the_map_for_good(api: Api) -> None:
    op = await api.login(OPERATOR)
    rider = await api.login("bob@example.com")
    made = await register(api, op, serial_number="DEC001", vehicle_type="bike")
    vid = made["vehicle_id"]
    await _place(api, vid, latitude=45.7641, longitude=4.8351, position_at=datetime.now(UTC))
    area = {"lat": 45.75, "lng": 4.82, "latdeg": 0.05, "lngdeg": 0.05}

    async def on_map() -> bool:
        r = await api.client.get("/v1/map", params=area, headers=rider)
        assert r.status_code == 200, r.text
        return vid in {v["vehicle_id"] for v in r.json()["data"]["vehicles"]}

    assert await on_map()
    assert (await api.client.get(f"{URL}/{vid}", headers=op)).json()["data"]["is_available"]

    # Not while it is ridden.
    trip_id = await _start_trip(api, vid)
    r = await api.client.post(f"{URL}/{vid}/decommission", params={"reason": "sold"}, headers=op)
    assert r.status_code == 409 and r.json()["reason"] == "vehicle-busy", r.text
    async with api.sessionmaker() as session:
        await session.execute(
            update(Trip)
            .where(Trip.id == trip_id)
            .values(status=TripStatus.FINISHED, ended_at=datetime.now(UTC))
        )
        await session.commit()

    r = await api.client.post(
        f"{URL}/{vid}/decommission",
        params={"reason": "sold", "comment": "to a museum", "amount": 120.5},
        headers=op,
    )
    assert r.status_code == 200 and r.json() == {"code": 0}, r.text
    detail = (await api.client.get(f"{URL}/{vid}", headers=op)).json()["data"]
    assert detail["state"] == "decommissioned" and detail["is_available"] is False
    decommission = detail["decommission"]
    assert decommission["reason"] == "sold" and decommission["comment"] == "to a museum"
    assert decommission["amount"] == "120.50" and decommission["currency"] == "EUR"
    assert decommission["decommissioned_by"] == api.demo.user_ids[OPERATOR]
    async with api.sessionmaker() as session:
        topics: list[str] = list(
            await session.scalars(
                select(OutboxEvent.topic)
                .where(OutboxEvent.resource_id == str(vid))
                .order_by(OutboxEvent.id)
            )
        )
        assert topics == ["vehicule.created", "vehicule.deleted"]
    assert not await on_map()
    assert vid not in {v["vehicle_id"] for v in await _listed(api, op)}
    r = await api.client.get(
        f"{URL}/decommissioned", params={"networks": api.demo.network_id}, headers=op
    )
    assert [(v["vehicle_id"], v["decommission"]["reason"]) for v in r.json()["data"]] == [
        (vid, "sold")
    ]
    # Once; its serial stays used; it cannot move either.
    r = await api.client.post(f"{URL}/{vid}/decommission", params={"reason": "sold"}, headers=op)
    assert r.status_code == 409 and r.json()["reason"] == "vehicle-decommissioned"
    r = await api.client.get(f"{URL}/used-serials", params={"serials": "DEC001"}, headers=op)
    assert r.json()["data"] == ["DEC001"]
    r = await api.client.post(
        URL,
        json={
            "serial_number": "DEC001",
            "vehicle_type": "bike",
            "model": "x",
            "network_id": api.demo.network_id,
        },
        headers=op,
    )
    assert r.status_code == 409
    r = await api.client.put(
        f"{URL}/{vid}/network", json={"network_id": api.demo.network_id}, headers=op
    )
    assert r.status_code == 409 and r.json()["reason"] == "vehicle-decommissioned"
    # Rents: the one rule refuses it (state is not `available`).
    r = await api.client.post(
        "/v1/rents", json={"vehicle_id": vid}, headers={**rider, "Idempotency-Key": "dec-0001-x"}
    )
    assert r.status_code in (404, 409), r.text


@PG
async def test_change_network_needs_both_networks_and_no_trip(api: Api) -> None:
    op = await api.login(OPERATOR)
    other = await add_network(api)
    made = await register(api, op, serial_number="MOV001", vehicle_type="bike")
    vid = made["vehicle_id"]

    # The demo operator does not operate the other network.
    r = await api.client.put(f"{URL}/{vid}/network", json={"network_id": other}, headers=op)
    assert r.status_code == 403 and r.json()["reason"] == "network-not-allowed"
    admin = await add_admin(api)
    r = await api.client.put(f"{URL}/{vid}/network", json={"network_id": 999_999}, headers=admin)
    assert r.status_code == 404
    trip_id = await _start_trip(api, vid)
    r = await api.client.put(f"{URL}/{vid}/network", json={"network_id": other}, headers=admin)
    assert r.status_code == 409 and r.json()["reason"] == "vehicle-busy"
    async with api.sessionmaker() as session:
        await session.execute(
            update(Trip).where(Trip.id == trip_id).values(status=TripStatus.CANCELLED)
        )
        await session.commit()
    r = await api.client.put(f"{URL}/{vid}/network", json={"network_id": other}, headers=admin)
    assert r.status_code == 200, r.text
    # Now the demo operator no longer sees it.
    r = await api.client.get(f"{URL}/{vid}", headers=op)
    assert r.status_code == 403
    async with api.sessionmaker() as session:
        assert (await session.get_one(Vehicle, vid)).network_id == other
        decommissioner = await session.get_one(User, api.demo.user_ids[OPERATOR])
        assert decommissioner.id  # the operator still exists (nothing else changed)
