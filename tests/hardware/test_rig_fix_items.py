"""Rig reports that point at the right fix: one fault, one fix item naming the part.

Tried as a technician would, with faults injected in the simulators: a dead spot board,
a latch that does not close, one that does not open, a board on old firmware, a dead
badge reader and the mains off in one station run (module-scoped: one run, read by every
test); a serial port that is not there and an agent that cannot start, which must fail at
once with the right headline instead of after the boot timeout; a broker out of reach.
"""

from __future__ import annotations

import asyncio
import io
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from kickstand.rigs.app import RigRun, run_rig
from kickstand.rigs.bench import Bench
from kickstand.rigs.config import StationRig, VehicleRig, load_rig, parse_rig
from kickstand.rigs.results import Outcome, RunReport
from kickstand.rigs.runner import Mode, SuiteRunner
from kickstand.rigs.station import (
    READER_ERROR,
    READER_UNAVAILABLE,
    StationFaults,
    StationSuite,
    start_simulated_station,
)
from kickstand.testing import MosquittoService

FAULTS = StationFaults(stuck_locks={1}, jammed_locks={2}, board_firmware={3: "sb-1.3.9"},
                       silent_boards={4}, dead_badge_reader=True, mains_off=True)


@dataclass(slots=True)
class FaultyRun:
    run: RigRun
    console: str

    @property
    def report(self) -> RunReport:
        return self.run.report

    @property
    def failed(self) -> dict[str, str]:
        return {s.id: s.message for s in self.report.failed}


@pytest.fixture(scope="module")
def faulty(mosquitto: MosquittoService, tmp_path_factory: pytest.TempPathFactory) -> FaultyRun:
    tmp = tmp_path_factory.mktemp("faulty-station")
    out = io.StringIO()
    rig = StationRig.simulated(spots=4).model_copy(update={"device_id": "st-rig02"})
    run = asyncio.run(run_rig(rig, simulated=True, broker_url=mosquitto.url,
                              reports_dir=tmp / "reports", faults=FAULTS,
                              console=Console(file=out, width=200)))
    return FaultyRun(run, out.getvalue())


def test_one_fault_one_fix_item(faulty: FaultyRun) -> None:
    assert set(faulty.failed) == {"spot1.lock_cycle", "spot2.lock_cycle", "spot3.firmware",
                                  "spot4.firmware", "badge", "power"}
    page = faulty.run.md_path.read_text()
    fixes = page.split("## What to fix", 1)[1].split("## Steps", 1)[0]
    assert len([line for line in fixes.splitlines() if line.startswith("- ")]) == 6
    cases = ET.parse(faulty.run.xml_path).getroot().iter("testcase")
    assert {c.get("name") for c in cases if c.find("failure") is not None} == set(faulty.failed)
    assert faulty.run.exit_code == 1
    # the other steps ran and passed: the faults did not spill over
    for step in ("boot", "spot3.lock_cycle", "temperature", "offline_queue",
                 "firmware_staging"):
        assert faulty.report.step(step).outcome is Outcome.PASSED, step


def test_mains_off_is_the_power_steps_fix_item_not_the_offline_queues(
    faulty: FaultyRun,
) -> None:
    assert "mains present False (expected True)" in faulty.failed["power"]
    offline = {m.name: m.value for m in faulty.report.step("offline_queue").measurements}
    assert offline["power cut"] == "not tried: the mains were already off"
    assert offline["UnlockExpired spot 3"] == 1 and offline["lost (seq gaps)"] == 0


def test_a_dead_spot_board_is_one_fix_item_naming_the_board(faulty: FaultyRun) -> None:
    message = faulty.failed["spot4.firmware"]
    assert "spot board 4" in message and "bus cable" in message and "no answer" in message
    assert not any("presence sensor" in m for m in faulty.failed.values())
    serial = faulty.report.step("spot4.vehicle_serial")
    assert serial.outcome is Outcome.SKIPPED and "spot board 4 does not answer" in serial.message
    temps = {m.name: m for m in faulty.report.step("temperature").measurements}
    assert temps["spot 4"].value is None and temps["spot 4"].ok is None  # said, not failed
    assert temps["spot 3"].ok is True


