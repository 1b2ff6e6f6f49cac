"""A simulated station (hardware only) and a station rig (hardware + the real agent).

    sim = SimulatedStation("st-0001", spots=8, workdir=tmp)      # pty bus, NFC, inputs
    await sim.start()
    settings = sim.agent_settings(mqtt_url="mqtt://127.0.0.1:1883", command_keys=[pub_hex])
    # ... run the real agent (in-process or `python -m kickstand.edge.station --config`)

    async with StationRig("st-0001", broker_host, broker_port, command_keys=[pub_hex],
                          workdir=tmp, spots=4) as rig:     # sim + proxy + real agent
        rig.sim.dock(1, "AB1234"); rig.cut_link(); rig.sim.present_badge(uid)
        await rig.restart_agent()
"""

from __future__ import annotations

import asyncio
import logging
import tomllib
from pathlib import Path
from typing import Any

from kickstand.edge.station import StationAgent, StationSettings
from kickstand.simulators.nfc import BadgeTagPeer
from kickstand.simulators.spotboard import SpotBoard, SpotBusSim
from kickstand.simulators.station.inputs import InputsSim
from kickstand.simulators.station.proxy import LinkProxy

log = logging.getLogger("kickstand.simulators.station")

# Test-friendly timings: the real defaults poll idle spots once a second.
FAST: dict[str, Any] = {
    "poll_interval_s": 0.1,
    "active_poll_interval_s": 0.05,
    "response_timeout_s": 0.2,
    "board_retry_min_s": 0.2,
    "board_retry_max_s": 1.0,
    "inputs_interval_s": 0.1,
    "reconnect_min_s": 0.1,
    "reconnect_max_s": 0.5,
    "boot_timeout_s": 2.0,
    "connect_timeout_s": 1.0,
    "queue_synchronous": "NORMAL",
}


class SimulatedStation:
    """The station's hardware at the wire: spot boards on a pty, an NFC badge, inputs."""

    def __init__(
        self,
        device_id: str,
        spots: int = 8,
        *,
        workdir: Path,
        nfc: bool = True,
        board_firmware: str = "sb-1.4.2",
        actuation_s: float = 0.0,
    ) -> None:
        self.device_id = device_id
        self.workdir = Path(workdir)
        self.bus = SpotBusSim()
        for addr in range(1, spots + 1):
            self.bus.add_board(
                SpotBoard(addr, firmware=board_firmware, actuation_s=actuation_s)
            )
        self.badge = BadgeTagPeer() if nfc else None
        self.inputs = InputsSim(self.workdir / "inputs")

    @property
    def boards(self) -> dict[int, SpotBoard]:
        return self.bus.boards

    async def start(self) -> None:
        await self.bus.start()
        if self.badge is not None:
            await self.badge.start()

    async def stop(self) -> None:
        await self.bus.stop()
        if self.badge is not None:
            await self.badge.stop()

    def agent_config(
        self, mqtt_url: str, command_keys: list[str], **overrides: Any
    ) -> dict[str, Any]:
        config: dict[str, Any] = {
            "device_id": self.device_id,
            "mqtt_url": mqtt_url,
            "command_keys": list(command_keys),
            "state_dir": str(self.workdir / "state"),
            "spots": len(self.bus.boards),
            "spot_bus": self.bus.slave_path,
            "badge_reader": self.badge.path if self.badge else "none",
            "inputs": self.inputs.path,
        }
        config.update(overrides)
        return config

    def agent_settings(
        self, mqtt_url: str, command_keys: list[str], **overrides: Any
    ) -> StationSettings:
        return StationSettings.load(None, **self.agent_config(mqtt_url, command_keys, **overrides))

    def write_config(self, path: Path, mqtt_url: str, command_keys: list[str],
                     **overrides: Any) -> Path:
        """A TOML file for ``python -m kickstand.edge.station --config``."""
        config = self.agent_config(mqtt_url, command_keys, **overrides)
        lines = [f"{k} = {_toml(v)}" for k, v in config.items() if v is not None]
        path.write_text("\n".join(lines) + "\n")
        tomllib.loads(path.read_text())  # fail here, not in the agent
        return path

    # ---------------------------------------------------------------- scenario

    def dock(self, spot: int, serial_number: str) -> None:
        self.boards[spot].dock(serial_number)

    def take(self, spot: int) -> str | None:
        return self.boards[spot].take()

    def force_take(self, spot: int) -> str | None:
        return self.boards[spot].force_take()

    def present_badge(self, uid: bytes, duration_s: float | None = 2.5) -> None:
        if self.badge is None:
            raise RuntimeError("this simulated station has no NFC reader")
        self.badge.present(uid, duration_s)

    def cut_power(self) -> None:
        self.inputs.power(False)

    def restore_power(self) -> None:
        self.inputs.power(True)

    def trigger_alarm(self, reason: str = "cabinet open") -> None:
        self.inputs.alarm(True, reason)

    def clear_alarm(self) -> None:
        self.inputs.alarm(False)

    def overheat(self, spot: int, celsius: float = 75.0) -> None:
        self.boards[spot].temperature_c = celsius

    def cool(self, spot: int, celsius: float = 21.0) -> None:
        self.boards[spot].temperature_c = celsius

    def silence(self, spot: int, silent: bool = True) -> None:
        self.boards[spot].silent = silent

    def corrupt(self, spot: int, responses: int = 3) -> None:
        self.boards[spot].corrupt_next = responses

    def flood(self, nbytes: int = 512) -> None:
        self.bus.flood(nbytes)

    def set_board_firmware(self, spot: int, version: str) -> None:
        self.boards[spot].firmware = version

    def jam_lock(self, spot: int, jammed: bool = True) -> None:
        self.boards[spot].lock_wont_close = jammed

    def unreadable_serial(self, spot: int, unreadable: bool = True) -> None:
        self.boards[spot].serial_unreadable = unreadable

    def stick_lock(self, spot: int, stuck: bool = True) -> None:
        """The latch takes UNLOCK but never releases (a seized latch, a dead solenoid)."""
        self.boards[spot].lock_wont_open = stuck

    def set_actuation(self, seconds: float, spot: int | None = None) -> None:
        """How long latches take to open after UNLOCK (one spot, or all)."""
        for board in self.boards.values() if spot is None else [self.boards[spot]]:
            board.actuation_s = seconds

    def latch_events(self) -> list[tuple[float, int, str]]:
        """Every board's latch log merged: (time.monotonic(), spot, event), oldest first."""
        return sorted(
            (t, b.addr, event) for b in self.boards.values() for t, event in b.latch_log
        )

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "spot": b.addr,
                "lock": b.lock.name,
                "vehicle": b.serial_number if b.vehicle_present else None,
                "temperature_c": b.temperature_c,
                "firmware": b.firmware,
                "silent": b.silent,
                "lock_wont_close": b.lock_wont_close,
                "lock_wont_open": b.lock_wont_open,
                "actuation_s": b.actuation_s,
            }
            for b in self.boards.values()
        ]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


