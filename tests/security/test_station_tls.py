"""The REAL station agent over TLS with its own certificate (issue 17), end to end: real
Mosquitto with the deployment's TLS policy, PostgreSQL (a seeded database), the ingest
worker and the API (``tests.e2e.city``), simulated spot boards.

- a station with a valid certificate boots, is accepted, and its status reaches the
  database; another device (valid certificate, the station's client id) forging its death
  is dropped by the broker, never applied, and knocks nothing offline;
- a station whose certificate the broker refuses keeps running offline and retrying with a
  typed error; the certificate replaced on disk (a technician's fix), it connects without a
  restart and what it stored meanwhile reaches the cloud.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from sqlalchemy import func, select

from kickstand.cloud.commands import load_signer
from kickstand.cloud.models import Spot, Station, Vehicle
from kickstand.cloud.pki import CertificateAuthority
from kickstand.cloud.stations.models import DeviceOutage
from kickstand.protocol import topics
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1.messages import Death, Heartbeat, Stamp
from kickstand.simulators.station.sim import StationRig
from kickstand.testing import MosquittoService, PostgresServer
from tests.e2e.city import City, eventually, seeded_city

from .conftest import DeviceCert, IssueCert

pytestmark = [pytest.mark.slow, pytest.mark.mqtt, pytest.mark.postgres]

STATION = "st-0001"  # a seeded station with 6 spots
VEHICLE = "LY0001"


class TlsStationRig(StationRig):
    """The simulators' rig, its agent on ``mqtts://`` (through the same cuttable proxy)."""

    @property
    def mqtt_url(self) -> str:
        return super().mqtt_url.replace("mqtt://", "mqtts://", 1)


def tls_rig(city: City, broker: MosquittoService, cert: DeviceCert, workdir: Path) -> StationRig:
    assert broker.tls is not None and broker.tls_port is not None
    rig = TlsStationRig(
        STATION,
        broker.host,
        broker.tls_port,
        command_keys=[load_signer(city.settings).public_key.hex()],
        workdir=workdir,
        spots=6,
        nfc=False,
        mqtt_ca_file=str(broker.tls.ca_file),
        mqtt_cert_file=str(cert.cert_file),
        mqtt_key_file=str(cert.key_file),
    )
    rig.sim.dock(1, VEHICLE)
    return rig


async def spot_status(city: City) -> tuple[datetime | None, int | None, int | None]:
    """(status_at of spot 1, its id, the spot the vehicle is docked in)."""
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        spot: Spot = (
            await s.execute(
                select(Spot)
                .join(Station, Station.id == Spot.station_id)
                .where(Station.device_id == STATION, Spot.displayed_number == 1)
            )
        ).scalar_one()
        docked: int | None = (
            await s.execute(select(Vehicle.spot_id).where(Vehicle.serial_number == VEHICLE))
        ).scalar_one()
        return spot.status_at, spot.id, docked


async def outages(city: City) -> int:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        count: int = (
            await s.execute(
                select(func.count())
                .select_from(DeviceOutage)
                .where(DeviceOutage.device_id == STATION)
            )
        ).scalar_one()
        return count


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


