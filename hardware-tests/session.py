"""What both suites share: the bench, the agent process, waiting for what the agent reports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kickstand.edge.core.config import read_config_file
from kickstand.protocol.v1.enums import ResultStatus, TriggerKind
from kickstand.protocol.v1.messages import Birth, CommandResult, Status, TriggerMessage
from kickstand.rigs.bench import AgentProcess, Bench, fetch_health, free_port, write_toml
from kickstand.rigs.errors import RigConfigError, StepFailed
from kickstand.simulators.station.cloudpeer import Received

# Bench timings: quick polling so a lock cycle is measured, not the agent's idle cadence.
BENCH_TIMINGS: dict[str, Any] = {
    "reconnect_min_s": 0.1,
    "reconnect_max_s": 0.5,
    "boot_timeout_s": 2.0,
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
        if self.agent.process is not None and self.agent.process.returncode is not None:
            return (f"the agent exited (status {self.agent.process.returncode}); "
                    f"log {self.agent.log_path}:\n{self.agent.log_tail(8)}")
        return None

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
        peer = self.bench.peer
        try:
            await peer.wait_until(lambda: len(self.births) >= count or
                                  self.agent_died() is not None, within)
        except TimeoutError:
            raise StepFailed(
                f"no birth from {self.device_id} within {within:.0f} s: the agent did not "
                f"reach the rig's broker; see {self.agent.log_path}\n{self.agent.log_tail(6)}"
            ) from None
        died = self.agent_died()
        if died and len(self.births) < count:
            raise StepFailed(died)
        return self.births[count - 1]

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


def expect_done(result: CommandResult, what: str) -> None:
    if result.status is not ResultStatus.DONE:
        reason = result.reason.name if result.reason is not None else "no reason"
        raise StepFailed(f"{what}: {result.status.name} ({reason}: {result.detail or ''})")


def describe_result(result: CommandResult) -> str:
    reason = result.reason.name if result.reason is not None else ""
    return f"{result.status.name} {reason} {result.detail or ''}".strip()
