"""MQTT connection settings of the cloud, and the embedded broker of `make run`.

    async with EmbeddedBroker("127.0.0.1", 1883) as url:   # "mqtt://127.0.0.1:1883"
        ...  # ingest worker(s), API processes, simulated devices connect to `url`

The embedded broker is amqtt 0.12, in-process: MQTT 3.1.1 only, no ACL, anonymous, and
no shared subscriptions (`$share/<group>/...` is treated as a plain topic there and
never matches). So in embedded mode exactly ONE ingest worker runs, subscribed to the
plain filter `ks/v1/d/+/+` (``IngestWorker(..., shared=False)``). Production and the tests
use Mosquitto (or any broker with shared subscriptions) through ``MQTT_URL``. It cannot
bind a device's identity either (no TLS, no certificates, no ACL: any client may speak
for any device), so it refuses to start with ``ENVIRONMENT=production``.

``MQTT_URL`` is ``mqtt://`` (plain: loopback, the tests, a compose-internal network) or
``mqtts://`` (TLS: the broker is verified against ``?ca_file=<PEM>``, or the system's CAs
without it; hostname checked, never weakened). A service certificate may be given with
``&cert_file=...&key_file=...``. The cloud logs in on the broker's password listener, not on
the devices' certificate listener (deploy/mosquitto/mosquitto.conf).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from kickstand.cloud.errors import CloudError

log = logging.getLogger("kickstand.cloud.broker")

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
_TLS_OPTIONS = ("ca_file", "cert_file", "key_file")


class EmbeddedBrokerRefusedError(CloudError):
    """The in-process broker asked for where devices must be authenticated (production)."""


class BrokerUrlError(ValueError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"MQTT URL {url!r}: {reason}")
        self.url = url
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MqttUrl:
    host: str
    port: int = DEFAULT_PORT
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None  # PEM CA the broker is verified against (None: system CAs)
    cert_file: str | None = None  # a service's client certificate, if the broker wants one
    key_file: str | None = None

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        """`mqtt[s]://[user[:password]@]host[:port][?ca_file=...&cert_file=...&key_file=...]`
        (tcp:// and ssl:// accepted too); the TLS options only with mqtts://."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp", "mqtts", "ssl"):
            raise BrokerUrlError(url, "scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise BrokerUrlError(url, "no host")
        tls = parts.scheme in ("mqtts", "ssl")
        try:
            port = parts.port or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT)
        except ValueError as exc:
            raise BrokerUrlError(url, str(exc)) from None
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(query) - set(_TLS_OPTIONS))
        if unknown:
            raise BrokerUrlError(url, f"unknown option(s) {', '.join(unknown)}")
        options = {name: values[-1] for name, values in query.items()}
        if options and not tls:
            raise BrokerUrlError(url, "TLS options need mqtts://")
        if ("cert_file" in options) != ("key_file" in options):
            raise BrokerUrlError(url, "cert_file and key_file go together")
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
            ca_file=options.get("ca_file"),
            cert_file=options.get("cert_file"),
            key_file=options.get("key_file"),
        )

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context for this URL (None: plain mqtt://). Server verified, hostname
        checked; a file that cannot be read raises BrokerUrlError."""
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if self.cert_file is not None:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise BrokerUrlError(self.safe(), f"TLS material: {exc}") from None
        return context

    def safe(self) -> str:
        user = f"{self.username}:***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedBroker:
    """amqtt running in this event loop; ``async with`` yields the URL to connect to."""

    def __init__(
        self, host: str = "127.0.0.1", port: int | None = None, *, environment: str | None = None
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        #: ENVIRONMENT of the process (the cloud's setting), read from the environment when
        #: not given.
        self.environment = (
            environment if environment is not None else os.environ.get("ENVIRONMENT", "")
        )
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> str:
        if self.environment.strip().lower() == "production":
            raise EmbeddedBrokerRefusedError(
                "the embedded broker binds no device identity (anonymous, no TLS, no ACL): "
                "set MQTT_URL to a broker with device certificates (deploy/README.md)"
            )
        from amqtt.broker import Broker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        self._broker = Broker(config)
        await self._broker.start()
        log.info("event=embedded_broker_started url=%s", self.url)
        return self.url

    async def stop(self) -> None:
        if self._broker is not None:
            broker, self._broker = self._broker, None
            try:
                await asyncio.wait_for(broker.shutdown(), timeout=10)
            except Exception as exc:  # a broker that fails to stop must not hide the real error
                log.warning("event=embedded_broker_stop_failed error=%r", exc)
            log.info("event=embedded_broker_stopped url=%s", self.url)

    async def __aenter__(self) -> str:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