async def test_station_with_its_certificate_works_and_cannot_be_impersonated(
    tls_broker: MosquittoService,
    issue_cert: IssueCert,
    pg_server: PostgresServer,
    pg_template: str,
    tmp_path: Path,
) -> None:
    assert tls_broker.tls is not None and tls_broker.tls_port is not None
    started = datetime.now(UTC)
    async with seeded_city(tls_broker, pg_server, pg_template, tmp_path, stations={}) as city:
        outages_before = await outages(city)
        rig = tls_rig(city, tls_broker, issue_cert(STATION), tmp_path / STATION)
        await rig.start()
        try:
            await rig.accepted(within=20)
            assert rig.agent is not None
            link = rig.agent.link
            assert link.tls_error is None and link.counters.connects == 1

            async def status_stored() -> bool:
                status_at, spot_id, docked = await spot_status(city)
                at = _aware(status_at)
                return at is not None and at >= started and docked == spot_id

            await eventually(status_stored, 20)

            # Another device, valid certificate, connecting with the station's client id and
            # forging its death under the station's topic.
            attacker = issue_cert("st-ATTK01")
            context = attacker.context(tls_broker.tls.ca_file)
            forged = codec.encode_up(Stamp(link.queue.boot_id, 0, 1), Death("forged"))
            async with aiomqtt.Client(
                tls_broker.host,
                tls_broker.port,
                username=tls_broker.cloud_username,
                password=tls_broker.cloud_password,
                identifier="sec-observer",
            ) as observer:
                await observer.subscribe("ks/v1/d/+/+", qos=1)
                async with aiomqtt.Client(
                    tls_broker.host,
                    tls_broker.tls_port,
                    identifier=STATION,
                    tls_context=context,
                    timeout=3,
                ) as fake:
                    await fake.publish(topics.up(STATION, Channel.DEATH), forged, qos=1)
                    await fake.publish(topics.up(STATION, Channel.STATUS), forged, qos=1)
                    own = codec.encode_up(Stamp(1, 0, 1), Heartbeat())
                    await fake.publish(topics.up("st-ATTK01", Channel.HEARTBEAT), own, qos=1)
                    seen: list[tuple[str, bytes]] = []

                    async def collect() -> None:
                        async for message in observer.messages:
                            assert isinstance(message.payload, bytes)
                            seen.append((str(message.topic), message.payload))
                            if str(message.topic) == "ks/v1/d/st-ATTK01/hb":
                                return

                    await asyncio.wait_for(collect(), 10)
            assert ("ks/v1/d/st-0001/death", forged) not in seen
            assert all(payload != forged for _, payload in seen), seen
            await city.settled()
            # Never applied: no outage opened, the real station never knocked offline.
            assert await outages(city) == outages_before
            assert link.connected.is_set() and link.counters.connects == 1
            r = await city.client().get(
                "/v1/dashboard/devices",
                params={"kind": "station"},
                headers=await city.login("operator@example.com", "operator-demo-1"),
            )
            if r.status_code == 200:  # the registry lists it online (issue 16's route)
                rows: list[dict[str, Any]] = r.json()["data"]
                mine = [d for d in rows if d.get("device_id") == STATION]
                assert not mine or mine[0].get("online") is True, mine
        finally:
            await rig.stop()


async def test_refused_certificate_keeps_the_station_offline_and_retrying_until_fixed(
    tls_broker: MosquittoService,
    issue_cert: IssueCert,
    pg_server: PostgresServer,
    pg_template: str,
    tmp_path: Path,
) -> None:
    stranger = issue_cert(STATION, ca=CertificateAuthority.create("a CA the broker ignores"))
    started = datetime.now(UTC)
    async with seeded_city(tls_broker, pg_server, pg_template, tmp_path, stations={}) as city:
        rig = tls_rig(city, tls_broker, stranger, tmp_path / STATION)
        await rig.start()
        try:
            assert rig.agent is not None
            link = rig.agent.link

            async def refused_twice() -> bool:
                return (
                    link.tls_error is not None
                    and link.tls_error.reason == "refused"
                    and link.counters.tls_failures >= 2
                )

            await eventually(refused_twice, 20)
            assert link.tls_error is not None and "unknown ca" in str(link.tls_error)
            assert not link.connected.is_set()
            assert link.snapshot()["tls_error"]["reason"] == "refused"
            # Offline, the agent goes on: the spot's status is stored, waiting for the link.
            assert link.queue.depth() > 0

            # The technician installs a certificate of the installation at the same paths.
            valid = issue_cert(STATION)
            stranger.cert_file.write_bytes(valid.cert_file.read_bytes())
            stranger.key_file.write_bytes(valid.key_file.read_bytes())
            await rig.accepted(within=20)
            assert link.tls_error is None

            async def status_stored() -> bool:
                status_at, spot_id, docked = await spot_status(city)
                at = _aware(status_at)
                return at is not None and at >= started and docked == spot_id

            await eventually(status_stored, 20)
        finally:
            await rig.stop()
