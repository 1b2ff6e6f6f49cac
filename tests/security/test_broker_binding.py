"""The broker binds each device to its certificate (issue 17), on a real Mosquitto with the
TLS policy that deploy/ ships: who may connect, what a device may publish and read, which
client id it gets, how large a message may be."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiomqtt
import pytest

from kickstand.cloud.pki import CertificateAuthority
from kickstand.protocol import topics
from kickstand.protocol.errors import CommandRejected, DecodeError, EncodeError
from kickstand.protocol.signing import (
    CommandSigner,
    CommandVerifier,
    MemoryReplayGuard,
    generate_private_key,
)
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1.enums import AuthListKind
from kickstand.protocol.v1.messages import AuthListUpdate, CommandEnvelope, Heartbeat, Stamp
from kickstand.testing import MosquittoService

from .conftest import DeviceCert, IssueCert

pytestmark = pytest.mark.mqtt


@contextlib.asynccontextmanager
async def device(
    broker: MosquittoService,
    cert: DeviceCert | None,
    client_id: str | None = None,
    *,
    connect_timeout: float = 3.0,
) -> AsyncIterator[aiomqtt.Client]:
    """A device's MQTT session on the TLS listener (``cert`` None: no client certificate)."""
    assert broker.tls is not None and broker.tls_port is not None
    if cert is not None:
        context = cert.context(broker.tls.ca_file)
    else:
        import ssl

        context = ssl.create_default_context(cafile=str(broker.tls.ca_file))
    name = client_id or (cert.device_id if cert else "st-nocert")
    async with aiomqtt.Client(
        broker.host, broker.tls_port, identifier=name, tls_context=context, timeout=connect_timeout
    ) as client:
        yield client


def cloud(
    broker: MosquittoService, identifier: str, *, clean_session: bool = True
) -> aiomqtt.Client:
    """A cloud service on the password listener (what ingest and the API use)."""
    return aiomqtt.Client(
        broker.host,
        broker.port,
        username=broker.cloud_username,
        password=broker.cloud_password,
        identifier=identifier,
        clean_session=clean_session,
        timeout=3,
    )


def heartbeat() -> bytes:
    return codec.encode_up(Stamp(7, 0, 1_700_000_000_000), Heartbeat())


async def received(client: aiomqtt.Client, within: float) -> list[tuple[str, bytes]]:
    """Every message the client gets within ``within`` seconds."""
    got: list[tuple[str, bytes]] = []

    async def collect() -> None:
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            got.append((str(message.topic), message.payload))

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(collect(), within)
    return got


async def until(client: aiomqtt.Client, topic: str, within: float = 5.0) -> list[str]:
    """Topics received up to and including ``topic`` (fails if it does not come)."""
    seen: list[str] = []

    async def collect() -> None:
        async for message in client.messages:
            seen.append(str(message.topic))
            if str(message.topic) == topic:
                return

    await asyncio.wait_for(collect(), within)
    return seen


# ---------------------------------------------------------------------- who connects


async def test_valid_certificate_publishes_its_tree_and_reads_its_commands(
    tls_broker: MosquittoService, issue_cert: IssueCert
) -> None:
    cert = issue_cert("st-sec001")
    async with cloud(tls_broker, "sec-cloud-1") as ingest:
        await ingest.subscribe(topics.ingest_subscription("sec1"), qos=1)
        async with device(tls_broker, cert) as station:
            await station.subscribe(topics.device_subscriptions("st-sec001"), qos=1)
            await station.publish(topics.up("st-sec001", Channel.HEARTBEAT), heartbeat(), qos=1)
            assert await until(ingest, "ks/v1/d/st-sec001/hb") == ["ks/v1/d/st-sec001/hb"]
            await ingest.publish(topics.down("st-sec001", Channel.TIME), b"\xa0", qos=1)
            assert await until(station, "ks/v1/c/st-sec001/time") == ["ks/v1/c/st-sec001/time"]


