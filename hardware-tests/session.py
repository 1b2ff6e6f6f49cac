"""What both suites share: the bench, the agent process, waiting for what the agent reports."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kickstand.edge.core.config import read_config_file
from kickstand.protocol.v1.enums import ResultStatus, TriggerKind
from kickstand.protocol.v1.messages import Birth, CommandResult, Status, TriggerMessage
from kickstand.rigs.bench import AgentProcess, Bench, fetch_health, free_port, write_toml
from kickstand.rigs.errors import RigConfigError, StepFailed
from kickstand.rigs.runner import StepContext
from kickstand.simulators.station.cloudpeer import Received

# Bench timings: quick polling so a lock cycle is measured, not the agent's idle cadence.
BENCH_TIMINGS: dict[str, Any] = {
    "reconnect_min_s": 0.1,
    "reconnect_max_s": 0.5,
    "boot_timeout_s": 2.0,
    # A connection the broker side drops unanswered is given up (and logged) in 2 s, well
    # within the rig's boot timeout, so the boot's fix item can quote it.
    "connect_timeout_s": 2.0,
}


class DeviceSession:
    """One device under test: its agent process and the cloud's view of it."""

    def __init__(self, bench: Bench, device_id: str, workdir: Path, agent_module: str) -> None:
        self.bench = bench
        self.device_id = device_id
        self.workdir = workdir
        self.health_port = free_port()
        self.config_path = workdir / "agent.toml"
        self.agent = AgentProcess(agent_module, self.config_path, workdir / "agent.log")

    # ---------------------------------------------------------------- agent

    def write_agent_config(self, values: dict[str, Any], base: Path | None = None) -> None:
        merged: dict[str, Any] = {}
        if base is not None:
            try:
                merged.update(read_config_file(base))
            except Exception as exc:
                raise RigConfigError(base, f"agent settings: {exc}") from None
        merged.update(values)
        merged["health_port"] = self.health_port
        merged["health_host"] = "127.0.0.1"
        write_toml(self.config_path, merged)

    async def health(self) -> dict[str, Any]:
        return await fetch_health(self.health_port)

    def agent_died(self) -> str | None:
        """Why the agent process ended, in its own last words, or None while it runs."""
        if self.agent.process is not None and self.agent.process.returncode is not None:
            # The last line is the agent's reason (``kickstand-station: <path>: cannot
            # open…`` for a bad setting, a traceback's last line for a crash).
            tail = [line for line in self.agent.log_tail(8).splitlines() if line.strip()]
            reason = tail[-1].strip() if tail else "no output"
            return (f"the agent exited (status {self.agent.process.returncode}): {reason}; "
                    f"see the agent log {self.agent.log_path}")
        return None

    def check_serial_ports(self, s: StepContext, ports: dict[str, tuple[str, str]]) -> None:
        """Fail ``s`` now if a configured serial port is not on this bench PC.

        ``ports``: rig description key -> (path, the part behind it). Checked before the
        boot: an agent without its port would only be noticed after the boot timeout.
        """
        problems = []
        for key, (path, part) in ports.items():
            problem = serial_port_problem(path)
            if problem is not None:
                s.measure(key, f"{path} {problem}")
                problems.append(f"the serial port {path} of {part} {problem}: plug in "
                                f"{part}, or correct [agent] {key} in the rig description")
        if problems:
            s.fail("; ".join(problems))

    # ---------------------------------------------------------------- the cloud's view

    @property
    def births(self) -> list[Birth]:
        return self.bench.peer.view(self.device_id).births

    def mark(self) -> int:
        return self.bench.mark(self.device_id)

    def messages(self, start: int = 0) -> list[Received]:
        return self.bench.peer.view(self.device_id).messages[start:]

    def bodies(self, kind: type | tuple[type, ...], start: int = 0) -> list[Any]:
        return [r.body for r in self.messages(start) if isinstance(r.body, kind)]

    async def wait_body(
        self, kind: type | tuple[type, ...], within: float, start: int = 0,
        where: Callable[[Any], bool] = lambda b: True,
    ) -> Any:
        """The first ``kind`` body (from message index ``start``) satisfying ``where``."""
        received = await self.bench.peer.wait_for(
            self.device_id, lambda r: isinstance(r.body, kind) and where(r.body), within, start
        )
        return received.body

    async def wait_birth(self, count: int, within: float) -> Birth:
        """The ``count``-th birth; fails as soon as the agent process ends without it."""
        # The peer wakes only on messages: an agent that exits sends none, so its exit is
        # awaited beside the birth (else a dead agent costs the whole boot timeout).
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(
            self.bench.peer.wait_until(lambda: len(self.births) >= count, within))]
        if self.agent.process is not None:
            waiters.append(asyncio.ensure_future(self.agent.process.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        if len(self.births) >= count:
            return self.births[count - 1]
        died = self.agent_died()
        if died:
            raise StepFailed(died)
        raise StepFailed(f"no birth from {self.device_id} within {within:.0f} s: "
                         f"{self.link_trouble()}")

    def link_trouble(self) -> str:
        """Why the agent is not heard, from what its log says of its link (edge/core/link.py)."""
        log_path, broker = self.agent.log_path, self.bench.device_mqtt_url
        tls = self.agent.log_lines("link_tls_error")
        if tls:
            return (f"the broker at {broker} refused the device's certificate: check its "
                    f"certificate and key. Agent log ({log_path}): {logged(tls[-1])}")
        # link_down / link_error are the link's own; the MQTT client's errors (a reset,
        # a refused connection) come first, under the link's logger.
        down = [line for line in self.agent.log_lines("link_down", "kickstand.edge.core.link")
                if "link_down" in line or " ERROR " in line or " WARNING " in line]
        if down:
            return (f"the agent cannot reach the broker at {broker}: check the broker "
                    f"address and the network between them. Agent log ({log_path}): "
                    f"{logged(down[-1])}")
        if self.agent.log_lines("link_up"):
            return (f"the agent reached the broker at {broker} but the rig saw no birth: "
                    f"see the agent log ({log_path})")
        return (f"the agent runs but logged no connection to the broker at {broker}: see "
                f"the agent log ({log_path})\n{self.agent.log_tail(6)}")

    def latest_status(self, spot: int) -> Status | None:
        for body in reversed(self.bodies(Status)):
            if body.spot == spot:
                status: Status = body
                return status
        return None

    async def trigger(self, which: TriggerKind, spot: int = 0, within: float = 10.0) -> None:
        result = await self.bench.command(self.device_id, TriggerMessage(which, spot), within)
        expect_done(result, f"TriggerMessage {which.name}")

    async def fresh_birth(self, within: float = 10.0) -> Birth:
        """Ask for a new birth (its inventory read now) and return it."""
        count = len(self.births)
        await self.trigger(TriggerKind.BIRTH, within=within)
        return await self.wait_birth(count + 1, within)


def logged(line: str) -> str:
    """An agent log line without its time stamp, to quote in a fix item."""
    parts = line.split(" ", 3)
    return parts[3] if len(parts) == 4 and parts[2] in ("ERROR", "WARNING", "INFO") else line


def serial_port_problem(path: str) -> str | None:
    """What is wrong with ``path`` as a serial port on this PC, or None.

    Only device paths are judged; anything else (``none``, a typo without a slash) is
    left to the agent, whose own message then says what it makes of it.
    """
    if not path.startswith("/"):
        return None
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if not stat.S_ISCHR(mode):
        return "is not a serial device"
    return None


def expect_done(result: CommandResult, what: str) -> None:
    if result.status is not ResultStatus.DONE:
        reason = result.reason.name if result.reason is not None else "no reason"
        raise StepFailed(f"{what}: {result.status.name} ({reason}: {result.detail or ''})")


def describe_result(result: CommandResult) -> str:
    reason = result.reason.name if result.reason is not None else ""
    return f"{result.status.name} {reason} {result.detail or ''}".strip()
