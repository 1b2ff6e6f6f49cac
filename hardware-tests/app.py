"""One rig run from start to report: ``await run_rig(rig, simulated=True)``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.console import Console

from kickstand.rigs.bench import Bench
from kickstand.rigs.config import RigDescription, StationRig, VehicleRig
from kickstand.rigs.report import agent_log_line, free_stem, write_reports
from kickstand.rigs.results import Outcome, RunReport
from kickstand.rigs.runner import Mode, SuiteRunner

log = logging.getLogger("kickstand.rigs.app")


@dataclass(slots=True)
class RigRun:
    report: RunReport
    xml_path: Path
    md_path: Path

    @property
    def exit_code(self) -> int:
        return 0 if self.report.ok else 1


@contextlib.asynccontextmanager
async def _workdir(keep: Path | None) -> AsyncIterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="kickstand-rig-") as tmp:
        yield Path(tmp)


async def run_rig(
    rig: RigDescription,
    *,
    simulated: bool = False,
    unattended: bool = False,
    broker_url: str | None = None,
    reports_dir: Path | None = None,
    console: Console | None = None,
    faults: object | None = None,
    workdir: Path | None = None,
    rig_path: Path | None = None,
) -> RigRun:
    """Run the suite of ``rig``'s kind and write its reports.

    ``broker_url``: the cloud's login on an existing broker (tests: the harness's
    Mosquitto); None starts an in-process broker. ``faults``: StationFaults or
    VehicleFaults, simulated runs only. ``workdir``: keep the agent's state, its
    configuration and log there (default: a temporary directory, the log is copied
    beside the reports).
    """
    console = console or Console()
    mode = Mode.SIMULATED if simulated else (Mode.UNATTENDED if unattended else Mode.INTERACTIVE)
    report = RunReport(
        kind=rig.kind, device_id=rig.device_id, serial=rig.serial,
        started_at=datetime.now().astimezone(), simulated=simulated, unattended=unattended,
        rig="simulated" if simulated else str(rig_path or "rig description"),
    )
    out_dir = reports_dir or rig.report.dir
    console.rule(f"[bold]{rig.kind} rig[/] · {rig.device_id}"
                 + (" · simulated" if simulated else ""))
    runner = SuiteRunner(report, mode=mode, console=console,
                         person_timeout_s=rig.limits.person_timeout_s)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = free_stem(report, out_dir)
    # The agent's log lands beside the reports: the failure messages point at it.
    report.agent_log = out_dir / f"{stem}.agent.log"
    interrupted = False
    async with _workdir(workdir) as work:
        try:
            async with Bench(work, broker_url) as bench:
                if isinstance(rig, StationRig):
                    await _station(rig, bench, runner, work, simulated, faults, report.agent_log)
                else:
                    await _vehicle(rig, bench, runner, work, simulated, faults, report.agent_log)
        except asyncio.CancelledError:
            # Ctrl-C: the steps done so far are still worth filing.
            interrupted = True
            report.complete = False
            report.notes.append("interrupted before the end: later steps did not run")
        report.finished_at = datetime.now().astimezone()
        xml_path, md_path = write_reports(report, out_dir, stem)
    if interrupted:
        console.print(f"[yellow]interrupted[/]: partial report {md_path}", highlight=False)
        raise asyncio.CancelledError
    counts = report.counts()
    verdict = "[bold green]PASSED[/]" if report.ok else "[bold red]FAILED[/]"
    console.rule(f"{verdict} · {counts[Outcome.PASSED]} passed, "
                 f"{counts[Outcome.FAILED]} failed, {counts[Outcome.SKIPPED]} skipped")
    console.print(f"report: {md_path}\n        {xml_path}\n{agent_log_line(report)}",
                  highlight=False)
    return RigRun(report, xml_path, md_path)


async def _station(
    rig: StationRig, bench: Bench, runner: SuiteRunner, work: Path, simulated: bool,
    faults: object | None, agent_log: Path,
) -> None:
    from kickstand.rigs.station import StationFaults, StationSuite, start_simulated_station

    sim = None
    if simulated:
        sim = await start_simulated_station(
            rig, work, faults if isinstance(faults, StationFaults) else None)
    suite = StationSuite(rig, bench, runner, work, sim)
    suite.agent.log_path = agent_log
    try:
        suite.configure_agent()
        await suite.run()
    finally:
        await suite.agent.stop()
        if sim is not None:
            await sim.stop()


async def _vehicle(
    rig: VehicleRig, bench: Bench, runner: SuiteRunner, work: Path, simulated: bool,
    faults: object | None, agent_log: Path,
) -> None:
    from kickstand.rigs.vehicle import VehicleFaults, VehicleSuite, start_simulated_vehicle

    simbench = None
    if simulated:
        simbench = await start_simulated_vehicle(
            rig, work, faults if isinstance(faults, VehicleFaults) else None)
    suite = VehicleSuite(rig, bench, runner, work, simbench.sim if simbench else None,
                         faults if isinstance(faults, VehicleFaults) else None)
    suite.agent.log_path = agent_log
    try:
        suite.configure_agent()
        await suite.run()
    finally:
        await suite.agent.stop()
        if simbench is not None:
            await simbench.stop()
