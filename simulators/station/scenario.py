"""Scenario control of a simulated station: one text command per line.

Used by the CLI (stdin and the ``--control-port`` socket) and usable from code:

    ctl = ScenarioController(sim, rig)
    await ctl.execute("dock 3 AB1234")      # -> "ok"

Commands::

    dock SPOT SERIAL          take SPOT              force-take SPOT
    badge UIDHEX [SECONDS]    power off|on           alarm on [REASON] | alarm off
    overheat SPOT [CELSIUS]   cool SPOT              silence SPOT [off]
    crc SPOT [RESPONSES]      flood [BYTES]          firmware SPOT VERSION
    jam SPOT [off]            unreadable SPOT [off]  link cut|restore
    stuck SPOT [off]          actuation SECONDS [SPOT]
    status                    help
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shlex
import textwrap
from typing import Any

from kickstand.simulators.spotboard import SimError
from kickstand.simulators.station.sim import SimulatedStation, StationRig

log = logging.getLogger("kickstand.simulators.station.scenario")

HELP = textwrap.dedent(__doc__.split("Commands::", 1)[1]).strip() if __doc__ else ""


class ScenarioError(Exception):
    pass


class ScenarioController:
    def __init__(self, sim: SimulatedStation, rig: StationRig | None = None) -> None:
        self.sim = sim
        self.rig = rig

    def _spot(self, text: str) -> int:
        try:
            spot = int(text)
        except ValueError:
            raise ScenarioError(f"spot {text!r} is not a number") from None
        if spot not in self.sim.boards:
            raise ScenarioError(f"no spot {spot} (1..{len(self.sim.boards)})")
        return spot

    async def execute(self, line: str) -> str:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            return f"error: {exc}"
        if not words:
            return ""
        try:
            return self._run(words[0].lower(), words[1:])
        except (ScenarioError, SimError, ValueError, IndexError, RuntimeError) as exc:
            return f"error: {exc}"

    def _run(self, cmd: str, args: list[str]) -> str:
        sim = self.sim
        off = len(args) > 1 and args[1].lower() in ("off", "0", "false", "no")
        if cmd == "help":
            return HELP
        if cmd == "status":
            data: dict[str, Any] = {"spots": sim.describe()}
            if self.rig is not None and self.rig.agent is not None:
                data["agent"] = self.rig.agent.snapshot()
            return json.dumps(data, default=str)
        if cmd == "dock":
            sim.dock(self._spot(args[0]), args[1])
        elif cmd == "take":
            return f"ok {sim.take(self._spot(args[0]))}"
        elif cmd == "force-take":
            return f"ok {sim.force_take(self._spot(args[0]))}"
        elif cmd == "badge":
            uid = bytes.fromhex(args[0])
            sim.present_badge(uid, float(args[1]) if len(args) > 1 else 2.5)
        elif cmd == "power":
            if args[0] == "off":
                sim.cut_power()
            else:
                sim.restore_power()
        elif cmd == "alarm":
            if args[0] == "on":
                sim.trigger_alarm(" ".join(args[1:]) or "cabinet open")
            else:
                sim.clear_alarm()
        elif cmd == "overheat":
            sim.overheat(self._spot(args[0]), float(args[1]) if len(args) > 1 else 75.0)
        elif cmd == "cool":
            sim.cool(self._spot(args[0]))
        elif cmd == "silence":
            sim.silence(self._spot(args[0]), not off)
        elif cmd == "crc":
            sim.corrupt(self._spot(args[0]), int(args[1]) if len(args) > 1 else 3)
        elif cmd == "flood":
            sim.flood(int(args[0]) if args else 512)
        elif cmd == "firmware":
            sim.set_board_firmware(self._spot(args[0]), args[1])
        elif cmd == "jam":
            sim.jam_lock(self._spot(args[0]), not off)
        elif cmd == "stuck":
            sim.stick_lock(self._spot(args[0]), not off)
        elif cmd == "actuation":
            sim.set_actuation(float(args[0]), self._spot(args[1]) if len(args) > 1 else None)
        elif cmd == "unreadable":
            sim.unreadable_serial(self._spot(args[0]), not off)
        elif cmd == "link":
            if self.rig is None:
                raise ScenarioError("no agent link in this process")
            if args[0] == "cut":
                self.rig.cut_link()
            else:
                self.rig.restore_link()
        else:
            raise ScenarioError(f"unknown command {cmd!r} (try help)")
        return "ok"


class ControlServer:
    """Line-based TCP control (127.0.0.1 only): one command per line; each answer is its
    lines (the second and later indented by two spaces) followed by an empty line."""

    def __init__(self, controllers: dict[str, ScenarioController], port: int = 0) -> None:
        self.controllers = controllers
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def execute(self, line: str) -> str:
        """``[st-0002] command``: the device id may be omitted when there is one station."""
        words = line.strip().split(maxsplit=1)
        if words and words[0].lower() == "help" and len(self.controllers) > 1:
            names = ", ".join(self.controllers)
            return f"name the station first ({names}), then one of:\n{HELP}"
        if words and words[0] in self.controllers:
            ctl = self.controllers[words[0]]
            line = words[1] if len(words) > 1 else ""
        elif len(self.controllers) == 1:
            ctl = next(iter(self.controllers.values()))
        else:
            return "error: name the station first (e.g. st-0001 dock 3 AB1234)"
        return await ctl.execute(line)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                answer = await self.execute(line.decode("utf-8", "replace"))
                lines = answer.replace("\n", "\n  ") + "\n" if answer else ""
                writer.write((lines + "\n").encode())
                await writer.drain()
        except (OSError, ValueError) as exc:
            log.debug("control_client_error error=%s", exc)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def send_control(port: int, line: str, host: str = "127.0.0.1") -> str:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(line.strip().encode() + b"\n")
        await writer.drain()
        lines: list[str] = []
        while line := (await reader.readline()).decode().rstrip("\n"):
            lines.append(line.removeprefix("  ") if lines else line)
        return "\n".join(lines)
    finally:
        writer.close()
