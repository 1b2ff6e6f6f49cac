"""The rig's side of the bench: a broker, a cuttable link, the cloud peer, the agent process.

The rig plays the cloud: :class:`~kickstand.simulators.station.cloudpeer.CloudPeer`
answers the agent's birth, signs commands with the rig's key (the agent under test is
configured to trust it) and collects what the agent reports, deduplicated as the real
ingest does. The agent reaches the broker through a
:class:`~kickstand.simulators.station.proxy.LinkProxy`, so a step can drop the link.

The agent is the production agent, run as its own process
(``python -m kickstand.edge.station --config …``): a power cut is a SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import urllib.request
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from kickstand.protocol.signing import (
    CommandSigner,
    load_or_create_private_key,
    public_key_bytes,
)
from kickstand.protocol.v1.enums import ResultStatus
from kickstand.protocol.v1.messages import CommandBody, CommandResult
from kickstand.rigs.errors import RigError
from kickstand.simulators.station.cloudpeer import CloudPeer, Received
from kickstand.simulators.station.proxy import LinkProxy

log = logging.getLogger("kickstand.rigs.bench")

FINAL = (ResultStatus.DONE, ResultStatus.FAILED, ResultStatus.REJECTED)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedBroker:
    """amqtt in this event loop: the bench needs no broker installed."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port(host)
        self._broker: Any = None

    async def start(self) -> None:
        from amqtt.broker import Broker

        self._broker = Broker({
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        })
        await self._broker.start()

    async def stop(self) -> None:
        if self._broker is not None:
            broker, self._broker = self._broker, None
            try:
                await asyncio.wait_for(broker.shutdown(), timeout=5)
            except Exception as exc:  # a broker that will not stop must not hide the run
                log.warning("rig_broker_stop_failed error=%r", exc)


def _parse_url(url: str) -> tuple[str, int, str | None, str | None]:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise RigError(f"broker URL {url!r}: expected mqtt://[user:password@]host:port")
    return (
        parts.hostname,
        parts.port or 1883,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )


class Bench:
    """Broker (embedded unless ``broker_url``), link proxy and cloud peer.

    ``broker_url`` is the cloud's login (``mqtt://user:pw@host:port``); devices connect
    anonymously through the proxy, as on the harness's Mosquitto.
    """

    def __init__(self, workdir: Path, broker_url: str | None = None) -> None:
        self.workdir = workdir
        self.broker_url = broker_url
        self.broker: EmbeddedBroker | None = None
        self.proxy: LinkProxy | None = None
        self.cloud: CloudPeer | None = None
        self.signer = CommandSigner(load_or_create_private_key(workdir / "rig-signing.key"))
        # Its own firmware key, apart from the command key, as an installation has (SPEC §13.2).
        self.firmware_key = load_or_create_private_key(workdir / "rig-firmware.key")

    @property
    def command_key(self) -> str:
        """The rig's public key (hex), to provision in the agent's ``command_keys``."""
        return self.signer.public_key.hex()

    @property
    def firmware_public_key(self) -> str:
        """The rig's firmware public key (hex), for the agent's ``firmware_public_keys``."""
        return public_key_bytes(self.firmware_key).hex()

    @property
    def device_mqtt_url(self) -> str:
        assert self.proxy is not None
        return f"mqtt://{self.proxy.host}:{self.proxy.port}"

    async def __aenter__(self) -> Bench:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self.broker_url is None:
            self.broker = EmbeddedBroker()
            await self.broker.start()
            host, port, user, password = self.broker.host, self.broker.port, None, None
        else:
            host, port, user, password = _parse_url(self.broker_url)
        self.proxy = LinkProxy(host, port)
        await self.proxy.start()
        self.cloud = CloudPeer(host, port, username=user, password=password, signer=self.signer,
                               heartbeat_s=30)
        try:
            await self.cloud.__aenter__()
        except TimeoutError:
            raise RigError(f"the rig cannot reach its broker at {host}:{port}") from None

    async def stop(self) -> None:
        if self.cloud is not None:
            await self.cloud.__aexit__(None, None, None)
            self.cloud = None
        if self.proxy is not None:
            await self.proxy.stop()
            self.proxy = None
        if self.broker is not None:
            await self.broker.stop()
            self.broker = None

    # ---------------------------------------------------------------- the link

    def cut_link(self) -> None:
        assert self.proxy is not None
        self.proxy.cut()

    def restore_link(self) -> None:
        assert self.proxy is not None
        self.proxy.restore()

    # ---------------------------------------------------------------- the cloud

    @property
    def peer(self) -> CloudPeer:
        assert self.cloud is not None
        return self.cloud

    async def command(
        self, device_id: str, body: CommandBody, within: float = 10.0, *,
        final: bool = True,
    ) -> CommandResult:
        """Send ``body`` signed; the device's result (the final one unless ``final=False``)."""
        cid = await self.peer.send_command(device_id, body)
        wanted = FINAL if final else tuple(ResultStatus)

        def match(r: Received) -> bool:
            return isinstance(r.body, CommandResult) and r.body.command_id == cid \
                and r.body.status in wanted

        received = await self.peer.wait_for(device_id, match, within)
        result: CommandResult = received.body
        return result

    def mark(self, device_id: str) -> int:
        """An index into the device's messages: wait for what comes after it."""
        return len(self.peer.view(device_id).messages)


class AgentProcess:
    """The production agent as a child process, its output in ``log_path``."""

    def __init__(self, module: str, config_path: Path, log_path: Path) -> None:
        self.module = module
        self.config_path = config_path
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self._log: IO[bytes] | None = None

    async def start(self) -> None:
        self._log = self.log_path.open("ab")
        self._log.write(f"---- start {self.starts + 1}\n".encode())
        self._log.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # The agent's settings come from its file only, not the bench PC's environment.
        for key in [k for k in env if k.startswith("KICKSTAND_")]:
            del env[key]
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.module, "--config", str(self.config_path),
            stdin=asyncio.subprocess.DEVNULL, stdout=self._log, stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        self.starts += 1

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def power_cut(self) -> None:
        """SIGKILL: no shutdown code runs, as when the mains go."""
        if self.running:
            assert self.process is not None
            self.process.kill()
            await self.process.wait()
        self._close_log()

    async def stop(self, grace_s: float = 10.0) -> int | None:
        if self.process is None:
            return None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(grace_s):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self._close_log()
        return self.process.returncode

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_lines(self, *words: str) -> list[str]:
        """The agent's log lines holding any of ``words`` (what a hint may quote)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if any(w in line for w in words)]


async def fetch_health(port: int, within_s: float = 3.0) -> dict[str, Any]:
    """The agent's local status endpoint (the same a technician reads with ``… status``)."""

    def get() -> dict[str, Any]:
        url = f"http://127.0.0.1:{port}/status"
        with urllib.request.urlopen(url, timeout=within_s) as response:
            data: dict[str, Any] = json.loads(response.read())
        return data

    return await asyncio.to_thread(get)


def write_toml(path: Path, values: dict[str, Any]) -> Path:
    """A flat settings file for the agent (``--config``); nested tables are not needed."""
    lines = [f"{key} = {_toml(value)}" for key, value in values.items() if value is not None]
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string
