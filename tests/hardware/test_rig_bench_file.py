"""A rig description file, as on a real bench, pointed at simulated hardware's ports.

Nothing tells the rig it is simulated: it reads the ports from the file, runs the agent
on them and, unattended, skips every step that needs a person with the reason.
"""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from kickstand.rigs.app import run_rig
from kickstand.rigs.config import load_rig
from kickstand.rigs.results import Outcome
from kickstand.simulators.spotboard import firmware_image
from kickstand.simulators.station.sim import SimulatedStation
from kickstand.testing import MosquittoService


async def test_station_rig_file_unattended(mosquitto: MosquittoService, tmp_path: Path) -> None:
    sim = SimulatedStation("st-rig03", 2, workdir=tmp_path / "hardware")
    await sim.start()
    try:
        sim.dock(1, "TV000009")  # already in spot 1; spot 2 stays empty
        (tmp_path / "images").mkdir()
        (tmp_path / "images" / "sb-1.4.3.bin").write_bytes(firmware_image("sb-1.4.3"))
        assert sim.badge is not None
        rig_file = tmp_path / "bench.toml"
        rig_file.write_text(f"""
kind = "station"
device_id = "st-rig03"
[agent]
spot_bus = "{sim.bus.slave_path}"
badge_reader = "{sim.badge.path}"
inputs = "{sim.inputs.path}"
extra = {{ response_timeout_s = 0.2 }}
[expect]
spots = 2
[test]
vehicle_serial = "TV000009"
[limits]
lock_cycle_s = 2.0
offline_window_s = 1
boot_timeout_s = 20.0
[firmware]
image = "images/sb-1.4.3.bin"
version = "sb-1.4.3"
spot = 1
""")
        rig = load_rig(rig_file)
        run = await run_rig(rig, unattended=True, broker_url=mosquitto.url,
                            reports_dir=tmp_path / "reports", rig_path=rig_file,
                            console=Console(file=io.StringIO(), width=120))
    finally:
        await sim.stop()
    outcome = {s.id: s.outcome for s in run.report.steps}
    skipped = {s.id: s.message for s in run.report.steps if s.outcome is Outcome.SKIPPED}
    # the test vehicle stays in spot 1 (nobody takes it out): the power cut test uses it
    assert set(skipped) == {"spot1.release", "spot2.vehicle_serial", "spot2.lock_cycle",
                            "badge"}
    assert "needs a person" in skipped["badge"] and "--unattended" in skipped["badge"]
    assert "did not pass" in skipped["spot2.lock_cycle"]
    assert run.report.failed == []
    for step in ("boot", "spot1.vehicle_serial", "spot1.lock_cycle", "temperature", "power",
                 "offline_queue", "firmware_staging"):
        assert outcome[step] is Outcome.PASSED, step
    assert sim.boards[1].firmware == "sb-1.4.3"  # the image really reached the board
    assert run.exit_code == 0
    assert "unattended" in run.md_path.read_text() and str(rig_file) in run.md_path.read_text()