def test_the_badge_hint_claims_only_what_the_agent_log_shows(faulty: FaultyRun) -> None:
    message = faulty.failed["badge"]
    log = faulty.report.agent_log
    assert log is not None
    text = log.read_text()
    assert READER_ERROR not in text and READER_UNAVAILABLE not in text  # the reader opened
    assert "shows reader errors" not in message
    assert "logged no reader error" in message and str(log) in message
    assert "antenna" in message
    # from the agent's health snapshot: its peer gone, the reader still polls, hears nothing
    assert "polls (" in message and "no card answered (0 badge reads since" in message


def test_pass_lines_read_right(faulty: FaultyRun) -> None:
    for step in faulty.report.steps:
        if step.outcome is Outcome.PASSED:
            for m in step.measurements:
                text = m.value_text()
                assert not any(w in text for w in ("REJECTED", "FAILED", "TIMEOUT")), \
                    (step.id, m.name, text)
    # spot 2's latch never closed on the vehicle: it comes out, and the line says why
    release = {m.name: m.value for m in faulty.report.step("spot2.release").measurements}
    assert release == {"latch": "already open (it did not close)"}
    assert faulty.report.step("spot3.release").measurements[0].value == "DONE"


def test_a_latch_that_does_not_open_is_one_fix_item_that_frees_the_vehicle(
    faulty: FaultyRun,
) -> None:
    assert "solenoid" in faulty.failed["spot1.lock_cycle"]
    assert "free it by hand" in faulty.failed["spot1.lock_cycle"]
    release = faulty.report.step("spot1.release")
    assert release.outcome is Outcome.SKIPPED and "free it by hand" in release.message
    assert "lock did not close" in faulty.failed["spot2.lock_cycle"]
    assert "flash sb-1.4.2" in faulty.failed["spot3.firmware"]


def test_closing_lines_name_the_agent_log(faulty: FaultyRun) -> None:
    log = faulty.report.agent_log
    assert log is not None and log.exists() and "st-rig02" in log.read_text()
    closing = faulty.console.rstrip().splitlines()[-3:]
    assert closing[0] == f"report: {faulty.run.md_path}"
    assert closing[2] == f"agent log: {log}"
    assert faulty.run.md_path.read_text().rstrip().endswith(f"agent log: `{log}`")


# ---------------------------------------------------------------- no boot at all


@pytest.mark.parametrize(
    ("spot_bus", "expected"),
    [
        ("{tmp}/ttyUSB9", ["serial port {tmp}/ttyUSB9", "does not exist", "[agent] spot_bus"]),
        ("{tmp}/bench.toml", ["serial port {tmp}/bench.toml", "is not a serial device"]),
        # no device path: the agent itself refuses it and exits, its reason is the headline
        ("ttyUSB0", ["the agent exited (status 2)", "ttyUSB0: unknown serial path"]),
    ],
)
async def test_a_station_without_its_serial_port_fails_at_once_saying_so(
    mosquitto: MosquittoService, tmp_path: Path, spot_bus: str, expected: list[str],
) -> None:
    rig_file = tmp_path / "bench.toml"
    rig_file.write_text(f"""
kind = "station"
device_id = "st-rig05"
[agent]
spot_bus = "{spot_bus.format(tmp=tmp_path)}"
badge_reader = "none"
inputs = "none"
[expect]
spots = 2
""")
    rig = load_rig(rig_file)
    assert rig.limits.boot_timeout_s == 30.0  # the default a technician gets
    out = io.StringIO()
    started = time.monotonic()
    run = await run_rig(rig, unattended=True, broker_url=mosquitto.url, rig_path=rig_file,
                        reports_dir=tmp_path / "reports", console=Console(file=out, width=200))
    assert time.monotonic() - started < 10.0  # not the 30 s boot timeout
    assert [s.id for s in run.report.failed] == ["boot"]
    headline = run.report.failed[0].message
    for fragment in expected:
        assert fragment.format(tmp=tmp_path) in headline, headline
    assert "broker" not in headline
    closing = out.getvalue().rstrip().splitlines()[-1]
    log = run.report.agent_log
    assert log is not None
    assert closing == (f"agent log: {log}" if log.exists()
                       else "agent log: none (the agent was not started)")


