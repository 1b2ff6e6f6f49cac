"""The agents' TLS settings and link (kickstand.edge.core): typed errors, never a weaker
check, and a device clock that is wrong does not lock the device out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kickstand.cloud.pki import CertificateAuthority, write_pem
from kickstand.edge.core import DeviceClock, DiskQueue, SqliteReplayGuard
from kickstand.edge.core.config import EdgeSettings
from kickstand.edge.core.errors import ConfigError, DeviceCertificateError
from kickstand.edge.core.link import (
    CloudLink,
    CommandRouter,
    LinkConfig,
    certificate_validity,
    tls_context,
)
from kickstand.protocol.signing import CommandVerifier, key_id
from kickstand.protocol.v1.enums import BootStatus, DeviceKind
from kickstand.protocol.v1.messages import Birth
from kickstand.simulators.station.cloudpeer import CloudPeer
from kickstand.testing import MosquittoService

from .conftest import DeviceCert, IssueCert


def test_mqtts_settings_make_a_tls_link(tmp_path: Path) -> None:
    s = EdgeSettings(
        device_id="st-0001",
        mqtt_url="mqtts://mqtt.city.example",
        mqtt_ca_file=tmp_path / "ca.pem",
        mqtt_cert_file=tmp_path / "d.pem",
        mqtt_key_file=tmp_path / "d.key",
    )
    link = s.link_config()
    assert (link.tls, link.port, link.host) == (True, 8883, "mqtt.city.example")
    assert (link.ca_file, link.cert_file) == (str(tmp_path / "ca.pem"), str(tmp_path / "d.pem"))
    assert EdgeSettings(device_id="st-0001").link_config().tls is False


@pytest.mark.parametrize(
    "fields",
    [
        {"mqtt_url": "mqtt://h:1883", "mqtt_cert_file": "d.pem", "mqtt_key_file": "d.key"},
        {"mqtt_url": "mqtts://h", "mqtt_cert_file": "d.pem"},
        {"mqtt_url": "https://h"},
    ],
)
def test_inconsistent_tls_settings_are_config_errors(fields: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        EdgeSettings(device_id="st-0001", **fields).link_config()


def test_missing_and_mismatched_files_are_typed(
    tmp_path: Path, issue_cert: IssueCert, device_ca: CertificateAuthority
) -> None:
    cert = issue_cert("st-0001")
    other = issue_cert("st-0002")
    write_pem(tmp_path / "ca.pem", device_ca.certificate)
    base = LinkConfig("st-0001", tls=True, ca_file=str(tmp_path / "ca.pem"))
    with pytest.raises(DeviceCertificateError) as err:
        tls_context(
            LinkConfig(
                "st-0001",
                tls=True,
                cert_file=str(tmp_path / "none.pem"),
                key_file=str(cert.key_file),
            )
        )
    assert err.value.reason == "missing" and err.value.path == str(tmp_path / "none.pem")
    with pytest.raises(DeviceCertificateError) as err:
        # A rotation half done: the new certificate beside the old key.
        base.cert_file, base.key_file = str(cert.cert_file), str(other.key_file)
        tls_context(base)
    assert err.value.reason == "unreadable"
    base.cert_file, base.key_file = str(cert.cert_file), str(cert.key_file)
    context = tls_context(base)
    assert context.check_hostname and context.verify_mode.name == "CERT_REQUIRED"


def test_certificate_dates_against_the_device_clock(issue_cert: IssueCert) -> None:
    cert = issue_cert("st-0001", valid_days=1)
    now = datetime.now(UTC)
    assert certificate_validity(str(cert.cert_file), now) is None
    expired = certificate_validity(str(cert.cert_file), now + timedelta(days=2))
    assert expired is not None and expired.reason == "expired"
    early = certificate_validity(str(cert.cert_file), now - timedelta(days=1))
    assert early is not None and early.reason == "not-yet-valid"


@contextlib.asynccontextmanager
async def tls_link(
    broker: MosquittoService, cert: DeviceCert, state: Path, clock: DeviceClock
) -> AsyncIterator[CloudLink]:
    assert broker.tls is not None and broker.tls_port is not None
    peer = CloudPeer(
        broker.host,
        broker.port,
        username=broker.cloud_username,
        password=broker.cloud_password,
        boot_status=BootStatus.ACCEPTED,
    )
    async with peer as cloud:
        queue = DiskQueue(state / "queue.db", clock=clock.now_ms)
        guard = SqliteReplayGuard(state / "replay.db")
        pub = cloud.signer.public_key
        link = CloudLink(
            LinkConfig(
                cert.device_id,
                broker.host,
                broker.tls_port,
                reconnect_min_s=0.1,
                reconnect_max_s=0.3,
                boot_timeout_s=2,
                connect_timeout_s=1,
                tls=True,
                ca_file=str(broker.tls.ca_file),
                cert_file=str(cert.cert_file),
                key_file=str(cert.key_file),
            ),
            queue=queue,
            birth=lambda: Birth(DeviceKind.STATION, "1.0", "sim"),
            verifier=CommandVerifier(cert.device_id, {key_id(pub): pub}, guard, clock=clock.now_ms),
            router=CommandRouter(),
            clock=clock,
        )
        task = asyncio.create_task(link.run())
        try:
            yield link
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            queue.close()
            guard.close()


@pytest.mark.mqtt
async def test_a_device_clock_years_ahead_does_not_lock_the_device_out(
    tls_broker: MosquittoService, issue_cert: IssueCert, tmp_path: Path
) -> None:
    # By the device's clock the certificate has expired; by the broker's it is valid: the
    # link connects (and the cloud's TimeReply would then set the clock right).
    cert = issue_cert("st-clock1", valid_days=1)
    clock = DeviceClock(offset_ms=400 * 86_400_000)
    async with tls_link(tls_broker, cert, tmp_path, clock) as link:
        await asyncio.wait_for(link.accepted.wait(), 10)
        assert link.tls_error is None


@pytest.mark.mqtt
async def test_a_missing_certificate_retries_until_it_appears(
    tls_broker: MosquittoService, issue_cert: IssueCert, tmp_path: Path
) -> None:
    real = issue_cert("st-late01")
    waiting = DeviceCert(
        real.device_id, tmp_path / "later.pem", tmp_path / "later.key", real.serial
    )
    async with tls_link(tls_broker, waiting, tmp_path, DeviceClock()) as link:

        async def failing() -> None:
            # Polled: a counter has no event to await.
            while link.counters.tls_failures < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.05)

        await asyncio.wait_for(failing(), 10)
        assert link.tls_error is not None and link.tls_error.reason == "missing"
        assert link.counters.connects == 0
        waiting.cert_file.write_bytes(real.cert_file.read_bytes())
        waiting.key_file.write_bytes(real.key_file.read_bytes())
        await asyncio.wait_for(link.accepted.wait(), 10)
        assert link.tls_error is None


def test_vehicle_settings_take_the_same_tls_fields(tmp_path: Path) -> None:
    from kickstand.edge.vehicle.config import VehicleSettings

    s = VehicleSettings(
        device_id="vh-BK123456",
        serial_number="BK123456",
        mqtt_url="mqtts://mqtt.city.example:8884",
        mqtt_ca_file=tmp_path / "ca.pem",
        mqtt_cert_file=tmp_path / "vh.pem",
        mqtt_key_file=tmp_path / "vh.key",
    )
    link = s.link_config()
    assert (link.tls, link.port, link.key_file) == (True, 8884, str(tmp_path / "vh.key"))
