"""Many stations with their real agents in one process (the load-test / compose mode)."""

from __future__ import annotations

import json
from pathlib import Path

from kickstand.protocol.v1.messages import VehicleDocked
from kickstand.simulators.station.cloudpeer import CloudPeer
from kickstand.simulators.station.fleet import StationFleet
from kickstand.testing import MosquittoService


async def test_five_stations_in_one_process(mosquitto: MosquittoService, tmp_path: Path) -> None:
    async with CloudPeer(mosquitto.host, mosquitto.port, username=mosquitto.cloud_username,
                         password=mosquitto.cloud_password) as cloud:
        async with StationFleet(5, mqtt_url=mosquitto.device_url, keys=[cloud.public_key_hex],
                                workdir=tmp_path, spots=4, fast=True, first=901) as fleet:
            ids = [f"st-{i:04d}" for i in range(901, 906)]
            assert sorted(fleet.rigs) == ids
            await cloud.wait_until(lambda: fleet.accepted() == 5, within=15)
            fleet.rigs["st-0903"].sim.dock(4, "FL0001")
            await cloud.wait_for("st-0903", lambda r: r.body == VehicleDocked(4, "FL0001"))
            agent = fleet.rigs["st-0903"].agent
            assert agent is not None
            snapshot = json.loads(json.dumps(agent.snapshot(), default=str))
            assert snapshot["boot_accepted"] and snapshot["spots"][3]["serial"] == "FL0001"
    # stations 1-4 of the seed get its docked vehicles; 901+ are outside the seed
    assert not cloud.bodies("st-0901", VehicleDocked)
