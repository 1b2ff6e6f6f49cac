"""Commissioning, end to end: an operator creates a cluster and commissions a station with a
new mainboard over HTTP; the REAL station agent (against the simulated spot boards) was
refused before, boots again and is accepted; its spots and the vehicle docked in it show on
the rider map.

Real PostgreSQL (a seeded database) and Mosquitto, the ingest worker, the API under
uvicorn (``tests.e2e.city``); the station agent is ``kickstand.edge.station`` unmodified.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kickstand.cloud.commands import load_signer
from kickstand.cloud.ingest.apply import UNKNOWN_TTL_S
from kickstand.protocol.v1.enums import BootStatus
from kickstand.simulators.station.sim import StationRig
from kickstand.testing import MosquittoService, PostgresServer
from tests.cloud.conftest import demo_refs
from tests.e2e.city import City, eventually, seeded_city

pytestmark = [pytest.mark.slow, pytest.mark.mqtt, pytest.mark.postgres]

OPERATOR = ("operator@example.com", "operator-demo-1")
ALICE = ("alice@example.com", "alice-demo-1")
DEVICE = "st-E2E0042"
#: Inside the demo network's border, away from the seeded clusters.
LAT, LNG = 45.7555, 4.8355


async def on_map(city: City, headers: dict[str, str], cluster_id: int) -> dict[str, Any] | None:
    r = await city.client().get(
        "/v1/map",
        params={"lat": LAT, "lng": LNG, "latdeg": 0.05, "lngdeg": 0.05},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    found = [c for c in r.json()["data"]["clusters"] if c["cluster_id"] == cluster_id]
    return found[0] if found else None


async def test_a_commissioned_station_is_accepted_and_shows_on_the_rider_map(
    mosquitto: MosquittoService, pg_server: PostgresServer, pg_template: str, tmp_path: Path
) -> None:
    async with seeded_city(mosquitto, pg_server, pg_template, tmp_path, stations={}) as city:
        operator = await city.login(*OPERATOR)
        rider = await city.login(*ALICE)
        http = city.client()
        r = await http.post(
            "/v1/dashboard/clusters",
            json={
                "network_id": demo_refs(city.settings.DATABASE_URL).network_id,
                "name": "Quai Commissioning",
                "latitude": LAT,
                "longitude": LNG,
            },
            headers=operator,
        )
        assert r.status_code == 200, r.text
        cluster_id = r.json()["data"]["cluster_id"]

        rig = StationRig(
            DEVICE,
            city.broker_host,
            city.broker_port,
            command_keys=[load_signer(city.settings).public_key.hex()],
            workdir=tmp_path / DEVICE,
            spots=4,
            nfc=False,
        )
        rig.sim.dock(2, "LYF001")
        await rig.start()
        try:
            # Not commissioned: the cloud refuses the mainboard's birth.
            async def refused() -> bool:
                assert rig.agent is not None
                return rig.agent.link.boot_status is BootStatus.REJECTED

            await eventually(refused, 20)
            assert rig.agent is not None and not rig.agent.link.accepted.is_set()

            r = await http.post(
                "/v1/dashboard/stations",
                json={"cluster_id": cluster_id, "device_id": DEVICE, "name": "Quai", "spots": 4},
                headers=operator,
            )
            assert r.status_code == 200, r.text
            station_id = r.json()["data"]["station_id"]

            # A refused agent waits long before its next birth: the technician powers it
            # up again, after ingest forgot that the device was unknown.
            await asyncio.sleep(UNKNOWN_TTL_S + 0.5)
            await rig.restart_agent()
            await rig.accepted(within=20)

            async def shown() -> bool:
                cluster = await on_map(city, rider, cluster_id)
                return (
                    cluster is not None
                    and cluster["total_spots"] == 4
                    and cluster["available_vehicles"] == 1
                    and not cluster["cluster_is_down"]
                )

            await eventually(shown, 20)
            cluster = await on_map(city, rider, cluster_id)
            assert cluster is not None and cluster["free_spots"] == 3
            r = await http.get(f"/v1/clusters/{cluster_id}/vehicles", headers=rider)
            assert r.status_code == 200, r.text
            (vehicle,) = r.json()["data"]
            assert vehicle["serial_number"] == "LYF001" and vehicle["displayed_number"] == 2
            assert vehicle["station_id"] == station_id and vehicle["is_accessible"] is True
            r = await http.get(f"/v1/dashboard/stations/{station_id}", headers=operator)
            assert r.json()["data"]["online"] is True
        finally:
            await rig.stop()