@pytest.mark.parametrize("case", ["no certificate", "expired", "another CA"])
async def test_refused_at_connect(
    tls_broker: MosquittoService, issue_cert: IssueCert, case: str
) -> None:
    cert: DeviceCert | None
    if case == "no certificate":
        cert = None
    elif case == "expired":
        cert = issue_cert("st-sec002", valid_days=1, now=datetime.now(UTC) - timedelta(days=2))
    else:
        cert = issue_cert("st-sec002", ca=CertificateAuthority.create("someone else's CA"))
    with pytest.raises(aiomqtt.MqttError):
        async with device(tls_broker, cert, connect_timeout=2):
            pass
    # The same device with a certificate of the installation is accepted.
    async with device(tls_broker, issue_cert("st-sec002")):
        pass


async def test_revoked_certificate_refused_after_the_crl_is_reloaded(
    tls_broker_private: MosquittoService, issue_cert: IssueCert
) -> None:
    broker = tls_broker_private
    assert broker.tls is not None
    revoked, kept = issue_cert("st-sec003"), issue_cert("st-sec004")
    async with device(broker, revoked):
        pass
    broker.tls.write_crl([(revoked.serial, datetime.now(UTC))])
    broker.reload()
    await asyncio.sleep(0.5)  # SIGHUP is handled by the broker's loop, not synchronously
    with pytest.raises(aiomqtt.MqttError):
        async with device(broker, revoked, connect_timeout=2):
            pass
    async with device(broker, kept):
        pass


# ---------------------------------------------------------------------- what it may do


async def test_device_cannot_publish_under_another_device(
    tls_broker: MosquittoService, issue_cert: IssueCert
) -> None:
    attacker = issue_cert("st-sec010")
    async with cloud(tls_broker, "sec-cloud-2") as ingest:
        await ingest.subscribe(topics.ingest_subscription("sec2"), qos=1)
        async with device(tls_broker, attacker) as client:
            for channel in (Channel.EVENT, Channel.STATUS, Channel.RESULT, Channel.BIRTH):
                await client.publish(topics.up("st-sec011", channel), heartbeat(), qos=1)
            # Its own topic after the forged ones: once it arrives, the others would have.
            await client.publish(topics.up("st-sec010", Channel.HEARTBEAT), heartbeat(), qos=1)
            seen = await until(ingest, "ks/v1/d/st-sec010/hb")
    assert seen == ["ks/v1/d/st-sec010/hb"], seen


async def test_device_cannot_read_another_devices_commands(
    tls_broker: MosquittoService, issue_cert: IssueCert
) -> None:
    victim, attacker = issue_cert("st-sec020"), issue_cert("st-sec021")
    async with cloud(tls_broker, "sec-cloud-3") as api:
        async with device(tls_broker, victim) as real, device(tls_broker, attacker) as spy:
            await real.subscribe(topics.device_subscriptions("st-sec020"), qos=1)
            # Mosquitto 2.0.11 grants the SUBACK (its ACL file is checked per message at
            # delivery, not at subscription): what matters is that nothing is delivered.
            await spy.subscribe("ks/v1/c/st-sec020/+", qos=1)
            await spy.subscribe("ks/v1/c/#", qos=1)
            await spy.subscribe("#", qos=1)
            await api.publish(topics.down("st-sec020", Channel.COMMAND), b"\xa0", qos=1)
            assert await until(real, "ks/v1/c/st-sec020/cmd") == ["ks/v1/c/st-sec020/cmd"]
            assert await received(spy, 0.5) == []


