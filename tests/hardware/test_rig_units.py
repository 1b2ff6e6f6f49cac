"""Rig pieces without a broker: rig descriptions, reports, prompts, fault options."""

from __future__ import annotations

import asyncio
import io
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from kickstand.rigs.__main__ import main, parse_faults
from kickstand.rigs.config import StationRig, VehicleRig, load_rig, parse_rig
from kickstand.rigs.errors import RigConfigError
from kickstand.rigs.report import junit_xml, markdown, write_reports
from kickstand.rigs.results import Measurement, Outcome, RunReport, StepResult
from kickstand.rigs.runner import Mode, StepContext, SuiteRunner
from kickstand.rigs.station import StationFaults

EXAMPLES = Path(__file__).resolve().parents[2] / "hardware-tests" / "examples"


def test_examples_parse_and_resolve_paths() -> None:
    station = load_rig(EXAMPLES / "station.toml")
    assert isinstance(station, StationRig)
    assert station.expect.spots == 8 and station.limits.lock_cycle_s == 3.0
    assert station.firmware.image == EXAMPLES / "images" / "sb-1.4.3.bin"
    vehicle = load_rig(EXAMPLES / "vehicle.toml")
    assert isinstance(vehicle, VehicleRig)
    assert vehicle.device_id == "vh-BK123456" and vehicle.test.pin_code == "2468"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"kind": "dock"}, 'kind must be "station" or "vehicle"'),
        ({"kind": "station", "limits": {"power_w": [150, 5]}}, "limits.power_w"),
        ({"kind": "station", "spot_count": 4}, "spot_count: Extra inputs"),
        ({"kind": "station", "test": {"badge_uid": "zz"}}, "test.badge_uid"),
        ({"kind": "station", "device_id": "station one"}, "device_id"),
        ({"kind": "station", "expect": {"spots": 2}, "firmware": {"spot": 3}}, "firmware.spot 3"),
        ({"kind": "vehicle", "serial_number": "X1"}, "serial_number"),
        ({"kind": "vehicle", "test": {"pin_code": "12"}}, "pin_code"),
    ],
)
def test_bad_rig_descriptions_are_refused_with_the_key(data: dict, fragment: str) -> None:
    with pytest.raises(RigConfigError) as info:
        parse_rig(data, Path("bench.toml"))
    assert fragment in str(info.value) and "bench.toml" in str(info.value)


def test_unreadable_rig_file_exit_status_2(tmp_path: Path) -> None:
    bad = tmp_path / "rig.toml"
    bad.write_text("kind = 'station'\n[limits\n")
    assert main(["station", "--rig", str(bad)]) == 2
    assert main(["station", "--rig", str(tmp_path / "missing.toml")]) == 2
    good = tmp_path / "vehicle.toml"
    good.write_text('kind = "vehicle"\n')
    assert main(["station", "--rig", str(good)]) == 2  # a vehicle file for a station run
    assert main(["station", "--rig", str(good), "--fault", "badge-dead"]) == 2


def test_fault_options() -> None:
    faults = parse_faults("station", ["lock-jam:2", "lock-stuck:1", "board-firmware:3=sb-1.3.9",
                                      "badge-dead"])
    assert faults == StationFaults(jammed_locks={2}, stuck_locks={1},
                                   board_firmware={3: "sb-1.3.9"}, dead_badge_reader=True)
    with pytest.raises(RigConfigError):
        parse_faults("station", ["lock-jam:two"])
    with pytest.raises(RigConfigError):
        parse_faults("vehicle", ["flat-tyre"])


def _report() -> RunReport:
    report = RunReport("station", "st-0042", "st-0042",
                       datetime(2026, 11, 21, 17, 30, tzinfo=UTC), False, False,
                       "bench.toml")
    report.steps = [
        StepResult("boot", "Mainboard boots", Outcome.PASSED,
                   measurements=[Measurement("birth after", 1.25, None, "s")]),
        StepResult("spot2.lock_cycle", "Spot 2: lock cycle", Outcome.FAILED,
                   "cycle 4.2 s (limit <= 3 s) | check the latch",
                   [Measurement("cycle", 4.2, "<= 3 s", "s", False)], 4.3),
        StepResult("badge", "Badge", Outcome.SKIPPED, "needs a person"),
    ]
    return report


def test_reports_named_by_serial_and_date_and_junit_parses(tmp_path: Path) -> None:
    report = _report()
    xml_path, md_path = write_reports(report, tmp_path / "out")
    assert xml_path.name == "st-0042_2026-11-21T1730.xml"
    assert md_path.name == "st-0042_2026-11-21T1730.md"
    again, _ = write_reports(report, tmp_path / "out")
    assert again.name == "st-0042_2026-11-21T1730-2.xml"
    suite = ET.parse(xml_path).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    failure = cases["spot2.lock_cycle"].find("failure")
    assert failure is not None and "check the latch" in (failure.get("message") or "")
    assert cases["badge"].find("skipped") is not None
    assert cases["boot"].find("failure") is None
    page = md_path.read_text()
    assert "# Station st-0042: FAILED" in page
    assert "## What to fix" in page and "\\|" in page  # table cells escaped
    assert junit_xml(report) == xml_path.read_bytes() and markdown(report) == page


