"""An operator's commands to a real station: the API's MQTT gateway signs and sends them
through Mosquitto, the real station agent (against the simulated spot boards) executes
them, the answer comes back to the operator and is in the device's command history."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import select

from kickstand.cloud.models import Device
from kickstand.testing import MosquittoService, PostgresServer
from tests.e2e.city import City, eventually

pytestmark = [pytest.mark.mqtt, pytest.mark.postgres]
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
            workdir=tmp_path_factory.mktemp("devices-city"),
            stations={"st-0003": {1: "LY0007"}},
            rig_overrides={"fast": True},
        ) as c:
            yield c
    finally:
        pg_server.drop_database(database.name)


@pytest.mark.asyncio(loop_scope="module")
async def test_operator_commands_reach_the_real_station(city: City) -> None:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        pk = (await s.scalars(select(Device.id).where(Device.device_id == "st-0003"))).one()
    headers = await city.login(*OPERATOR)
    http = city.client()
    url = f"/v1/dashboard/devices/{pk}"

    async def online() -> bool:
        r = await http.get(url, headers=headers)
        return r.status_code == 200 and bool(r.json()["data"]["online"])

    await eventually(online, 20)
    boots = [b["boot_id"] for b in (await http.get(url, headers=headers)).json()["data"]["boots"]]

    r = await http.post(
        f"{url}/commands/trigger-message", json={"which": "status"}, headers=headers
    )
    assert r.status_code == 200 and r.json()["data"]["outcome"] == "done", r.text
    r = await http.post(
        f"{url}/commands/config", json={"values": {"poll_interval_s": 0.5}}, headers=headers
    )
    assert r.status_code == 200 and r.json()["data"]["outcome"] == "done", r.text
    # A key the station does not know: the whole Config refused by the agent itself.
    r = await http.post(
        f"{url}/commands/config", json={"values": {"no_such_key": 1}}, headers=headers
    )
    assert r.status_code == 409 and r.json()["data"]["outcome"] == "rejected", r.text
    assert r.json()["data"]["reason"].startswith("not-supported")
    r = await http.post(f"{url}/commands/reboot", json={}, headers=headers)
    assert r.status_code == 200 and r.json()["data"]["outcome"] == "done", r.text

    history = await http.get(f"{url}/commands", headers=headers)
    assert history.status_code == 200, history.text
    sent = [(c["command_type"], c["status"]) for c in history.json()["data"]][:4]
    assert sent == [
        ("reboot", "done"),
        ("config", "rejected"),
        ("config", "done"),
        ("triggermessage", "done"),
    ]

    # The station reboots and comes back: a new boot, accepted, in its detail; online.
    async def booted_again() -> bool:
        r = await http.get(url, headers=headers)
        data = r.json()["data"]
        new = [b for b in data["boots"] if b["boot_id"] not in boots and b["accepted"]]
        return bool(new) and bool(data["online"])

    await eventually(booted_again, 30)