class StationRig:
    """A simulated station, a cuttable link (TCP proxy) and the real agent, in-process."""

    def __init__(
        self,
        device_id: str,
        broker_host: str,
        broker_port: int,
        *,
        command_keys: list[str],
        workdir: Path,
        spots: int = 4,
        nfc: bool = True,
        proxy: bool = True,
        fast: bool = True,
        actuation_s: float = 0.0,
        tls: bool = False,
        **overrides: Any,
    ) -> None:
        """``tls``: the agent speaks ``mqtts://`` (its certificate in ``overrides``:
        ``mqtt_ca_file``, ``mqtt_cert_file``, ``mqtt_key_file``); the broker's certificate
        must then name the host the agent dials (the proxy's 127.0.0.1, or the broker's
        host without a proxy)."""
        self.sim = SimulatedStation(
            device_id, spots, workdir=workdir, nfc=nfc, actuation_s=actuation_s
        )
        self.broker_host, self.broker_port = broker_host, broker_port
        self.tls = tls
        self.proxy = LinkProxy(broker_host, broker_port) if proxy else None
        self.command_keys = command_keys
        self.overrides = {**(FAST if fast else {}), **overrides}
        self.agent: StationAgent | None = None
        self._task: asyncio.Task[str] | None = None

    @property
    def device_id(self) -> str:
        return self.sim.device_id

    @property
    def mqtt_url(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        if self.proxy is not None:
            return f"{scheme}://{self.proxy.host}:{self.proxy.port}"
        return f"{scheme}://{self.broker_host}:{self.broker_port}"

    async def __aenter__(self) -> StationRig:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        await self.sim.start()
        if self.proxy is not None:
            await self.proxy.start()
        await self.start_agent()

    async def start_agent(self) -> StationAgent:
        self.agent = self._new_agent()
        self._task = asyncio.create_task(self._supervise(), name=f"agent-{self.device_id}")
        return self.agent

    def _new_agent(self) -> StationAgent:
        settings = self.sim.agent_settings(self.mqtt_url, self.command_keys, **self.overrides)
        return StationAgent(settings)

    async def _supervise(self) -> str:
        """What the mainboard's process supervisor does (the agent's __main__ re-executes
        itself): an agent that ends with "reboot" (a Reboot command) starts again, a new
        boot with the same settings and state directory. Ends as the last agent did."""
        assert self.agent is not None
        while (result := await self.agent.run()) == "reboot":
            log.info("agent_rebooting device=%s", self.device_id)
            self.agent = self._new_agent()
        return result

    async def stop_agent(self) -> None:
        if self.agent is not None and self._task is not None:
            self.agent.stop()
            done, _ = await asyncio.wait({self._task}, timeout=10)
            if not done:
                log.error("agent_stop_timeout device=%s", self.device_id)
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=5)
            self._task = None

    async def restart_agent(self) -> StationAgent:
        await self.stop_agent()
        return await self.start_agent()

    async def stop(self) -> None:
        await self.stop_agent()
        if self.proxy is not None:
            await self.proxy.stop()
        await self.sim.stop()

    def cut_link(self) -> None:
        if self.proxy is None:
            raise RuntimeError("rig started without a proxy")
        self.proxy.cut()

    def stall_link(self) -> None:
        """The link goes quiet without a reset: the cloud hears nothing, no Will yet."""
        if self.proxy is None:
            raise RuntimeError("rig started without a proxy")
        self.proxy.stall()

    def restore_link(self) -> None:
        if self.proxy is None:
            raise RuntimeError("rig started without a proxy")
        self.proxy.restore()

    async def accepted(self, within: float = 10.0) -> None:
        """Wait until the agent's birth was accepted by the cloud."""
        assert self.agent is not None
        await asyncio.wait_for(self.agent.link.accepted.wait(), within)
