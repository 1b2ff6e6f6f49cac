"""The docker-compose deployment is valid and wired as documented (no Docker engine needed).

`docker-compose config` (Debian's 1.29, installed by testing/ensure-system-packages)
parses and resolves the file; the checks then read the resolved services. The deploy
Mosquitto config is also run for real with the local broker binary.
"""

from __future__ import annotations

import getpass
import queue
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from kickstand.cloud.pki import init_directory
from kickstand.testing._process import ManagedProcess, free_port, port_accepts, require_binary

ROOT = Path(__file__).resolve().parent.parent
SERVICES = {
    "mosquitto", "postgres", "influxdb", "migrate", "api", "ingest", "webhooks", "simulators"
}
CLOUD = ("migrate", "api", "ingest")
CLOUD_ENV = (
    "DATABASE_URL", "INFLUX_URL", "INFLUX_DATABASE", "INFLUX_USERNAME",
    "INFLUX_PASSWORD", "JWT_SECRET", "COMMAND_SIGNING_KEY_FILE", "ENVIRONMENT",
)
COMMANDS = {
    "migrate": ["python", "-m", "kickstand.cloud", "migrate"],
    "api": ["python", "-m", "kickstand.cloud", "api"],
    "ingest": ["python", "-m", "kickstand.cloud", "ingest"],
    "webhooks": ["python", "-m", "kickstand.cloud", "webhooks"],
}


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the deployment files with freshly generated secrets."""
    root = tmp_path_factory.mktemp("compose")
    for name in ("docker-compose.yml", "Dockerfile", ".dockerignore"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "deploy", root / "deploy",
                    ignore=shutil.ignore_patterns("secrets", "__pycache__"))
    result = subprocess.run([str(root / "deploy" / "init-secrets")], capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture(scope="module")
def config(project: Path) -> dict[str, Any]:
    compose = require_binary("docker-compose", "docker-compose")
    result = subprocess.run([compose, "config"], cwd=project, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    resolved: dict[str, Any] = yaml.safe_load(result.stdout)
    return resolved


def test_all_services_are_defined(config: dict[str, Any]) -> None:
    assert set(config["services"]) == SERVICES


def test_cloud_processes_run_the_documented_commands(config: dict[str, Any]) -> None:
    services = config["services"]
    for name, command in COMMANDS.items():
        assert services[name]["command"] == command
    simulators = " ".join(services["simulators"]["command"])
    assert "exec python -m kickstand.simulators fleet" in simulators
    for name in (*CLOUD, "webhooks", "simulators"):
        assert services[name]["build"]["dockerfile"] == "Dockerfile"
        assert services[name]["image"] == "kickstand:latest"


def test_ingest_runs_two_workers_and_migrate_runs_first(config: dict[str, Any]) -> None:
    services = config["services"]
    assert services["ingest"]["deploy"]["replicas"] == 2
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "ingest"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["mosquitto"]["condition"] == "service_healthy"
        assert depends["influxdb"]["condition"] == "service_healthy"


def test_cloud_environment_is_consistent_with_the_engines(
    config: dict[str, Any], project: Path
) -> None:
    services = config["services"]
    postgres = read_env_file(project / "deploy/secrets/postgres.env")
    mosquitto = read_env_file(project / "deploy/secrets/mosquitto.env")
    influx = services["influxdb"]["environment"]
    for name in CLOUD:
        env = services[name]["environment"]
        missing = [key for key in CLOUD_ENV if not env.get(key)]
        assert not missing, f"{name} lacks {missing}"
        assert env["ENVIRONMENT"] == "production"
        assert len(env["JWT_SECRET"]) >= 32

        db = urlsplit(env["DATABASE_URL"])
        assert db.scheme == "postgresql+asyncpg" and db.hostname == "postgres"
        assert db.username == postgres["POSTGRES_USER"]
        assert db.password == postgres["POSTGRES_PASSWORD"]
        assert db.path == "/" + postgres["POSTGRES_DB"]

        # Each service with the broker an account of its own (issue 17); migrate none.
        account = {"api": ("cloud-api", "MQTT_API_PASSWORD"),
                   "ingest": ("cloud-ingest", "MQTT_INGEST_PASSWORD")}.get(name)
        if account is None:
            assert "MQTT_URL" not in env, name
        else:
            broker = urlsplit(env["MQTT_URL"])
            assert (broker.scheme, broker.hostname, broker.port) == ("mqtt", "mosquitto", 1883)
            assert broker.username == account[0]
            assert broker.password == mosquitto[account[1]]

        assert env["INFLUX_URL"] == "http://influxdb:8086"
        assert env["INFLUX_DATABASE"] == influx["V1_DB_NAME"]
        assert env["INFLUX_USERNAME"] == influx["V1_AUTH_USERNAME"]
        assert env["INFLUX_PASSWORD"] == influx["V1_AUTH_PASSWORD"]

        assert env["COMMAND_SIGNING_KEY_FILE"] == "/run/secrets/command_signing_key"
        assert [s["source"] for s in services[name]["secrets"]] == ["command_signing_key"]
    assert services["api"]["environment"]["API_HOST"] == "0.0.0.0"
    key_file = Path(config["secrets"]["command_signing_key"]["file"])
    assert re.fullmatch(r"[0-9a-f]{64}", key_file.read_text().strip())


def test_simulators_are_opt_in_and_hold_no_cloud_secret(config: dict[str, Any]) -> None:
    simulators = config["services"]["simulators"]
    assert simulators["profiles"] == ["simulated-fleet"]
    env = simulators["environment"]
    url = urlsplit(env["MQTT_URL"])
    assert (url.scheme, url.hostname, url.port, url.username) == ("mqtts", "mosquitto", 8883, None)
    assert "DATABASE_URL" not in env and "JWT_SECRET" not in env
    assert "COMMAND_SIGNING_KEY_FILE" not in env and not simulators.get("secrets")


def test_only_the_device_tls_port_is_published(config: dict[str, Any]) -> None:
    ports = config["services"]["mosquitto"]["ports"]
    assert [(int(p["target"]), int(p["published"])) for p in ports] == [(8883, 8883)]
    # docker-compose 1.29 resolves short volume syntax to "source:target[:mode]" strings.
    mounts = config["services"]["mosquitto"]["volumes"]
    assert any(m.endswith(":/mosquitto/pki-src:ro") for m in mounts), mounts
    api = config["services"]["api"]
    assert api["environment"]["DEVICE_CA_DIR"] == "/run/kickstand-pki"
    assert any(m.endswith(":/run/kickstand-pki:rw") or m.endswith(":/run/kickstand-pki")
               for m in api["volumes"]), api["volumes"]


def test_influxdb_gets_v1_compatibility(config: dict[str, Any]) -> None:
    influx = config["services"]["influxdb"]
    env = influx["environment"]
    assert influx["image"].startswith("influxdb:2.")
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    for key in ("USERNAME", "PASSWORD", "ORG", "BUCKET", "ADMIN_TOKEN"):
        assert env[f"DOCKER_INFLUXDB_INIT_{key}"], key
    init_dir = next(v for v in influx["volumes"] if v.endswith(":/docker-entrypoint-initdb.d:ro"))
    script = Path(init_dir.split(":")[0]) / "10-v1-compat.sh"
    text = script.read_text()
    assert "influx v1 dbrp create" in text and "influx v1 auth create" in text
    for variable in re.findall(r"\$\{(\w+)\}", text):
        assert variable.startswith("DOCKER_INFLUXDB_INIT_") or variable in env, variable
    assert subprocess.run(["bash", "-n", str(script)], timeout=10, check=False).returncode == 0


def test_deploy_acl_is_the_tested_acl() -> None:
    # The harness runs testing/mosquitto-tls.acl in the security tests (its TLS mode); the
    # deployment must run exactly that policy.
    assert (ROOT / "deploy/mosquitto/mosquitto.acl").read_text() == \
        (ROOT / "testing/mosquitto-tls.acl").read_text()


def test_dockerfile_installs_the_package_non_editable() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = re.findall(r"pip install ([^\n\\&]*)", dockerfile)
    assert installs and all("-e" not in args.split() for args in installs), installs
    assert any(args.strip() == "." for args in installs)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "deploy/secrets" in ignored and ".env" in ignored and ".venv" in ignored


def test_init_secrets_keeps_existing_and_refuses_partial_sets(tmp_path: Path) -> None:
    script = str(ROOT / "deploy" / "init-secrets")
    out = tmp_path / "secrets"
    first = subprocess.run([script, "--dir", str(out)], capture_output=True, text=True,
                           timeout=30, check=True)
    assert "wrote" in first.stdout
    before = {p.name: p.read_text() for p in out.iterdir()}
    subprocess.run([script, "--dir", str(out)], capture_output=True, timeout=30, check=True)
    assert {p.name: p.read_text() for p in out.iterdir()} == before
    (out / "cloud.env").unlink()
    partial = subprocess.run([script, "--dir", str(out)], capture_output=True, text=True,
                             timeout=30, check=False)
    assert partial.returncode == 1 and "only some secrets" in partial.stderr
    assert out.stat().st_mode & 0o777 == 0o700


class DeployMosquitto(ManagedProcess):
    """deploy/mosquitto/mosquitto.conf run by the local broker, paths moved to a temp dir."""

    service_name = "mosquitto-deploy"

    def __init__(self, password: str) -> None:
        super().__init__()
        self.password = password
        self.tls_port = 0  # the devices' listener (8883 in the container), set in _prepare

    def _prepare(self) -> None:
        root = self.base_dir / "mosquitto"
        for sub in ("config", "data", "run"):
            (root / sub).mkdir(parents=True)
        init_directory(root / "pki", [self.host])  # what `pki init` writes, as in compose
        self.tls_port = free_port(self.host)
        shutil.copy(ROOT / "deploy/mosquitto/mosquitto.acl", root / "config/mosquitto.acl")
        subprocess.run(
            [require_binary("mosquitto_passwd", "/usr/bin/mosquitto_passwd"), "-c", "-b",
             str(root / "run/passwords"), "cloud-api", self.password],
            capture_output=True, timeout=10, check=True,
        )
        conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
        assert "listener 1883\n" in conf and "listener 8883\n" in conf
        conf = conf.replace("listener 1883\n", f"listener {self.port} {self.host}\n")
        conf = conf.replace("listener 8883\n", f"listener {self.tls_port} {self.host}\n")
        conf = conf.replace("/mosquitto/", f"{root}/")
        (root / "config/mosquitto.conf").write_text(conf + f"\nuser {getpass.getuser()}\n")

    def _command(self) -> list[str]:
        conf = self.base_dir / "mosquitto/config/mosquitto.conf"
        return [require_binary("mosquitto", "/usr/sbin/mosquitto"), "-c", str(conf)]


def connack(broker: ManagedProcess, password: str) -> int:
    codes: queue.Queue[int] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"cloud-{uuid.uuid4().hex[:6]}")
    client.username_pw_set("cloud-api", password)
    client.on_connect = lambda _c, _u, _f, rc, _p: codes.put(rc.value)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        return codes.get(timeout=5)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.mqtt
def test_deploy_mosquitto_config_runs_with_the_cloud_login(config: dict[str, Any]) -> None:
    command = " ".join(config["services"]["mosquitto"]["command"])
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    password_file = re.search(r"^password_file (\S+)", conf, re.M)
    assert password_file and password_file.group(1) in command
    with DeployMosquitto(password="s3cret-for-the-test") as broker:
        assert connack(broker, "s3cret-for-the-test") == 0
        assert connack(broker, "wrong") != 0  # not authorised


@pytest.mark.mqtt
def test_deploy_broker_start_script_serves_tls_and_rereads_the_crl() -> None:
    """The compose broker's start script, run here as in the container (as root, the broker
    dropping to user mosquitto), paths moved to a temp dir, the watcher's period shortened:
    the TLS files are copied (never ca.key), a device certificate connects, and a revoked
    one is refused once the watcher saw the new CRL."""
    import asyncio
    import os
    import pwd
    import ssl
    import tempfile
    import time
    from datetime import UTC, datetime

    import aiomqtt

    from kickstand.cloud.pki import CertificateAuthority, device_csr, device_key, write_pem

    if os.geteuid() != 0:
        pytest.skip("the start script chowns files to the broker's user: root only")
    try:
        pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no user mosquitto (Debian's package creates it)")
    # Not pytest's tmp_path: its parents are 0700, and the broker reads its files as the
    # user mosquitto (as in the container).
    with tempfile.TemporaryDirectory(prefix="kickstand-compose-") as name:
        base = Path(name)
        base.chmod(0o755)
        root = base / "mosquitto"
        for sub in ("config", "data", "pki-src"):
            (root / sub).mkdir(parents=True)
        shutil.chown(root / "data", "mosquitto", "mosquitto")
        ca = CertificateAuthority.create("compose start script")
        material = init_directory(root / "pki-src", ["127.0.0.1"], ca=ca)
        cloud_port, device_port = free_port(), free_port()
        conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
        conf = conf.replace("listener 1883\n", f"listener {cloud_port} 127.0.0.1\n")
        conf = conf.replace("listener 8883\n", f"listener {device_port} 127.0.0.1\n")
        (root / "config/mosquitto.conf").write_text(conf.replace("/mosquitto/", f"{root}/"))
        shutil.copy(ROOT / "deploy/mosquitto/mosquitto.acl", root / "config/mosquitto.acl")
        compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
        script: str = compose["services"]["mosquitto"]["command"][2]
        assert "kill -HUP 1" in script and "sleep 10" in script
        broker = require_binary("mosquitto", "/usr/sbin/mosquitto")
        script = (
            script.replace("$$", "$")
            .replace("/mosquitto/", f"{root}/")
            .replace("kill -HUP 1", "kill -HUP $$")  # the broker is not PID 1 here
            .replace("sleep 10", "sleep 0.5")
            .replace("exec mosquitto", f"exec {broker}")
        )
        key = device_key()
        cert = ca.sign_csr(device_csr(key, "st-0001"), "st-0001", 1)
        write_pem(base / "device.pem", cert)
        write_pem(base / "device.key", key)

        async def connect() -> bool:
            context = ssl.create_default_context(cafile=str(material.ca_file))
            context.load_cert_chain(base / "device.pem", base / "device.key")
            try:
                async with aiomqtt.Client("127.0.0.1", device_port, identifier="st-0001",
                                          tls_context=context, timeout=2):
                    return True
            except aiomqtt.MqttError:
                return False

        broker_log = base / "broker.log"
        with open(broker_log, "wb") as log:
            proc = subprocess.Popen(["sh", "-c", script], stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, "MQTT_INGEST_PASSWORD": "compose-test",
                                         "MQTT_API_PASSWORD": "compose-test-api"},
                                    start_new_session=True)
        try:
            deadline = time.monotonic() + 10
            while not port_accepts("127.0.0.1", device_port):
                assert time.monotonic() < deadline, broker_log.read_text()
                time.sleep(0.05)
            assert sorted(p.name for p in (root / "pki").iterdir()) == [
                "ca.pem", "crl.pem", "server.key", "server.pem"
            ]
            assert (root / "pki/server.key").stat().st_mode & 0o777 == 0o600
            assert asyncio.run(connect()), broker_log.read_text()
            revoked = ca.crl([(cert.serial_number, datetime.now(UTC))])
            write_pem(root / "pki-src/crl.pem", revoked)
            # (The broker's stdout is block-buffered here: its log cannot say when it reloaded.)
            deadline = time.monotonic() + 15
            while asyncio.run(connect()):
                assert time.monotonic() < deadline, "the revoked certificate still connects"
                time.sleep(0.2)
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=10)
