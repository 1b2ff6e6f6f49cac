"""A real Mosquitto broker for the tests, with the project's config and ACL.

    with MosquittoService() as broker:
        client.username_pw_set(broker.cloud_username, broker.cloud_password)
        client.connect(broker.host, broker.port)
        broker.stop(); ...; broker.start()      # same port, same persisted sessions

Two modes:

- ``MosquittoService()``: the historical plain listener (``mosquitto.conf``): devices
  connect anonymously with client id = device id, confined by ``%c`` ACL patterns. Kept, as
  an explicit opt-in of the suites that run simulated fleets without certificates (edge,
  e2e, chaos, conformance); it does NOT bind identity (issue 17).
- ``MosquittoService(tls=DeviceTls.create(dir))``: the policy ``deploy/`` ships
  (``mosquitto-tls.conf``, ``mosquitto-tls.acl``): devices on a TLS listener
  (``tls_port``, ``device_url`` = ``mqtts://``) with a client certificate of the
  installation's CA, identity = certificate CN; the cloud's services on a password
  listener (``port``), each with its own account and topics (``SERVICE_ACCOUNTS``:
  ``service_url("cloud-api")``; ``url`` is ingest's); message size, in-flight and queue
  limits.
"""

from __future__ import annotations

import getpass
import os
import secrets
import signal
import string
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from kickstand.cloud.pki import BrokerMaterial, CertificateAuthority, init_directory, write_pem

from ._process import LOOPBACK, ManagedProcess, free_port, port_accepts, require_binary, tail
from .errors import ServiceStartError, ServiceStateError

MOSQUITTO_BIN = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD_BIN = "/usr/bin/mosquitto_passwd"
CLOUD_USERNAME = "kickstand-cloud"
#: The TLS mode's accounts (mosquitto-tls.acl, as deploy/ ships): one per cloud service.
INGEST_ACCOUNT = "cloud-ingest"
API_ACCOUNT = "cloud-api"
SERVICE_ACCOUNTS = (INGEST_ACCOUNT, API_ACCOUNT)


def _packaged_text(name: str) -> str:
    return resources.files("kickstand.testing").joinpath(name).read_text()


@dataclass(frozen=True)
class DeviceTls:
    """The device listener's material: the installation's CA (to sign device certificates
    in tests) and the files the broker reads (CA, server certificate and key, CRL)."""

    ca: CertificateAuthority
    material: BrokerMaterial

    @classmethod
    def create(
        cls,
        directory: Path,
        *,
        ca: CertificateAuthority | None = None,
        hosts: Iterable[str] = (LOOPBACK, "localhost"),
    ) -> DeviceTls:
        """CA (new unless given), a server certificate for ``hosts`` and an empty CRL,
        written by the same function as ``python -m kickstand.cloud pki init``."""
        ca = ca or CertificateAuthority.create("Kickstand test device CA", valid_days=30)
        material = init_directory(directory, list(hosts), ca=ca, server_valid_days=30)
        return cls(ca, material)

    @property
    def ca_file(self) -> Path:
        return self.material.ca_file

    def write_crl(self, revoked: Iterable[tuple[int, datetime]]) -> None:
        """Replace the CRL (the broker rereads it on :meth:`MosquittoService.reload`)."""
        write_pem(self.material.crl_file, self.ca.crl(revoked))