@pytest.mark.parametrize(
    "client_id", ["st-sec031", "st-sec031/evt", "ingest-sec", "st-+", "kickstand-cloud"]
)
async def test_client_id_is_replaced_by_the_certificate_identity(
    tls_broker: MosquittoService, issue_cert: IssueCert, client_id: str
) -> None:
    """A device connecting with another's client id (a device's, one with '/', an ingest
    worker's) is connected as its certificate's CN: the other session is not taken over and
    the topics of that id stay closed to it."""
    attacker, victim = issue_cert("st-sec030"), issue_cert("st-sec031")
    async with (
        cloud(tls_broker, "ingest-sec", clean_session=False) as worker,
        device(tls_broker, victim) as real,
    ):
        await worker.subscribe(topics.ingest_subscription("sec3"), qos=1)
        async with device(tls_broker, attacker, client_id=client_id) as fake:
            await fake.publish("ks/v1/d/st-sec031/evt", heartbeat(), qos=1)
            if not set(client_id) & {"+", "#"}:  # (a wildcard cannot be a publish topic)
                await fake.publish(f"ks/v1/d/{client_id}/evt", heartbeat(), qos=1)
            await fake.publish("ks/v1/d/st-sec030/hb", heartbeat(), qos=1)
            seen = await until(worker, "ks/v1/d/st-sec030/hb")
            # The real station and the worker are still connected: their sessions live.
            await real.publish("ks/v1/d/st-sec031/hb", heartbeat(), qos=1, timeout=2)
            seen += await until(worker, "ks/v1/d/st-sec031/hb")
    assert seen == ["ks/v1/d/st-sec030/hb", "ks/v1/d/st-sec031/hb"], seen
    log = tls_broker.broker_log_path.read_text()
    # The attacker's sessions all carry its CN as client id, whatever id it asked for.
    assert re.search(r"New client connected from \S+ as st-sec030 \(.*u'st-sec030'\)", log)
    assert not re.search(rf"as {re.escape(client_id)} \(.*u'st-sec030'\)", log)


# ---------------------------------------------------------------------- sizes


def _configured(name: str, config: str) -> int:
    match = re.search(rf"^{name} (\d+)$", config, re.M)
    assert match, name
    return int(match.group(1))


async def test_message_size_limit_fits_the_largest_message_and_no_more(
    tls_broker: MosquittoService, issue_cert: IssueCert
) -> None:
    config = tls_broker.config_path.read_text()
    limit = _configured("message_size_limit", config)
    assert limit == max(codec.MAX_SIZE.values())  # a full authorization list command
    cert = issue_cert("st-sec040")
    async with cloud(tls_broker, "sec-cloud-4") as ingest:
        await ingest.subscribe(topics.ingest_subscription("sec4"), qos=1)
        async with device(tls_broker, cert) as client:
            await client.publish("ks/v1/d/st-sec040/tlm", bytes(limit + 1), qos=1)
            await client.publish("ks/v1/d/st-sec040/status", bytes(limit), qos=1)
            seen = await until(ingest, "ks/v1/d/st-sec040/status", within=10)
    assert seen == ["ks/v1/d/st-sec040/status"]


async def test_packet_over_max_packet_size_disconnects_its_sender(
    tls_broker: MosquittoService, issue_cert: IssueCert
) -> None:
    max_packet = _configured("max_packet_size", tls_broker.config_path.read_text())
    cert = issue_cert("st-sec041")
    with pytest.raises(aiomqtt.MqttError):
        async with device(tls_broker, cert) as client:
            await client.publish("ks/v1/d/st-sec041/tlm", bytes(max_packet + 1), qos=1, timeout=3)
            # The broker has closed the connection: the next round trip fails.
            await client.publish("ks/v1/d/st-sec041/hb", heartbeat(), qos=1, timeout=3)


def test_codec_refuses_what_the_broker_would_drop() -> None:
    with pytest.raises(DecodeError, match="over the"):
        codec.decode_up(Channel.STATUS, bytes(codec.MAX_SIZE[Channel.STATUS] + 1))
    verifier = CommandVerifier("st-sec050", {}, MemoryReplayGuard())
    with pytest.raises(CommandRejected, match="over the limit"):
        verifier.verify(bytes(codec.MAX_SIZE[Channel.COMMAND] + 1))
    # The sending side refuses too: an EncodeError at the source, not a silent broker drop.
    signer = CommandSigner(generate_private_key())
    uids = tuple(i.to_bytes(10, "big") for i in range(codec.MAX_AUTH_ENTRIES))
    full = AuthListUpdate(AuthListKind.FULL, 2, None, add=uids, remove=uids)
    with pytest.raises(EncodeError, match="over"):
        signer.sign(CommandEnvelope(bytes(16), "st-sec050", 1, 2, full))
    # The largest list the cloud sends in one command (cloud/authlist) still fits.
    one_chunk = AuthListUpdate(AuthListKind.FULL, 2, None, add=uids)
    assert (
        len(signer.sign(CommandEnvelope(bytes(16), "st-sec050", 1, 2, one_chunk)))
        <= (codec.MAX_SIZE[Channel.COMMAND])
    )
