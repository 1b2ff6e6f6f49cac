"""``broker_server_name``: a device that dials the broker through a local proxy (127.0.0.1 on
the wire) still verifies the broker's certificate by the broker's name — the name is
replaced, the check is never skipped. Real Mosquitto with the deployment's TLS policy and a
server certificate naming only ``mqtt.city.example``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kickstand.cloud.pki import device_csr, device_key, write_pem
from kickstand.edge.core import DeviceClock, DiskQueue, SqliteReplayGuard
from kickstand.edge.core.config import EdgeSettings
from kickstand.edge.core.errors import ConfigError
from kickstand.edge.core.link import CloudLink, CommandRouter
from kickstand.protocol.signing import CommandVerifier
from kickstand.protocol.v1.enums import BootStatus, DeviceKind
from kickstand.protocol.v1.messages import Birth
from kickstand.simulators.station.cloudpeer import CloudPeer
from kickstand.testing import DeviceTls, MosquittoService

BROKER_NAME = "mqtt.city.example"


@pytest.fixture(scope="module")
def named_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoService]:
    """A TLS broker whose certificate names only BROKER_NAME (not the loopback address)."""
    tls = DeviceTls.create(tmp_path_factory.mktemp("named-broker"), hosts=[BROKER_NAME])
    with MosquittoService(tls=tls) as broker:
        yield broker


def _settings(broker: MosquittoService, tmp_path: Path, **more: str) -> EdgeSettings:
    assert broker.tls is not None
    device_id = "st-0042"
    key = device_key()
    cert = broker.tls.ca.sign_csr(device_csr(key, device_id), device_id, 1)
    tmp_path.mkdir(parents=True, exist_ok=True)
    write_pem(tmp_path / "d.pem", cert)
    write_pem(tmp_path / "d.key", key)
    return EdgeSettings(
        device_id=device_id,
        mqtt_url=broker.device_url,  # mqtts://127.0.0.1:<port>
        mqtt_ca_file=broker.tls.ca_file,
        mqtt_cert_file=tmp_path / "d.pem",
        mqtt_key_file=tmp_path / "d.key",
        reconnect_min_s=0.1,
        reconnect_max_s=0.3,
        connect_timeout_s=1,
        boot_timeout_s=2,
        **more,
    )


@contextlib.asynccontextmanager
async def _link(broker: MosquittoService, settings: EdgeSettings) -> AsyncIterator[CloudLink]:
    clock = DeviceClock()
    state = Path(settings.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    async with CloudPeer(
        broker.host,
        broker.port,
        username=broker.cloud_username,
        password=broker.cloud_password,
        boot_status=BootStatus.ACCEPTED,
    ):
        queue = DiskQueue(state / "queue.db", clock=clock.now_ms)
        guard = SqliteReplayGuard(state / "replay.db")
        link = CloudLink(
            settings.link_config(),
            queue=queue,
            birth=lambda: Birth(DeviceKind.STATION, "1.0", "sim"),
            verifier=CommandVerifier(settings.device_id, {}, guard, clock=clock.now_ms),
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


async def _refused(link: CloudLink) -> None:
    async def failing() -> None:
        while link.counters.connect_failures + link.counters.tls_failures < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    await asyncio.wait_for(failing(), 10)
    assert link.counters.connects == 0 and not link.accepted.is_set()


@pytest.mark.mqtt
async def test_the_broker_is_verified_by_its_configured_name(
    named_broker: MosquittoService, tmp_path: Path
) -> None:
    # Dialled as 127.0.0.1, a name the certificate does not carry: refused, as before.
    plain = _settings(named_broker, tmp_path / "plain", state_dir=str(tmp_path / "s1"))
    async with _link(named_broker, plain) as link:
        await _refused(link)

    # Checked against the broker's name instead: the same certificate is accepted.
    named = _settings(
        named_broker, tmp_path / "named", state_dir=str(tmp_path / "s2"),
        broker_server_name=BROKER_NAME,
    )
    assert named.link_config().host == "127.0.0.1"
    async with _link(named_broker, named) as link:
        await asyncio.wait_for(link.accepted.wait(), 10)
        assert link.tls_error is None

    # Another name is no way around the check: refused.
    wrong = _settings(
        named_broker, tmp_path / "wrong", state_dir=str(tmp_path / "s3"),
        broker_server_name="other.example",
    )
    async with _link(named_broker, wrong) as link:
        await _refused(link)


def test_a_server_name_without_tls_is_a_config_error() -> None:
    settings = EdgeSettings(
        device_id="st-0042", mqtt_url="mqtt://127.0.0.1:1883", broker_server_name=BROKER_NAME
    )
    with pytest.raises(ConfigError):
        settings.link_config()