class MosquittoService(ManagedProcess):
    """Mosquitto on a free loopback port, in a temp dir, with the Kickstand ACL.

    Plain mode (no ``tls``): devices connect anonymously with client id = device id and may
    publish under `ks/v1/d/<clientid>/#` and subscribe under `ks/v1/c/<clientid>/#`; the
    cloud logs in on ``port`` as `cloud_username` / `cloud_password` and may read and
    write `ks/#`, shared subscriptions (`$share/<group>/ks/...`) included.
    TLS mode (``tls=DeviceTls``): devices connect on ``tls_port`` with a certificate of
    ``tls.ca`` and are confined by its CN; each cloud service has its account on ``port``
    (``accounts``, ``service_url``) with only its topics; `cloud_username` /
    `cloud_password` / ``url`` are ingest's (whose topics cover what a test city's API
    does too).
    """

    service_name = "mosquitto"

    def __init__(
        self, *, host: str = LOOPBACK, port: int | None = None, tls: DeviceTls | None = None
    ) -> None:
        self._binary = require_binary("mosquitto", MOSQUITTO_BIN, "mosquitto")
        self._passwd_binary = require_binary(
            "mosquitto_passwd", MOSQUITTO_PASSWD_BIN, "mosquitto_passwd"
        )
        super().__init__(host=host, port=port)
        #: user name -> password of the cloud's accounts on the password listener.
        self.accounts = {
            name: secrets.token_urlsafe(18)
            for name in (SERVICE_ACCOUNTS if tls is not None else (CLOUD_USERNAME,))
        }
        self.cloud_username = INGEST_ACCOUNT if tls is not None else CLOUD_USERNAME
        self.cloud_password = self.accounts[self.cloud_username]
        self.data_dir = self.base_dir / "data"
        self.config_path = self.base_dir / "mosquitto.conf"
        self.acl_path = self.base_dir / "mosquitto.acl"
        self.password_path = self.base_dir / "passwords"
        self.broker_log_path = self.base_dir / "mosquitto.log"
        self.pid_file = self.base_dir / "mosquitto.pid"
        #: The device TLS listener's material and port (None: the plain mode, no TLS).
        self.tls = tls
        self.tls_port: int | None = free_port(host) if tls is not None else None

    @property
    def url(self) -> str:
        """`mqtt://kickstand-cloud:<password>@127.0.0.1:<port>` — the cloud's MQTT_URL
        (TLS mode: ingest's account)."""
        return self.service_url(self.cloud_username)

    def service_url(self, account: str) -> str:
        """The MQTT_URL of one of ``accounts`` (`mqtt://cloud-api:<password>@...`)."""
        user = quote(account, safe="")
        password = quote(self.accounts[account], safe="")
        return f"mqtt://{user}:{password}@{self.host}:{self.port}"

    @property
    def device_url(self) -> str:
        """How devices connect: `mqtts://127.0.0.1:<tls_port>` in the TLS mode (a client
        certificate is then needed), else `mqtt://127.0.0.1:<port>`, anonymous."""
        if self.tls_port is not None:
            return f"mqtts://{self.host}:{self.tls_port}"
        return f"mqtt://{self.host}:{self.port}"

    def reload(self) -> None:
        """SIGHUP: the broker rereads its config, ACL, password file, certificates and CRL."""
        pid = self.pid
        if pid is None:
            raise ServiceStateError("mosquitto is not running")
        os.kill(pid, signal.SIGHUP)

    def _ready(self) -> bool:
        if not port_accepts(self.host, self.port):
            return False
        return self.tls_port is None or port_accepts(self.host, self.tls_port)

    def log_tail(self, lines: int = 40) -> str:
        parts = [super().log_tail(lines)]
        if self.broker_log_path.exists():
            parts.append(tail(self.broker_log_path, lines))
        return "\n".join(p for p in parts if p)

    def _prepare(self) -> None:
        self.data_dir.mkdir()
        tls = self.tls is not None
        self.acl_path.write_text(_packaged_text("mosquitto-tls.acl" if tls else "mosquitto.acl"))
        self.password_path.touch(mode=0o600)
        for account, password in self.accounts.items():
            result = subprocess.run(
                [self._passwd_binary, "-b", str(self.password_path), account, password],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            if result.returncode != 0:
                raise ServiceStartError(
                    "mosquitto", "mosquitto_passwd failed", result.stderr + result.stdout
                )
        if self.tls is not None:
            self.config_path.write_text(self._tls_config(self.tls))
            return
        config = string.Template(_packaged_text("mosquitto.conf")).substitute(
            host=self.host,
            port=self.port,
            password_file=self.password_path,
            acl_file=self.acl_path,
            data_dir=self.data_dir,
            log_file=self.broker_log_path,
            # As root, mosquitto would drop to user "mosquitto", who cannot write our
            # temp dir; keep the current user.
            user=getpass.getuser(),
        )
        self.config_path.write_text(config)

    def _tls_config(self, tls: DeviceTls) -> str:
        material = tls.material
        return string.Template(_packaged_text("mosquitto-tls.conf")).substitute(
            cloud_host=self.host,
            cloud_port=self.port,
            device_host=self.host,
            device_port=self.tls_port,
            ca_file=material.ca_file,
            cert_file=material.cert_file,
            key_file=material.key_file,
            crl_file=material.crl_file,
            password_file=self.password_path,
            acl_file=self.acl_path,
            data_dir=self.data_dir,
            pid_file=self.pid_file,
            log_file=self.broker_log_path,
            user=getpass.getuser(),
        )

    def _command(self) -> list[str]:
        return [self._binary, "-c", str(self.config_path)]
