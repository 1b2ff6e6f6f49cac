"""The cloud's services log in with their own accounts, each with only the topics it needs
(issue 17), on a real Mosquitto with the TLS policy deploy/ ships: ingest reads every
device and answers them; the API sends commands and reads results, nothing else; a wrong
password, the old all-powerful account and anonymous clients are refused; a device
certificate cannot take a service's client id.

What Mosquitto 2.0 cannot do (deploy/README.md): refuse a client id to every account but
one. Another service's account presenting ingest's client id takes the connection over;
the test below shows it gets none of ingest's messages (the ACL is by account, not by
client id) and ingest, reconnecting, has them again.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator

import aiomqtt
import pytest

from kickstand.protocol import topics
from kickstand.protocol.topics import Channel
from kickstand.testing import MosquittoService
from kickstand.testing.mosquitto import API_ACCOUNT, CLOUD_USERNAME, INGEST_ACCOUNT

from .conftest import IssueCert
from .test_broker_binding import device, heartbeat, received, until

pytestmark = pytest.mark.mqtt


@contextlib.asynccontextmanager
async def service(
    broker: MosquittoService,
    account: str,
    identifier: str,
    *,
    password: str | None = None,
) -> AsyncIterator[aiomqtt.Client]:
    """A cloud service's session on the password listener with ``account``."""
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        username=account,
        password=broker.accounts[account] if password is None else password,
        identifier=identifier,
        timeout=3,
    ) as client:
        yield client


async def test_each_service_has_its_account_and_its_topics(
    tls_broker: MosquittoService, issue_cert: IssueCert
) -> None:
    cert = issue_cert("st-svc001")
    async with (
        service(tls_broker, INGEST_ACCOUNT, "svc-ingest-1") as ingest,
        service(tls_broker, API_ACCOUNT, "svc-api-1") as api,
        device(tls_broker, cert) as station,
    ):
        await ingest.subscribe(topics.ingest_subscription("svc1"), qos=1)
        await station.subscribe(topics.device_subscriptions("st-svc001"), qos=1)
        # The API reads results; a subscription wider than that delivers results only.
        await api.subscribe("ks/v1/d/+/+", qos=1)
        await api.subscribe("ks/v1/c/#", qos=1)

        # Ingest: every device's messages in, its answers out.
        await station.publish(topics.up("st-svc001", Channel.HEARTBEAT), heartbeat(), qos=1)
        assert await until(ingest, "ks/v1/d/st-svc001/hb") == ["ks/v1/d/st-svc001/hb"]
        await ingest.publish(topics.down("st-svc001", Channel.ACK), b"\xa0", qos=1)
        assert await until(station, "ks/v1/c/st-svc001/ack") == ["ks/v1/c/st-svc001/ack"]

        # The API: a command reaches the station, its result reaches the API.
        await api.publish(topics.down("st-svc001", Channel.COMMAND), b"\xa1", qos=1)
        assert await until(station, "ks/v1/c/st-svc001/cmd") == ["ks/v1/c/st-svc001/cmd"]
        await station.publish(topics.up("st-svc001", Channel.RESULT), heartbeat(), qos=1)
        # (ingest gets the result too, and the heartbeat the API must not see)
        assert await until(api, "ks/v1/d/st-svc001/res") == ["ks/v1/d/st-svc001/res"]

        # The API has no business speaking for a device or answering for ingest: an Ack
        # would make the station forget events the cloud never committed, a forged event
        # would be applied. The broker drops both.
        await api.publish(topics.up("st-svc001", Channel.EVENT), heartbeat(), qos=1)
        await api.publish(topics.up("st-svc002", Channel.DEATH), heartbeat(), qos=1)
        for channel in (Channel.ACK, Channel.BOOT, Channel.TIME, Channel.BADGE):
            await api.publish(topics.down("st-svc001", channel), b"\xa2", qos=1)
        # Markers after the forged ones: once they arrive, the forged ones would have.
        await station.publish(topics.up("st-svc001", Channel.HEARTBEAT), heartbeat(), qos=1)
        await ingest.publish(topics.down("st-svc001", Channel.TIME), b"\xa3", qos=1)
        seen_by_ingest = await until(ingest, "ks/v1/d/st-svc001/hb")
        seen_by_station = await until(station, "ks/v1/c/st-svc001/time")
        assert await received(api, 0.3) == []  # nothing but results, ever
    assert seen_by_ingest == ["ks/v1/d/st-svc001/res", "ks/v1/d/st-svc001/hb"]
    assert seen_by_station == ["ks/v1/c/st-svc001/time"]


