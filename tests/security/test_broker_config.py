"""deploy/mosquitto/ ships the policy the security tests run (testing/mosquitto-tls.*)."""

from __future__ import annotations

import string
from pathlib import Path

from kickstand.protocol.v1 import codec

ROOT = Path(__file__).resolve().parents[2]
#: Lines about the process (where it logs, its pid file, its user), not the policy.
PROCESS = {
    "pid_file",
    "user",
    "log_dest",
    "log_type",
    "connection_messages",
    "log_timestamp_format",
}
DEPLOY = {
    "cloud_host": "",
    "cloud_port": 1883,
    "device_host": "",
    "device_port": 8883,
    "ca_file": "/mosquitto/pki/ca.pem",
    "cert_file": "/mosquitto/pki/server.pem",
    "key_file": "/mosquitto/pki/server.key",
    "crl_file": "/mosquitto/pki/crl.pem",
    "password_file": "/mosquitto/run/passwords",
    "acl_file": "/mosquitto/config/mosquitto.acl",
    "data_dir": "/mosquitto/data",
    "pid_file": "-",
    "log_file": "-",
    "user": "-",
}


def directives(text: str) -> list[str]:
    lines = (line.strip() for line in text.splitlines())
    return [
        " ".join(line.split())
        for line in lines
        if line and not line.startswith("#") and line.split()[0] not in PROCESS
    ]


def test_deploy_config_is_the_tested_policy() -> None:
    template = (ROOT / "testing/mosquitto-tls.conf").read_text()
    tested = directives(string.Template(template).substitute(DEPLOY))
    deployed = directives((ROOT / "deploy/mosquitto/mosquitto.conf").read_text())
    assert deployed == tested


def test_deploy_acl_is_the_tested_acl() -> None:
    assert (ROOT / "deploy/mosquitto/mosquitto.acl").read_text() == (
        ROOT / "testing/mosquitto-tls.acl"
    ).read_text()


def test_policy_binds_identity_and_limits_size() -> None:
    policy = directives((ROOT / "deploy/mosquitto/mosquitto.conf").read_text())
    for line in (
        "allow_anonymous false",
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
        "crlfile /mosquitto/pki/crl.pem",
        f"message_size_limit {max(codec.MAX_SIZE.values())}",
    ):
        assert line in policy, line
    # The certificate options belong to the device listener (the last one), not the cloud's.
    device = policy[policy.index("listener 8883") :]
    assert "require_certificate true" in device and "listener 1883" not in device
    acl = (ROOT / "deploy/mosquitto/mosquitto.acl").read_text()
    assert "pattern write ks/v1/d/%u/#" in acl and "pattern read ks/v1/c/%u/#" in acl
    assert "%c" not in acl  # the client id is no identity
