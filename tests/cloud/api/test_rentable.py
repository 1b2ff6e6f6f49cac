"""One "available to rent" rule: the map, the cluster counts and lists, and the rent agree.

Before kickstand.cloud.rentable the map and the cluster counts skipped the battery check
the rent applies: an e-bike at 5 % was counted available and then refused.
"""

from __future__ import annotations

import pytest
from sqlalchemy import update

from kickstand.cloud.models import SpotState, Vehicle, VehicleState, VehicleType
from kickstand.cloud.rentable import BATTERY_LOW, SPOT_UNAVAILABLE, VEHICLE_UNAVAILABLE, refusal
from tests.cloud.api.support import BOTH_DATABASES, Api

LYON = {"lat": 45.7600, "lng": 4.8400}


async def _set_battery(api: Api, serial: str, level: int) -> None:
    async with api.sessionmaker() as session, session.begin():
        await session.execute(
            update(Vehicle).where(Vehicle.serial_number == serial).values(battery_level=level)
        )


@BOTH_DATABASES
async def test_a_low_battery_is_unavailable_everywhere_the_rent_refuses_it(api: Api) -> None:
    bellecour = api.demo.cluster_ids["Bellecour"]
    await _set_battery(api, "LY0003", 5)  # an e-bike of Bellecour; the network asks 10 %
    await _set_battery(api, "LYF001", 5)  # a free-floating kick-scooter
    await _set_battery(api, "LY0001", 5)  # a plain bike: no battery rule

    detail = (await api.client.get(f"/v1/clusters/{bellecour}")).json()["data"]
    assert detail["available_vehicles"] == 2
    listed = await api.client.get("/v1/clusters", params={**LYON, "latDeg": 0.1, "lngDeg": 0.1})
    counts = {c["name"]: c["available_vehicles"] for c in listed.json()["data"]}
    assert counts["Bellecour"] == 2 and counts["Perrache"] == 3
    vehicles = (await api.client.get(f"/v1/clusters/{bellecour}/vehicles")).json()["data"]
    assert {v["serial_number"]: v["is_accessible"] for v in vehicles} == {
        "LY0001": True,
        "LY0002": True,
        "LY0003": False,
    }
    auth = await api.login()
    the_map = (
        await api.client.get("/v1/map", params={**LYON, "latdeg": 0.1, "lngdeg": 0.1}, headers=auth)
    ).json()["data"]
    available = {v["serial_number"]: v["is_available"] for v in the_map["vehicles"]}
    assert available["LYF001"] is False and available["LYF002"] is True

    for serial, key in (("LY0003", "e-bike"), ("LYF001", "scooter")):
        r = await api.client.post(
            "/v1/rents",
            json={"vehicle_id": api.demo.vehicle_ids[serial]},
            headers={**auth, "Idempotency-Key": f"low-battery-{key}"},
        )
        assert r.json()["reason"] == "battery-low", r.text


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, None),
        ({"state": VehicleState.RENTED}, VEHICLE_UNAVAILABLE),
        ({"in_maintenance": True}, VEHICLE_UNAVAILABLE),
        ({"spot_state": SpotState.MAINTENANCE}, SPOT_UNAVAILABLE),
        ({"battery_level": 9}, BATTERY_LOW),
        ({"battery_level": 10}, None),
        ({"battery_level": None}, None),  # unknown: the unlock asks the device
        ({"battery_level": 0, "vehicle_type": VehicleType.BIKE}, None),
        ({"spot_state": None, "battery_level": 3}, BATTERY_LOW),
    ],
)
def test_the_rule(changes: dict[str, object], expected: object) -> None:
    facts: dict[str, object] = {
        "state": VehicleState.AVAILABLE,
        "in_maintenance": False,
        "vehicle_type": VehicleType.E_BIKE,
        "battery_level": 80,
        "spot_state": SpotState.ACTIVE,
        "min_battery_to_rent": 10,
        **changes,
    }
    assert refusal(**facts) == expected  # type: ignore[arg-type]
