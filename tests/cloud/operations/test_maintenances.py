"""Maintenance types and records of spots, stations and vehicles over HTTP on PostgreSQL:
opening takes the target out of service (the station or the vehicle is told), resolving
the last record puts it back; the PUT …/maintenance routes are the same records."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from kickstand.cloud.models import Spot, SpotState, Vehicle
from kickstand.cloud.operations.models import Maintenance
from kickstand.protocol.v1 import messages as m
from tests.cloud.api.support import Api
from tests.cloud.operations.support import ON_POSTGRES, OPERATOR, other_operator, spot_id


async def new_type(api: Api, headers: dict[str, str], key: str, target: str, severity: str) -> None:
    r = await api.client.post(
        "/v1/dashboard/maintenance-types",
        json={"key": key, "target_type": target, "severity": severity},
        headers=headers,
    )
    assert r.status_code == 200, r.text


async def open_on(api: Api, headers: dict[str, str], path: str, **body: Any) -> dict[str, Any]:
    r = await api.client.post(f"/v1/dashboard/{path}/maintenances", json=body, headers=headers)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def rent_refusal(api: Api, spot: int, key: str) -> str | None:
    r = await api.client.post(
        "/v1/rents",
        json={"spot_id": spot},
        headers={**await api.login("bob@example.com"), "Idempotency-Key": key},
    )
    return r.json().get("reason") if r.status_code >= 400 else None


@ON_POSTGRES
async def test_types_are_a_catalogue(api: Api) -> None:
    operator = await api.login(OPERATOR)
    await new_type(api, operator, "broken-latch", "spot", "high")
    r = await api.client.post(
        "/v1/dashboard/maintenance-types",
        json={"key": "broken-latch", "target_type": "spot", "severity": "low"},
        headers=operator,
    )
    assert r.status_code == 409 and r.json()["reason"] == "maintenance-type-exists"
    r = await api.client.get("/v1/dashboard/maintenance-types", headers=operator)
    (kind,) = [t for t in r.json()["data"] if t["type_key"] == "broken-latch"]
    assert kind["target_type"] == "spot" and kind["severity"] == "high"
    r = await api.client.delete(
        "/v1/dashboard/maintenance-types", params={"key": "broken-latch"}, headers=operator
    )
    assert r.status_code == 200
    r = await api.client.get("/v1/dashboard/maintenance-types", headers=operator)
    assert "broken-latch" not in [t["type_key"] for t in r.json()["data"]]
    # A deleted type opens nothing; deleting it again is not found.
    spot = await spot_id(api, "st-0002", 1)
    r = await api.client.post(
        f"/v1/dashboard/spots/{spot}/maintenances",
        json={"maintenance_type": "broken-latch"},
        headers=operator,
    )
    assert r.status_code == 404, r.text
    r = await api.client.delete(
        "/v1/dashboard/maintenance-types", params={"key": "broken-latch"}, headers=operator
    )
    assert r.status_code == 404
    # It may be created again.
    await new_type(api, operator, "broken-latch", "spot", "low")


@ON_POSTGRES
async def test_spot_maintenance_out_of_service_until_the_last_record_is_resolved(
    api: Api,
) -> None:
    operator = await api.login(OPERATOR)
    await new_type(api, operator, "broken-latch", "spot", "high")
    await new_type(api, operator, "dirty", "spot", "info")
    await new_type(api, operator, "flat-tyre", "vehicle", "low")
    spot = await spot_id(api, "st-0002", 1)

    # info: known, but the spot stays in service; nothing is sent.
    info = await open_on(api, operator, f"spots/{spot}", maintenance_type="dirty")
    assert info["out_of_service"] is False and info["device_answer"] is None
    assert api.gateway.sent == []

    first = await open_on(
        api, operator, f"spots/{spot}", maintenance_type="broken-latch", comment="latch stuck"
    )
    record = first["maintenance"]
    assert first["out_of_service"] is True and first["device_answer"] == "done"
    assert record["severity"] == "high" and record["started_by"] == "Olivia Operator"
    assert record["spot_id"] == spot and record["station_id"] is not None
    assert api.gateway.sent[-1].command == m.SetMaintenance(spot=1, on=True, reason="latch stuck")
    assert await rent_refusal(api, spot, "maint-rent-1") == "spot-unavailable"
    second = await open_on(
        api, operator, f"spots/{spot}", maintenance_type="broken-latch", severity="low"
    )

    # Resolving one of two: still out of service, the station is not told anything.
    sent = len(api.gateway.sent)
    r = await api.client.delete(
        f"/v1/dashboard/maintenances/{record['maintenance_id']}", headers=operator
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["out_of_service"] is True and len(api.gateway.sent) == sent
    assert r.json()["data"]["maintenance"]["stopped_by_uid"] == api.demo.user_ids[OPERATOR]
    # The last one: back in service, told so.
    r = await api.client.delete(
        f"/v1/dashboard/maintenances/{second['maintenance']['maintenance_id']}",
        headers=operator,
    )
    assert r.json()["data"]["out_of_service"] is False
    assert api.gateway.sent[-1].command == m.SetMaintenance(spot=1, on=False, reason="broken-latch")
    async with api.sessionmaker() as s:
        assert (await s.get_one(Spot, spot)).state == SpotState.ACTIVE

    # A vehicle type on a spot is refused, naming the field.
    r = await api.client.post(
        f"/v1/dashboard/spots/{spot}/maintenances",
        json={"maintenance_type": "flat-tyre"},
        headers=operator,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "maintenance_type"

    # Listings: current (the info one) by network; the spot's and the cluster's history.
    r = await api.client.get(
        "/v1/dashboard/maintenances",
        params={"networks": api.demo.network_id, "lang": "fr"},
        headers=operator,
    )
    assert [x["maintenance_id"] for x in r.json()["data"]] == [
        info["maintenance"]["maintenance_id"]
    ]
    r = await api.client.get(f"/v1/dashboard/spots/{spot}/maintenances", headers=operator)
    assert len(r.json()["data"]) == 3
    cluster = api.demo.cluster_ids[next(iter(api.demo.cluster_ids))]
    r = await api.client.get(
        f"/v1/dashboard/clusters/{cluster}/maintenances",
        params={"state": "resolved"},
        headers=operator,
    )
    assert r.status_code == 200
    resolved_here = [x["maintenance_id"] for x in r.json()["data"]]
    r = await api.client.get(
        "/v1/dashboard/maintenances",
        params={"networks": api.demo.network_id, "state": "resolved", "page_size": 10},
        headers=operator,
    )
    assert len(r.json()["data"]) == 2
    assert set(resolved_here) <= {x["maintenance_id"] for x in r.json()["data"]}

    # Update the comment; delete from the history.
    info_id = info["maintenance"]["maintenance_id"]
    r = await api.client.patch(
        f"/v1/dashboard/maintenances/{info_id}", json={"comment": "cleaned?"}, headers=operator
    )
    assert r.status_code == 200 and r.json()["data"]["comment"] == "cleaned?"
    r = await api.client.patch(
        f"/v1/dashboard/maintenances/{info_id}", json={"severity": "high"}, headers=operator
    )
    assert r.status_code == 422
    r = await api.client.delete(
        f"/v1/dashboard/maintenances/{info_id}",
        params={"delete_from_history": "true"},
        headers=operator,
    )
    assert r.status_code == 200
    r = await api.client.get(f"/v1/dashboard/maintenances/{info_id}", headers=operator)
    assert r.status_code == 404

    # Another network's operator reaches none of it.
    other = await other_operator(api)
    r = await api.client.get(
        f"/v1/dashboard/maintenances/{record['maintenance_id']}", headers=other
    )
    assert r.status_code == 403
    r = await api.client.post(
        f"/v1/dashboard/spots/{spot}/maintenances",
        json={"maintenance_type": "broken-latch"},
        headers=other,
    )
    assert r.status_code == 403


@ON_POSTGRES
async def test_vehicle_maintenance_and_its_controller(api: Api) -> None:
    operator = await api.login(OPERATOR)
    await new_type(api, operator, "flat-tyre", "vehicle", "low")
    vehicle_id = api.demo.vehicle_ids["LY0004"]
    opened = await open_on(
        api, operator, f"vehicles/{vehicle_id}", maintenance_type="flat-tyre", comment="rear"
    )
    assert opened["out_of_service"] is True and opened["device_answer"] == "done"
    issued = api.gateway.sent[-1]
    assert issued.device_id == "vh-LY0004"
    assert issued.command == m.SetMaintenance(spot=0, on=True, reason="rear")
    async with api.sessionmaker() as s:
        vehicle = await s.get_one(Vehicle, vehicle_id)
        assert vehicle.in_maintenance is True
        assert vehicle.spot_id is not None
    # The rider cannot rent it from its spot.
    assert await rent_refusal(api, vehicle.spot_id, "maint-rent-2") == "vehicle-unavailable"
    r = await api.client.get(f"/v1/dashboard/vehicles/{vehicle_id}/maintenances", headers=operator)
    assert [x["vehicle_id"] for x in r.json()["data"]] == [vehicle_id]
    r = await api.client.delete(
        f"/v1/dashboard/maintenances/{opened['maintenance']['maintenance_id']}",
        headers=operator,
    )
    assert r.json()["data"]["out_of_service"] is False
    assert api.gateway.sent[-1].command == m.SetMaintenance(spot=0, on=False, reason="flat-tyre")
    async with api.sessionmaker() as s:
        assert (await s.get_one(Vehicle, vehicle_id)).in_maintenance is False


@ON_POSTGRES
async def test_put_spot_maintenance_is_a_record(api: Api) -> None:
    """The PUT route opens a record of the built-in type and resolves it: one way."""
    operator = await api.login(OPERATOR)
    spot = await spot_id(api, "st-0003", 2)
    r = await api.client.put(
        f"/v1/dashboard/spots/{spot}/maintenance",
        json={"in_maintenance": True, "reason": "vandalised"},
        headers=operator,
    )
    assert r.status_code == 200, r.text
    r = await api.client.get(
        "/v1/dashboard/maintenances", params={"networks": api.demo.network_id}, headers=operator
    )
    (record,) = r.json()["data"]
    assert record["maintenance_type"] == "spot-out-of-service" and record["spot_id"] == spot
    assert record["comment"] == "vandalised"
    # Putting it in maintenance again keeps the one record.
    await api.client.put(
        f"/v1/dashboard/spots/{spot}/maintenance", json={"in_maintenance": True}, headers=operator
    )
    r = await api.client.put(
        f"/v1/dashboard/spots/{spot}/maintenance", json={"in_maintenance": False}, headers=operator
    )
    assert r.status_code == 200 and r.json()["data"]["in_maintenance"] is False
    async with api.sessionmaker() as s:
        rows = list(await s.scalars(select(Maintenance).where(Maintenance.spot_id == spot)))
        assert len(rows) == 1 and rows[0].stopped_at is not None
        assert rows[0].stopped_by == api.demo.user_ids[OPERATOR]
    # A station the same way, and resolving its record frees it.
    station_spot = await spot_id(api, "st-0003", 1)
    async with api.sessionmaker() as s:
        station_id = (await s.get_one(Spot, station_spot)).station_id
    r = await api.client.put(
        f"/v1/dashboard/stations/{station_id}/maintenance",
        json={"in_maintenance": True, "reason": "flooded"},
        headers=operator,
    )
    assert r.status_code == 200 and r.json()["data"]["in_maintenance"] is True
    r = await api.client.get(
        f"/v1/dashboard/stations/{station_id}/maintenances",
        params={"state": "current"},
        headers=operator,
    )
    (record,) = r.json()["data"]
    assert record["maintenance_type"] == "station-out-of-service"
    r = await api.client.delete(
        f"/v1/dashboard/maintenances/{record['maintenance_id']}", headers=operator
    )
    assert r.json()["data"]["out_of_service"] is False
    assert api.gateway.sent[-1].command == m.SetMaintenance(
        spot=0, on=False, reason="station-out-of-service"
    )