async def test_person_steps_unattended_skip_and_interactive_times_out() -> None:
    console = Console(file=io.StringIO(), width=100)
    seen = asyncio.Event()

    async def step(s: StepContext) -> None:
        await s.person("Press the red button", until=seen.wait, timeout_s=0.2,
                       missing="the button did nothing: check its cable")

    report = _report()
    report.steps = []
    unattended = SuiteRunner(report, mode=Mode.UNATTENDED, console=console,
                             person_timeout_s=0.2)
    r = await unattended.step("button", "Button", step, timeout_s=1)
    assert r.outcome is Outcome.SKIPPED and "Press the red button" in r.message
    interactive = SuiteRunner(report, mode=Mode.INTERACTIVE, console=console,
                              person_timeout_s=0.2)
    r = await interactive.step("button2", "Button", step, timeout_s=1)
    assert r.outcome is Outcome.FAILED and r.message == "the button did nothing: check its cable"
    r = await interactive.step("after", "After", step, timeout_s=1, requires=["button2"])
    assert r.outcome is Outcome.SKIPPED and "Button did not pass" in r.message
    seen.set()
    r = await interactive.step("button3", "Button", step, timeout_s=1)
    assert r.outcome is Outcome.PASSED


async def test_checks_outside_limits_fail_the_step_with_the_hint() -> None:
    console = Console(file=io.StringIO(), width=100)

    async def step(s: StepContext) -> None:
        s.check("temperature", 71.5, low=-20, high=55, unit="°C")
        s.check("power", 35, low=5, high=150, unit="W")
        s.hint = "Check the ventilation."

    report = _report()
    report.steps = []
    runner = SuiteRunner(report, mode=Mode.SIMULATED, console=console, person_timeout_s=1)
    r = await runner.step("t", "Temperatures", step, timeout_s=1)
    assert r.outcome is Outcome.FAILED
    assert r.message == "temperature 71.5 °C (limit -20..55 °C). Check the ventilation."
    assert [m.ok for m in r.measurements] == [False, True]


async def test_time_waiting_for_a_person_is_not_the_steps_budget() -> None:
    console = Console(file=io.StringIO(), width=100)
    seen = asyncio.Event()

    async def step(s: StepContext) -> None:
        await s.person("Dock the vehicle", until=seen.wait, missing="no vehicle: check the sensor")
        await asyncio.sleep(0.05)  # the step's own work, within its budget

    report = _report()
    report.steps = []
    runner = SuiteRunner(report, mode=Mode.INTERACTIVE, console=console, person_timeout_s=1.0)
    asyncio.get_running_loop().call_later(0.4, seen.set)  # a slow technician
    r = await runner.step("dock", "Dock", step, timeout_s=0.2)
    assert r.outcome is Outcome.PASSED, r.message
    seen.clear()
    r = await runner.step("dock2", "Dock", step, timeout_s=0.2)  # nobody comes
    assert r.outcome is Outcome.FAILED and r.message == "no vehicle: check the sensor"
    assert "Dock the vehicle" in console.file.getvalue()  # type: ignore[attr-defined]


def test_bench_agent_settings_from_a_rig_file(tmp_path: Path) -> None:
    """The agent gets the rig's ports and key over the device's own settings file."""
    import tomllib

    from kickstand.rigs.bench import Bench
    from kickstand.rigs.runner import SuiteRunner as Runner
    from kickstand.rigs.station import StationSuite
    from kickstand.rigs.vehicle import VehicleSuite
    from kickstand.simulators.station.proxy import LinkProxy

    device = tmp_path / "st-0007.toml"
    device.write_text('firmware = "st-1.0.9"\nhardware = "ksm-2"\nmqtt_url = "mqtt://prod:1883"\n')
    rig = parse_rig({"kind": "station", "device_id": "st-0007",
                     "agent": {"spot_bus": "/dev/ttyS7", "badge_reader": "tty:USB1:pn532",
                               "config": "st-0007.toml", "extra": {"bus_retries": 4}}},
                    tmp_path / "bench.toml")
    bench = Bench(tmp_path)
    bench.proxy = LinkProxy("127.0.0.1", 1883, port=18830)  # not started: only its address
    runner = Runner(_report(), mode=Mode.UNATTENDED, console=Console(file=io.StringIO()),
                    person_timeout_s=1)
    assert isinstance(rig, StationRig)
    suite = StationSuite(rig, bench, runner, tmp_path)
    suite.configure_agent()
    settings = tomllib.loads(suite.config_path.read_text())
    assert settings["firmware"] == "st-1.0.9" and settings["hardware"] == "ksm-2"  # the device's
    assert settings["mqtt_url"] == "mqtt://127.0.0.1:18830"  # the rig's broker, via the proxy
    assert settings["command_keys"] == [bench.command_key]
    assert (settings["spot_bus"], settings["badge_reader"]) == ("/dev/ttyS7", "tty:USB1:pn532")
    assert settings["bus_retries"] == 4 and settings["spots"] == 8
    assert settings["health_port"] == suite.health_port

    vrig = load_rig(EXAMPLES / "vehicle.toml")
    assert isinstance(vrig, VehicleRig)
    vsuite = VehicleSuite(vrig, bench, runner, tmp_path / "v")
    (tmp_path / "v").mkdir()
    vsuite.configure_agent()
    vsettings = tomllib.loads(vsuite.config_path.read_text())
    assert vsettings["bms_address"] == "C4:7F:51:0A:22:13"
    assert vsettings["nfc_path"] == "tty:USB4:pn532" and vsettings["pin_code"] == "2468"
    assert vsettings["device_id"] == "vh-BK123456"
