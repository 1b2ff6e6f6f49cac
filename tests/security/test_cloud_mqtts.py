"""The cloud's MQTT URL takes mqtts:// with the installation's CA (cloud/broker.py)."""

from __future__ import annotations

from pathlib import Path

import aiomqtt
import pytest

from kickstand.cloud.broker import (
    BrokerUrlError,
    EmbeddedBroker,
    EmbeddedBrokerRefusedError,
    MqttUrl,
)
from kickstand.cloud.pki import CertificateAuthority, write_pem
from kickstand.testing import MosquittoService


def test_plain_and_tls_urls() -> None:
    plain = MqttUrl.parse("mqtt://kickstand-cloud:p%40ss@mosquitto")
    assert (plain.port, plain.tls, plain.password, plain.tls_context()) == (
        1883,
        False,
        "p@ss",
        None,
    )
    tls = MqttUrl.parse("mqtts://u:p@broker.example?ca_file=/run/secrets/ca.pem")
    assert (tls.port, tls.tls, tls.ca_file) == (8883, True, "/run/secrets/ca.pem")
    assert tls.safe() == "mqtts://u:***@broker.example:8883"


@pytest.mark.parametrize(
    "url",
    [
        "mqtt://h?ca_file=/x",  # TLS options on a plain URL would be silently unused
        "mqtts://h?cert_file=/x",  # a certificate without its key
        "mqtts://h?cafile=/x",  # a misspelt option
        "https://h",
    ],
)
def test_refused_urls(url: str) -> None:
    with pytest.raises(BrokerUrlError):
        MqttUrl.parse(url)


def test_missing_ca_file_is_a_url_error(tmp_path: Path) -> None:
    with pytest.raises(BrokerUrlError, match="TLS material"):
        MqttUrl.parse(f"mqtts://h?ca_file={tmp_path / 'none.pem'}").tls_context()


@pytest.mark.mqtt
async def test_tls_context_verifies_the_broker(
    tls_broker: MosquittoService, device_ca: CertificateAuthority, tmp_path: Path
) -> None:
    assert tls_broker.tls is not None
    cert, key = device_ca.issue_service("kickstand-svc-test", valid_days=1)
    write_pem(tmp_path / "svc.pem", cert)
    write_pem(tmp_path / "svc.key", key)
    base = f"mqtts://{tls_broker.host}:{tls_broker.tls_port}"
    url = MqttUrl.parse(
        f"{base}?ca_file={tls_broker.tls.ca_file}"
        f"&cert_file={tmp_path / 'svc.pem'}&key_file={tmp_path / 'svc.key'}"
    )
    async with aiomqtt.Client(
        url.host, url.port, identifier="svc-test", tls_context=url.tls_context(), timeout=3
    ):
        pass
    # Against another CA the broker's certificate does not verify: no connection.
    write_pem(tmp_path / "other.pem", CertificateAuthority.create("other").certificate)
    other = MqttUrl.parse(
        f"{base}?ca_file={tmp_path / 'other.pem'}"
        f"&cert_file={tmp_path / 'svc.pem'}&key_file={tmp_path / 'svc.key'}"
    )
    with pytest.raises(aiomqtt.MqttError, match="CERTIFICATE_VERIFY_FAILED"):
        async with aiomqtt.Client(
            other.host, other.port, tls_context=other.tls_context(), timeout=3
        ):
            pass


async def test_embedded_broker_refuses_production() -> None:
    broker = EmbeddedBroker(environment="production")
    with pytest.raises(EmbeddedBrokerRefusedError, match="no device identity"):
        await broker.start()
    async with EmbeddedBroker(environment="development") as url:
        assert url.startswith("mqtt://127.0.0.1:")
