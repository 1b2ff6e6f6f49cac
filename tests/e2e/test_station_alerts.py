"""Fleet alerts raised and cleared by a simulated station: the real agent reads the
simulated power input, alarm input and spot boards, its events cross Mosquitto, the
ingest worker applies the alert rules in PostgreSQL, and an operator acts through the
FleetAlerts API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import select

from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import AlertState, AlertType
from kickstand.testing import MosquittoService, PostgresServer
from tests.e2e.city import City, eventually

OPERATOR = ("operator@example.com", "operator-demo-1")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def city(
    mosquitto: MosquittoService,
    pg_server: PostgresServer,
    pg_template: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[City]:
    database = pg_server.new_database(template=pg_template)
    try:
        async with City(
            mqtt_url=mosquitto.url,
            broker_host=mosquitto.host,
            broker_port=mosquitto.port,
            database_url=database.url,
            workdir=tmp_path_factory.mktemp("alerts-city"),
            stations={"st-0003": {1: "LY0007"}},
            rig_overrides={"fast": True},
        ) as c:
            yield c
    finally:
        pg_server.drop_database(database.name)


async def alerts_of(city: City, alert_type: AlertType) -> list[FleetAlert]:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        rows = await s.scalars(
            select(FleetAlert)
            .where(FleetAlert.alert_type == alert_type, FleetAlert.device_id == "st-0003")
            .order_by(FleetAlert.id)
        )
        return list(rows)


async def state_is(city: City, alert_type: AlertType, state: AlertState) -> bool:
    found = await alerts_of(city, alert_type)
    return len(found) == 1 and found[0].state is state


@pytest.mark.asyncio(loop_scope="module")
async def test_power_cut_raised_by_the_station_and_stopped_when_power_returns(city: City) -> None:
    sim = city.rigs["st-0003"].sim
    sim.cut_power()
    await eventually(lambda: state_is(city, AlertType.STATION_POWER_CUT, AlertState.NEW), 20)
    sim.restore_power()
    await eventually(lambda: state_is(city, AlertType.STATION_POWER_CUT, AlertState.STOPPED), 20)
    (alert,) = await alerts_of(city, AlertType.STATION_POWER_CUT)
    assert alert.severity.value == "critical"


@pytest.mark.asyncio(loop_scope="module")
async def test_hot_spot_raised_then_resolved_by_an_operator(city: City) -> None:
    sim = city.rigs["st-0003"].sim
    sim.overheat(1, 80.0)
    await eventually(lambda: state_is(city, AlertType.SPOT_HIGH_TEMPERATURE, AlertState.NEW), 20)
    (alert,) = await alerts_of(city, AlertType.SPOT_HIGH_TEMPERATURE)
    assert alert.spot_number == 1

    headers = await city.login(*OPERATOR)
    http = city.client()
    current = await http.get(
        "/v1/dashboard/fleet-alerts", params={"networks": "1"}, headers=headers
    )
    assert current.status_code == 200, current.text
    assert alert.id in [a["id"] for a in current.json()["data"]]
    resolved = await http.post(
        "/v1/dashboard/fleet-alerts/resolve", json={"alert_ids": [alert.id]}, headers=headers
    )
    assert resolved.status_code == 200, resolved.text
    assert await state_is(city, AlertType.SPOT_HIGH_TEMPERATURE, AlertState.RESOLVED)
    sim.cool(1)


@pytest.mark.asyncio(loop_scope="module")
async def test_alarm_input_raises_one_alert_however_often_it_flaps(city: City) -> None:
    sim = city.rigs["st-0003"].sim
    for _ in range(3):
        sim.trigger_alarm("cabinet open")
        await eventually(
            lambda: state_is(city, AlertType.STATION_ALARM_TRIGGERED, AlertState.NEW), 20
        )
        sim.clear_alarm()
        await eventually(
            lambda: state_is(city, AlertType.STATION_ALARM_TRIGGERED, AlertState.STOPPED), 20
        )
    (alert,) = await alerts_of(city, AlertType.STATION_ALARM_TRIGGERED)
    assert alert.occurrences >= 3
