"""``PUT /v1/dashboard/stations/{station_id}/maintenance``: the whole station in or out of
maintenance (SetMaintenance spot 0, fake gateway); its spots are held with it and refused
to riders; a spot the operator holds on its own keeps its own decision."""

from __future__ import annotations

from sqlalchemy import select

from kickstand.cloud.models import MaintenanceSource, OutboxEvent, Spot, SpotState, Station
from kickstand.protocol.v1 import messages as m
from tests.cloud.api.support import BOTH_DATABASES, Api

OPERATOR = "operator@example.com"


async def station_and_spots(api: Api, device_id: str) -> tuple[Station, list[Spot]]:
    async with api.sessionmaker() as s:
        station = (await s.scalars(select(Station).where(Station.device_id == device_id))).one()
        spots = (
            await s.scalars(
                select(Spot).where(Spot.station_id == station.id).order_by(Spot.displayed_number)
            )
        ).all()
        return station, list(spots)


async def dock_events(api: Api) -> list[dict[str, object]]:
    async with api.sessionmaker() as s:
        rows = await s.scalars(
            select(OutboxEvent).where(OutboxEvent.topic == "dock.updated").order_by(OutboxEvent.id)
        )
        return [row.payload for row in rows]


@BOTH_DATABASES
async def test_operator_puts_a_whole_station_in_and_out_of_maintenance(api: Api) -> None:
    station, spots = await station_and_spots(api, "st-0001")
    assert len(spots) >= 3
    operator = await api.login(OPERATOR)
    # Spot 2 held by the operator on its own first: the station's maintenance leaves it so.
    r = await api.client.put(
        f"/v1/dashboard/spots/{spots[1].id}/maintenance",
        json={"in_maintenance": True},
        headers=operator,
    )
    assert r.status_code == 200, r.text
    before = len(await dock_events(api))

    r = await api.client.put(
        f"/v1/dashboard/stations/{station.id}/maintenance",
        json={"in_maintenance": True, "reason": "cabinet repair"},
        headers=operator,
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["station_id"] == station.id and data["in_maintenance"] is True
    assert data["station_answer"] == "done"
    sources = {s["displayed_number"]: s["maintenance_source"] for s in data["spots"]}
    assert sources[2] == MaintenanceSource.OPERATOR
    assert {n: v for n, v in sources.items() if n != 2} == {
        s.displayed_number: MaintenanceSource.STATION for s in spots if s.displayed_number != 2
    }
    assert all(s["in_maintenance"] for s in data["spots"])
    issued = api.gateway.sent[-1]
    assert issued.device_id == "st-0001"
    assert issued.command == m.SetMaintenance(spot=0, on=True, reason="cabinet repair")
    # Every spot it changed is told (not spot 2: unchanged).
    told = (await dock_events(api))[before:]
    assert sorted(e["displayed_number"] for e in told) == sorted(
        s.displayed_number for s in spots if s.displayed_number != 2
    )
    assert all(e["state"] == SpotState.MAINTENANCE for e in told)

    # A rider is refused every spot of the station meanwhile.
    rider = await api.login()
    r = await api.client.post(
        "/v1/rents",
        json={"spot_id": spots[0].id},
        headers={**rider, "Idempotency-Key": "station-maintenance-1"},
    )
    assert r.status_code == 409 and r.json()["reason"] == "spot-unavailable", r.text

    r = await api.client.put(
        f"/v1/dashboard/stations/{station.id}/maintenance",
        json={"in_maintenance": False},
        headers=operator,
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["in_maintenance"] is False
    assert api.gateway.sent[-1].command == m.SetMaintenance(spot=0, on=False)
    _, after = await station_and_spots(api, "st-0001")
    for spot in after:
        if spot.displayed_number == 2:
            assert spot.state == SpotState.MAINTENANCE
            assert spot.maintenance_source == MaintenanceSource.OPERATOR
        else:
            assert spot.state == SpotState.ACTIVE and spot.maintenance_source is None


async def test_riders_and_unknown_stations_are_refused(api: Api) -> None:
    station, _ = await station_and_spots(api, "st-0001")
    r = await api.client.put(
        f"/v1/dashboard/stations/{station.id}/maintenance",
        json={"in_maintenance": True},
        headers=await api.login(),
    )
    assert r.status_code == 403
    r = await api.client.put(
        "/v1/dashboard/stations/99999/maintenance",
        json={"in_maintenance": True},
        headers=await api.login(OPERATOR),
    )
    assert r.status_code == 404
    assert api.gateway.sent == []


async def test_a_spot_held_with_its_station_stays_held_until_the_station_is_freed(
    api: Api,
) -> None:
    station, spots = await station_and_spots(api, "st-0001")
    operator = await api.login(OPERATOR)
    r = await api.client.put(
        f"/v1/dashboard/stations/{station.id}/maintenance",
        json={"in_maintenance": True},
        headers=operator,
    )
    assert r.status_code == 200, r.text
    # Ending one spot's maintenance does not free it: the station refuses every unlock.
    r = await api.client.put(
        f"/v1/dashboard/spots/{spots[0].id}/maintenance",
        json={"in_maintenance": False},
        headers=operator,
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["in_maintenance"] is True
    assert data["maintenance_source"] == MaintenanceSource.STATION
    r = await api.client.put(
        f"/v1/dashboard/stations/{station.id}/maintenance",
        json={"in_maintenance": False},
        headers=operator,
    )
    _, after = await station_and_spots(api, "st-0001")
    assert all(s.state == SpotState.ACTIVE for s in after)