async def test_a_vehicle_without_its_serial_ports_fails_at_once_naming_them(
    tmp_path: Path,
) -> None:
    rig = VehicleRig.simulated().model_copy(update={"agent": VehicleRig().agent.model_copy(
        update={"gps_port": str(tmp_path / "gps"), "lockbox_port": str(tmp_path / "lockbox"),
                "pinpad_port": "none", "motion_port": "none"})})
    started = time.monotonic()
    run = await run_rig(rig, unattended=True, reports_dir=tmp_path / "reports",
                        console=Console(file=io.StringIO(), width=200))
    assert time.monotonic() - started < 10.0
    assert [s.id for s in run.report.failed] == ["boot"]
    headline = run.report.failed[0].message
    assert f"{tmp_path / 'gps'} of the GPS does not exist" in headline
    assert f"{tmp_path / 'lockbox'} of the lock box does not exist" in headline
    assert "[agent] lockbox_port" in headline and "broker" not in headline


# ---------------------------------------------------------------- the badge hint, unit


@pytest.mark.parametrize(
    ("logged", "expected", "absent"),
    [
        ("2026-12-06 23:15:03,889 ERROR kickstand.edge.station.agent "
         "badge_reader_unavailable error=usb:072f:2200: no NFC reader at this path",
         ["could not open the badge reader (usb:072f:2200)", "plugged in",
          "no NFC reader at this path"], ["antenna"]),
        ("2026-12-06 23:15:03,889 WARNING kickstand.edge.transports.nfc "
         "nfc_error path=usb:072f:2200 error=[Errno 5] Input/output error",
         ["fails while polling (1 errors)", "Input/output error"], ["could not open"]),
        ("2026-12-06 23:15:03,892 INFO nfc.clf using SONY RC-S380 at usb:001:004",
         ["logged no reader error", "antenna"], ["could not open", "fails while"]),
    ],
)
def test_the_badge_hint_follows_the_agent_log(
    tmp_path: Path, logged: str, expected: list[str], absent: list[str],
) -> None:
    rig = parse_rig({"kind": "station", "agent": {"badge_reader": "usb:072f:2200"}})
    assert isinstance(rig, StationRig)
    report = RunReport("station", rig.device_id, rig.serial, datetime.now(UTC), False, False,
                       "bench.toml")
    runner = SuiteRunner(report, mode=Mode.INTERACTIVE, console=Console(file=io.StringIO()),
                         person_timeout_s=1)
    suite = StationSuite(rig, Bench(tmp_path), runner, tmp_path)
    suite.agent.log_path.write_text(f"---- start 1\n{logged}\n")
    message = suite.badge_missing_hint("usb:072f:2200")
    for fragment in expected:
        assert fragment in message, message
    for fragment in absent:
        assert fragment not in message, message
    assert str(suite.agent.log_path) in message


_POLLING = {"state": "polling", "polls": 57, "reads": 2, "errors": 0, "last_poll_age_s": 0.4,
            "last_read_age_s": 80.2, "last_error_age_s": None, "last_error": None}


