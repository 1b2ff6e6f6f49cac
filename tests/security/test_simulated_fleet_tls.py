"""The simulated fleet gets device certificates as real hardware does (issue 17): each
simulated station and vehicle makes its key in its own directory, its CSR is signed through
the installation's bench endpoint with a bench operator's login, and its real agent connects
over ``mqtts://`` to Mosquitto with the deployment's TLS policy. The fleet holds no key of
the cloud's (no CA key, no command-signing key: only the command key's public half).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kickstand.cloud.commands import load_signer
from kickstand.simulators.provisioning import Bench, BenchAccount, ProvisioningError
from kickstand.simulators.station.fleet import StationFleet
from kickstand.simulators.vehicle.fleet import VehicleFleet
from kickstand.testing import MosquittoService, PostgresServer
from tests.e2e.city import eventually, seeded_city

from .test_rotation import ADMIN, ADMIN_PASSWORD, add_admin, broker, cloud_settings, registry

__all__ = ["broker"]  # the rotation tests' broker fixture (a CA outliving its certificates)

pytestmark = [pytest.mark.slow, pytest.mark.mqtt, pytest.mark.postgres]


async def test_simulated_station_and_vehicle_get_certificates_and_connect_over_tls(
    broker: MosquittoService, pg_server: PostgresServer, pg_template: str, tmp_path: Path
) -> None:
    async with seeded_city(
        broker, pg_server, pg_template, tmp_path, stations={}, settings=cloud_settings(broker)
    ) as city:
        await add_admin(city)
        api_url = str(city.client().base_url)
        keys = [load_signer(city.settings).public_key.hex()]
        workdir = tmp_path / "fleet"

        # Without a bench login the installation signs nothing.
        async with Bench(BenchAccount(api_url, ADMIN, "not-the-password")) as bench:
            with pytest.raises(ProvisioningError, match="cannot log in"):
                await bench.provision("st-0001", "station", workdir / "refused")

        async with (
            Bench(BenchAccount(api_url, ADMIN, ADMIN_PASSWORD)) as bench,
            StationFleet(
                1, mqtt_url=broker.device_url, keys=keys, workdir=workdir, bench=bench, fast=True
            ) as fleet,
            VehicleFleet(workdir / "vehicles", command_keys=keys) as vehicles,
        ):
            rig = fleet.rigs["st-0001"]
            await rig.accepted(within=20)
            assert rig.agent is not None and rig.agent.link.tls_error is None
            assert rig.mqtt_url == broker.device_url  # straight to the TLS listener

            files = await bench.provision("vh-LYT001", "vehicle", workdir / "vh-LYT001")
            member = await vehicles.add(
                "LYT001", mqtt_url=broker.device_url, **files.agent_settings()
            )
            assert member.agent is not None
            link = member.agent.link

            async def connected() -> bool:
                return link.counters.connects >= 1

            await eventually(connected, 20)
            assert link.tls_error is None

        # The fleet's files: the devices' own keys and certificates, nothing of the cloud's.
        names = {p.name for p in workdir.rglob("*") if p.is_file()}
        assert {"device.key", "device.pem", "ca.pem"} <= names
        assert "ca.key" not in names and not any(n.endswith("signing.key") for n in names)
        # Recorded in the registry, as a bench's: renewable, revocable on decommission.
        [station_cert] = await registry(city, "st-0001")
        [vehicle_cert] = await registry(city, "vh-LYT001")
        assert station_cert.revoked_at is None and vehicle_cert.revoked_at is None