@pytest.mark.parametrize(
    ("account", "password"),
    [
        (INGEST_ACCOUNT, "wrong"),
        (API_ACCOUNT, "wrong"),
        (API_ACCOUNT, None),  # ingest's password under the API's name
        (CLOUD_USERNAME, None),  # the old account that could do everything: gone
        (None, None),  # anonymous
    ],
)
async def test_wrong_credentials_are_refused(
    tls_broker: MosquittoService, account: str | None, password: str | None
) -> None:
    if account == API_ACCOUNT and password is None:
        password = tls_broker.accounts[INGEST_ACCOUNT]
    elif account == CLOUD_USERNAME:
        password = tls_broker.accounts[INGEST_ACCOUNT]
    with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori[sz]ed"):
        async with aiomqtt.Client(
            tls_broker.host,
            tls_broker.port,
            username=account,
            password=password,
            identifier="svc-ingest-2",
            timeout=3,
        ):
            pass


async def test_a_device_certificate_cannot_take_a_service_id(
    tls_broker: MosquittoService, issue_cert: IssueCert
) -> None:
    """Even with ingest's user name and password in its CONNECT: on the device listener the
    identity is the certificate's CN (the password is not read) and so is the client id."""
    cert = issue_cert("st-svc010")
    async with service(tls_broker, INGEST_ACCOUNT, "svc-ingest-3") as ingest:
        await ingest.subscribe(topics.ingest_subscription("svc3"), qos=1)
        assert cert is not None and tls_broker.tls is not None and tls_broker.tls_port
        async with aiomqtt.Client(
            tls_broker.host,
            tls_broker.tls_port,
            identifier="svc-ingest-3",
            username=INGEST_ACCOUNT,
            password=tls_broker.accounts[INGEST_ACCOUNT],
            tls_context=cert.context(tls_broker.tls.ca_file),
            timeout=3,
        ) as fake:
            await fake.subscribe(topics.ingest_subscription("svc3"), qos=1)
            await fake.subscribe("ks/v1/d/+/+", qos=1)
            async with device(tls_broker, issue_cert("st-svc011")) as station:
                await station.publish(topics.up("st-svc011", Channel.HEARTBEAT), heartbeat())
                # Ingest still holds its session (not taken over) and gets the heartbeat...
                assert await until(ingest, "ks/v1/d/st-svc011/hb") == ["ks/v1/d/st-svc011/hb"]
            # ...the device with ingest's credentials in its CONNECT reads nothing of it.
            assert await received(fake, 0.3) == []
    log = tls_broker.broker_log_path.read_text()
    assert re.search(r"as st-svc010 \(.*u'st-svc010'\)", log)
    assert not re.search(r"as svc-ingest-3 \(.*u'st-svc010'\)", log)


async def test_another_service_taking_ingests_client_id_gets_none_of_its_messages(
    tls_broker: MosquittoService, issue_cert: IssueCert
) -> None:
    """Mosquitto 2.0 lets any account present any client id on the password listener (the
    dynamic-security plugin binds an account to one id, not an id to one account): the API's
    account can take ingest's connection over. It gains nothing: ingest's topics are its
    account's, and ingest's clean session held nothing the takeover could take."""
    async with service(tls_broker, INGEST_ACCOUNT, "svc-ingest-4") as ingest:
        await ingest.subscribe(topics.ingest_subscription("svc4"), qos=1)
        async with service(tls_broker, API_ACCOUNT, "svc-ingest-4") as impostor:
            await impostor.subscribe(topics.ingest_subscription("svc4"), qos=1)
            await impostor.subscribe("ks/v1/d/+/+", qos=1)
            async with device(tls_broker, issue_cert("st-svc020")) as station:
                await station.publish(topics.up("st-svc020", Channel.EVENT), heartbeat(), qos=1)
                assert await received(impostor, 0.5) == []
    # Ingest back with its own account: the device's next message is its.
    async with service(tls_broker, INGEST_ACCOUNT, "svc-ingest-4") as ingest:
        await ingest.subscribe(topics.ingest_subscription("svc4"), qos=1)
        async with device(tls_broker, issue_cert("st-svc020")) as station:
            await station.publish(topics.up("st-svc020", Channel.HEARTBEAT), heartbeat(), qos=1)
            assert await until(ingest, "ks/v1/d/st-svc020/hb") == ["ks/v1/d/st-svc020/hb"]