@pytest.mark.parametrize(
    ("liveness", "expected", "absent"),
    [
        (_POLLING, ["polls (57 rounds, the last 0.4 s ago)", "no card answered",
                    "2 badge reads since the agent started, the last 80.2 s ago", "antenna"],
         ["fails while", "stopped polling"]),
        ({**_POLLING, "state": "stalled", "last_poll_age_s": 42.0},
         ["stopped polling (its last round 42.0 s ago, stalled)", "plug it back"],
         ["no card answered", "fails while"]),
        # the log holds one line a minute: the count is the agent's
        ({**_POLLING, "errors": 7, "last_error": "[Errno 5] Input/output error"},
         ["fails while polling (7 errors)", "last error: [Errno 5] Input/output error"],
         ["no card answered"]),
    ],
)
def test_the_badge_hint_follows_the_readers_liveness(
    tmp_path: Path, liveness: dict[str, object], expected: list[str], absent: list[str],
) -> None:
    rig = parse_rig({"kind": "station", "agent": {"badge_reader": "usb:072f:2200"}})
    assert isinstance(rig, StationRig)
    report = RunReport("station", rig.device_id, rig.serial, datetime.now(UTC), False, False,
                       "bench.toml")
    runner = SuiteRunner(report, mode=Mode.INTERACTIVE, console=Console(file=io.StringIO()),
                         person_timeout_s=1)
    suite = StationSuite(rig, Bench(tmp_path), runner, tmp_path)
    suite.agent.log_path.write_text("---- start 1\n")
    message = suite.badge_missing_hint("usb:072f:2200", liveness)
    for fragment in expected:
        assert fragment in message, message
    for fragment in absent:
        assert fragment not in message, message


async def test_an_agent_that_cannot_reach_the_broker_is_told_with_the_address(
    mosquitto: MosquittoService, tmp_path: Path,
) -> None:
    rig = StationRig.simulated(spots=1).model_copy(update={"device_id": "st-rig06"})
    rig = rig.model_copy(update={"limits": rig.limits.model_copy(update={"boot_timeout_s": 4.0})})
    report = RunReport("station", rig.device_id, rig.serial, datetime.now(UTC), True, False,
                       "simulated")
    runner = SuiteRunner(report, mode=Mode.SIMULATED, console=Console(file=io.StringIO()),
                         person_timeout_s=1)
    sim = await start_simulated_station(rig, tmp_path, None)
    try:
        async with Bench(tmp_path, mosquitto.url) as bench:
            suite = StationSuite(rig, bench, runner, tmp_path, sim)
            suite.configure_agent()
            bench.cut_link()  # the device side of the rig's broker refuses connections
            broker = bench.device_mqtt_url
            try:
                step = await runner.step("boot", "boot", suite.step_boot, timeout_s=10)
            finally:
                await suite.agent.stop()
    finally:
        await sim.stop()
    assert step.outcome is Outcome.FAILED
    assert f"cannot reach the broker at {broker}" in step.message, step.message
    assert "Agent log" in step.message and "st-rig06" in step.message, step.message


@pytest.mark.parametrize(
    ("logged", "expected"),
    [
        ("2026-12-06 23:15:03,889 WARNING kickstand.edge.core.link link_tls_error "
         "device=st-0001 reason=refused error=the broker refused the TLS handshake",
         "refused the device's certificate: check its certificate and key"),
        ("2026-12-06 23:15:03,889 INFO kickstand.edge.core.link link_down device=st-0001 "
         "error=[Errno 111] Connection refused", "cannot reach the broker at mqtt://"),
        ("2026-12-06 23:15:03,889 INFO kickstand.edge.core.link link_up device=st-0001 "
         "boot_id=3", "reached the broker at mqtt://"),
    ],
)
def test_the_boot_hint_follows_what_the_agent_logged_of_its_link(
    tmp_path: Path, logged: str, expected: str,
) -> None:
    from kickstand.simulators.station.proxy import LinkProxy

    rig = StationRig()
    report = RunReport("station", rig.device_id, rig.serial, datetime.now(UTC), False, False,
                       "bench.toml")
    runner = SuiteRunner(report, mode=Mode.INTERACTIVE, console=Console(file=io.StringIO()),
                         person_timeout_s=1)
    bench = Bench(tmp_path)
    bench.proxy = LinkProxy("127.0.0.1", 1883, port=18830)  # not started: only its address
    suite = StationSuite(rig, bench, runner, tmp_path)
    suite.agent.log_path.write_text(f"---- start 1\n{logged}\n")
    message = suite.link_trouble()
    assert expected in message and str(suite.agent.log_path) in message, message
