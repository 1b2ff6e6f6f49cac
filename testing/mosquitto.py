"""A real Mosquitto broker for the tests, with the project's config and ACL.

    with MosquittoService() as broker:
        client.username_pw_set(broker.cloud_username, broker.cloud_password)
        client.connect(broker.host, broker.port)
        broker.stop(); ...; broker.start()      # same port, same persisted sessions
"""

from __future__ import annotations

import getpass
import secrets
import string
import subprocess
from importlib import resources
from urllib.parse import quote

from ._process import LOOPBACK, ManagedProcess, require_binary, tail
from .errors import ServiceStartError

MOSQUITTO_BIN = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD_BIN = "/usr/bin/mosquitto_passwd"
CLOUD_USERNAME = "kickstand-cloud"


def _packaged_text(name: str) -> str:
    return resources.files("kickstand.testing").joinpath(name).read_text()


class MosquittoService(ManagedProcess):
    """Mosquitto on a free loopback port, in a temp dir, with the Kickstand ACL.

    Devices connect anonymously with client id = device id and may publish under
    `ks/v1/d/<clientid>/#` and subscribe under `ks/v1/c/<clientid>/#`. The cloud logs in as
    `cloud_username` / `cloud_password` and may read and write `ks/#`, shared
    subscriptions (`$share/<group>/ks/...`) included.
    """

    service_name = "mosquitto"

    def __init__(self, *, host: str = LOOPBACK, port: int | None = None) -> None:
        self._binary = require_binary("mosquitto", MOSQUITTO_BIN, "mosquitto")
        self._passwd_binary = require_binary(
            "mosquitto_passwd", MOSQUITTO_PASSWD_BIN, "mosquitto_passwd"
        )
        super().__init__(host=host, port=port)
        self.cloud_username = CLOUD_USERNAME
        self.cloud_password = secrets.token_urlsafe(18)
        self.data_dir = self.base_dir / "data"
        self.config_path = self.base_dir / "mosquitto.conf"
        self.acl_path = self.base_dir / "mosquitto.acl"
        self.password_path = self.base_dir / "passwords"
        self.broker_log_path = self.base_dir / "mosquitto.log"

    @property
    def url(self) -> str:
        """`mqtt://kickstand-cloud:<password>@127.0.0.1:<port>` — the cloud's MQTT_URL."""
        user = quote(self.cloud_username, safe="")
        password = quote(self.cloud_password, safe="")
        return f"mqtt://{user}:{password}@{self.host}:{self.port}"

    @property
    def device_url(self) -> str:
        """`mqtt://127.0.0.1:<port>` — anonymous, as devices connect."""
        return f"mqtt://{self.host}:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        parts = [super().log_tail(lines)]
        if self.broker_log_path.exists():
            parts.append(tail(self.broker_log_path, lines))
        return "\n".join(p for p in parts if p)

    def _prepare(self) -> None:
        self.data_dir.mkdir()
        self.acl_path.write_text(_packaged_text("mosquitto.acl"))
        self.password_path.touch(mode=0o600)
        result = subprocess.run(
            [self._passwd_binary, "-b", str(self.password_path), self.cloud_username,
             self.cloud_password],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceStartError(
                "mosquitto", "mosquitto_passwd failed", result.stderr + result.stdout
            )
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

    def _command(self) -> list[str]:
        return [self._binary, "-c", str(self.config_path)]
