"""Scenario control (code and socket) and the simulators' command line dispatch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kickstand.protocol.spotbus import BusLock
from kickstand.simulators.__main__ import main as sim_main
from kickstand.simulators.station.fleet import vehicle_serials
from kickstand.simulators.station.scenario import ControlServer, ScenarioController, send_control
from kickstand.simulators.station.sim import SimulatedStation


async def test_scenario_commands(tmp_path: Path) -> None:
    sim = SimulatedStation("st-sc0001", 3, workdir=tmp_path, nfc=True)
    await sim.start()
    ctl = ScenarioController(sim)
    server = ControlServer({"st-sc0001": ctl})
    await server.start()
    try:
        assert await ctl.execute("dock 2 AB1234") == "ok"
        assert sim.boards[2].lock is BusLock.LOCKED
        assert (await ctl.execute("take 2")).startswith("error")  # locked
        assert await send_control(server.port, "st-sc0001 overheat 1 80") == "ok"
        assert sim.boards[1].temperature_c == 80
        assert await send_control(server.port, "silence 3") == "ok"
        assert sim.boards[3].silent
        assert await ctl.execute("silence 3 off") == "ok" and not sim.boards[3].silent
        assert await ctl.execute("stuck 1") == "ok" and sim.boards[1].lock_wont_open
        assert await ctl.execute("stuck 1 off") == "ok" and not sim.boards[1].lock_wont_open
        assert await ctl.execute("actuation 0.2 3") == "ok"
        assert [b.actuation_s for b in sim.boards.values()] == [0.0, 0.0, 0.2]
        assert await ctl.execute("actuation 0.05") == "ok"
        assert {b.actuation_s for b in sim.boards.values()} == {0.05}
        assert await ctl.execute("power off") == "ok"
        assert (tmp_path / "inputs" / "power_present").read_text().strip() == "0"
        assert await ctl.execute("badge 04a1b2c3 1") == "ok"
        assert (await ctl.execute("badge zz")).startswith("error")
        assert (await ctl.execute("dock 9 X")).startswith("error: no spot 9")
        assert (await ctl.execute("link cut")).startswith("error")  # no agent here
        assert (await ctl.execute("fly away")).startswith("error: unknown command")
        status = json.loads(await ctl.execute("status"))
        assert status["spots"][1]["vehicle"] == "AB1234"
    finally:
        await server.stop()
        await sim.stop()


def test_dispatch_and_help() -> None:
    assert sim_main(["--help"]) == 0
    assert sim_main(["nonsense"]) == 2
    out = subprocess.run(
        [sys.executable, "-m", "kickstand.simulators", "station", "--help"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert out.returncode == 0 and "station" in out.stdout


def test_fleet_vehicle_serials_follow_the_seed() -> None:
    assert vehicle_serials(3) == ["LY0001", "LY0002", "LY0003"]
    assert vehicle_serials(18)[12:] == ["LYF001", "LYF002", "LYF003", "LYF004", "LYS0001",
                                        "LYS0002"]
