"""``PUT /v1/dashboard/spots/{spot_id}/maintenance``: the operator owns maintenance; the
station is sent a SetMaintenance (fake gateway); riders are refused the spot meanwhile."""

from __future__ import annotations

from sqlalchemy import select

from kickstand.cloud.ingest.tables import DeviceCommand
from kickstand.cloud.models import MaintenanceSource, Spot, SpotState, Station
from kickstand.cloud.rent_gateway import UnlockOutcome
from kickstand.protocol.v1 import messages as m
from tests.cloud.api.support import BOTH_DATABASES, Api

OPERATOR = "operator@example.com"


async def spot_of(api: Api, device_id: str, number: int) -> Spot:
    async with api.sessionmaker() as s:
        spot: Spot = (
            await s.scalars(
                select(Spot)
                .join(Station)
                .where(Station.device_id == device_id, Spot.displayed_number == number)
            )
        ).one()
        return spot


@BOTH_DATABASES
async def test_operator_puts_a_spot_in_and_out_of_maintenance(api: Api) -> None:
    spot = await spot_of(api, "st-0001", 2)
    operator = await api.login(OPERATOR)
    r = await api.client.put(
        f"/v1/dashboard/spots/{spot.id}/maintenance",
        json={"in_maintenance": True, "reason": "broken latch"},
        headers=operator,
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["in_maintenance"] is True and data["station_answer"] == "done"
    assert data["maintenance_source"] == MaintenanceSource.OPERATOR
    (issued,) = api.gateway.sent
    assert issued.device_id == "st-0001"
    assert issued.command == m.SetMaintenance(spot=2, on=True, reason="broken latch")
    async with api.sessionmaker() as s:
        row = await s.get_one(Spot, spot.id)
        assert row.state == SpotState.MAINTENANCE
        assert row.maintenance_source == MaintenanceSource.OPERATOR
        # The audit row, written before the command left.
        assert (
            await s.scalar(
                select(DeviceCommand.command_type).where(
                    DeviceCommand.command_id == issued.command_id.hex()
                )
            )
            == "setmaintenance"
        )

    # A rider is refused the spot while it is in maintenance.
    rider = await api.login()
    r = await api.client.post(
        "/v1/rents",
        json={"spot_id": spot.id},
        headers={**rider, "Idempotency-Key": "maintenance-1"},
    )
    assert r.status_code == 409 and r.json()["reason"] == "spot-unavailable", r.text

    r = await api.client.put(
        f"/v1/dashboard/spots/{spot.id}/maintenance",
        json={"in_maintenance": False},
        headers=operator,
    )
    assert r.status_code == 200 and r.json()["data"]["in_maintenance"] is False
    assert api.gateway.sent[-1].command == m.SetMaintenance(spot=2, on=False)
    async with api.sessionmaker() as s:
        row = await s.get_one(Spot, spot.id)
        assert row.state == SpotState.ACTIVE and row.maintenance_source is None


async def test_the_decision_stands_when_the_station_is_offline(api: Api) -> None:
    api.gateway.outcome = UnlockOutcome.offline("st-0001: device is offline")
    spot = await spot_of(api, "st-0001", 3)
    r = await api.client.put(
        f"/v1/dashboard/spots/{spot.id}/maintenance",
        json={"in_maintenance": True},
        headers=await api.login(OPERATOR),
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["in_maintenance"] is True and data["station_answer"] == "device-offline"
    assert "offline" in data["station_reason"]


async def test_riders_and_unknown_spots_are_refused(api: Api) -> None:
    spot = await spot_of(api, "st-0001", 1)
    r = await api.client.put(
        f"/v1/dashboard/spots/{spot.id}/maintenance",
        json={"in_maintenance": True},
        headers=await api.login(),
    )
    assert r.status_code == 403
    r = await api.client.put(
        "/v1/dashboard/spots/99999/maintenance",
        json={"in_maintenance": True},
        headers=await api.login(OPERATOR),
    )
    assert r.status_code == 404
    assert api.gateway.sent == []
