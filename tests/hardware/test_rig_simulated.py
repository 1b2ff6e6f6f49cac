"""The rig suites against the simulators, with the production agents as child processes.

The station runs go through the harness's Mosquitto (the rig plays the cloud there); the
vehicle run goes through the command line as a technician runs it, with the rig's own
in-process broker. Faults injected in the simulators must fail exactly their steps, with
a message a technician can act on, and the report files must say so (the station's:
test_rig_fix_items.py).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from kickstand.rigs.__main__ import main
from kickstand.rigs.app import RigRun, run_rig
from kickstand.rigs.config import StationRig, VehicleRig
from kickstand.rigs.results import Outcome
from kickstand.rigs.vehicle import VehicleFaults
from kickstand.testing import MosquittoService


def _console(tmp_path: Path) -> Console:
    return Console(file=(tmp_path / "console.txt").open("w"), width=120)


def _junit(run: RigRun) -> dict[str, str]:
    """step id -> "pass" / "fail" / "skip" as the JUnit file says."""
    root = ET.parse(run.xml_path).getroot()
    out = {}
    for case in root.iter("testcase"):
        name = case.get("name") or ""
        out[name] = "fail" if case.find("failure") is not None else (
            "skip" if case.find("skipped") is not None else "pass")
    return out


def _station(device_id: str) -> StationRig:
    return StationRig.simulated(spots=3).model_copy(update={"device_id": device_id})


async def test_station_suite_passes_on_the_simulators(
    mosquitto: MosquittoService, tmp_path: Path
) -> None:
    run = await run_rig(_station("st-rig01"), simulated=True, broker_url=mosquitto.url,
                        reports_dir=tmp_path / "reports", console=_console(tmp_path))
    failed = {s.id: s.message for s in run.report.failed}
    assert failed == {}
    ids = [s.id for s in run.report.steps]
    assert ids[:4] == ["boot", "spot1.firmware", "spot2.firmware", "spot3.firmware"]
    assert {"spot3.lock_cycle", "badge", "temperature", "power", "offline_queue",
            "firmware_staging"} <= set(ids)
    assert all(s.outcome is Outcome.PASSED for s in run.report.steps)
    offline = run.report.step("offline_queue")
    values = {m.name: m.value for m in offline.measurements}
    assert values["UnlockExpired spot 3"] == 1 and values["PowerCut"] == 1
    assert values["lost (seq gaps)"] == 0 and values["in queue order"] is True
    staged = {m.name: m.value for m in run.report.step("firmware_staging").measurements}
    assert staged["GET_INFO reports"] == "sb-1.4.3"
    cycle = {m.name: m for m in run.report.step("spot2.lock_cycle").measurements}["cycle"]
    assert cycle.ok and cycle.limit == "<= 3 s"
    assert run.exit_code == 0
    assert run.xml_path.name.startswith("st-rig01_") and run.md_path.exists()
    assert set(_junit(run).values()) == {"pass"}
    assert run.report.agent_log is not None and "st-rig01" in run.report.agent_log.read_text()


def test_vehicle_suite_passes_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["vehicle", "--simulated"]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and "report: reports/BK123456_" in out
    xml = sorted((tmp_path / "reports").glob("BK123456_*.xml"))
    assert len(xml) == 1 and xml[0].with_suffix(".md").exists()
    root = ET.parse(xml[0]).getroot()
    names = [c.get("name") for c in root.iter("testcase")]
    assert names == ["boot", "lockbox.firmware", "gps", "lock_cycle", "chain", "battery",
                     "nfc", "pinpad", "motion", "speed_limit"]
    assert root.find("testsuite").get("failures") == "0"  # type: ignore[union-attr]


async def test_vehicle_faults_fail_exactly_their_steps(
    mosquitto: MosquittoService, tmp_path: Path
) -> None:
    rig = VehicleRig.simulated().model_copy(update={"serial_number": "RG000002"})
    run = await run_rig(rig, simulated=True, broker_url=mosquitto.url,
                        reports_dir=tmp_path / "reports", console=_console(tmp_path),
                        faults=VehicleFaults(gps_bad_checksums=True, jammed_lock=True))
    failed = {s.id: s.message for s in run.report.failed}
    assert set(failed) == {"gps", "lock_cycle"}
    assert "checksum error rate" in failed["gps"] and "baud rate" in failed["gps"]
    assert "jammed" in failed["lock_cycle"] and "motor" in failed["lock_cycle"]
    assert run.report.step("chain").outcome is Outcome.SKIPPED  # needs a working lock
    assert _junit(run)["battery"] == "pass" and _junit(run)["pinpad"] == "pass"
    assert run.exit_code == 1
