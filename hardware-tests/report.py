"""The report a technician files: JUnit XML for tools and a Markdown page for people.

Both are named by device serial and start time: ``<dir>/st-0001_2026-11-21T1730.xml``
and ``.md``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from kickstand.rigs.results import Measurement, Outcome, RunReport

_WORD = {Outcome.PASSED: "PASS", Outcome.FAILED: "**FAIL**", Outcome.SKIPPED: "skip"}


def report_stem(report: RunReport) -> str:
    return f"{report.serial}_{report.started_at.strftime('%Y-%m-%dT%H%M')}"


def free_stem(report: RunReport, directory: Path) -> str:
    """The report's file stem; a second run in the same minute gets ``-2``, ``-3``…"""
    base = report_stem(report)
    stem, n = base, 1
    while any((directory / f"{stem}{ext}").exists() for ext in (".xml", ".md", ".agent.log")):
        n += 1
        stem = f"{base}-{n}"
    return stem


def write_reports(
    report: RunReport, directory: Path, stem: str | None = None
) -> tuple[Path, Path]:
    """Write ``<stem>.xml`` and ``<stem>.md`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = stem or free_stem(report, directory)
    xml_path, md_path = directory / f"{stem}.xml", directory / f"{stem}.md"
    xml_path.write_bytes(junit_xml(report))
    md_path.write_text(markdown(report))
    return xml_path, md_path


def junit_xml(report: RunReport) -> bytes:
    counts = report.counts()
    total = sum(s.duration_s for s in report.steps)
    suites = ET.Element("testsuites", name=f"kickstand-rig {report.kind}")
    suite = ET.SubElement(
        suites, "testsuite",
        name=f"{report.kind}.{report.serial}",
        tests=str(len(report.steps)),
        failures=str(counts[Outcome.FAILED]),
        errors="0",
        skipped=str(counts[Outcome.SKIPPED]),
        time=f"{total:.3f}",
        timestamp=report.started_at.isoformat(timespec="seconds"),
        hostname="simulated" if report.simulated else "bench",
    )
    props = ET.SubElement(suite, "properties")
    for key, value in (("device_id", report.device_id), ("serial", report.serial),
                       ("rig", report.rig), ("simulated", str(report.simulated).lower()),
                       ("unattended", str(report.unattended).lower())):
        ET.SubElement(props, "property", name=key, value=value)
    for step in report.steps:
        case = ET.SubElement(suite, "testcase", classname=f"{report.kind}.{report.serial}",
                             name=step.id, time=f"{step.duration_s:.3f}")
        if step.outcome is Outcome.FAILED:
            ET.SubElement(case, "failure", message=step.message, type="StepFailed").text = (
                step.message
            )
        elif step.outcome is Outcome.SKIPPED:
            ET.SubElement(case, "skipped", message=step.message)
        if step.measurements:
            lines = [f"{step.title}"] + [
                f"{m.name} = {m.value_text()}" + (f" (limit {m.limit})" if m.limit else "")
                + ("" if m.ok is None else (" ok" if m.ok else " OUT OF LIMIT"))
                for m in step.measurements
            ]
            ET.SubElement(case, "system-out").text = "\n".join(lines)
    ET.indent(suites)
    data: bytes = ET.tostring(suites, encoding="utf-8", xml_declaration=True)
    return data


def _mode(report: RunReport) -> str:
    if report.simulated:
        return "simulated (the simulators did the technician's actions)"
    return "unattended (steps needing a person skipped)" if report.unattended else "attended"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(report: RunReport) -> str:
    counts = report.counts()
    verdict = "PASSED" if report.ok else ("FAILED" if report.failed else "INCOMPLETE")
    finished = report.finished_at.isoformat(timespec="seconds") if report.finished_at else "—"
    out = [
        f"# {report.kind.capitalize()} {report.serial}: {verdict}",
        "",
        "| | |",
        "| --- | --- |",
        f"| device | `{report.device_id}` |",
        f"| started | {report.started_at.isoformat(timespec='seconds')} |",
        f"| finished | {finished} |",
        f"| rig | {'simulators' if report.simulated else _cell(report.rig)} |",
        f"| mode | {_mode(report)} |",
        f"| steps | {counts[Outcome.PASSED]} passed, {counts[Outcome.FAILED]} failed, "
        f"{counts[Outcome.SKIPPED]} skipped |",
        "",
    ]
    if report.failed:
        out += ["## What to fix", ""]
        out += [f"- **{s.title}**: {s.message}" for s in report.failed]
        out.append("")
    out += ["## Steps", "", "| # | step | result | measured | limit | note |",
            "| --- | --- | --- | --- | --- | --- |"]
    for i, s in enumerate(report.steps, 1):
        rows: list[Measurement | None] = list(s.measurements) or [None]
        first = True
        for m in rows:
            measured = f"{m.name}: {m.value_text()}" if m else ""
            if m is not None and m.ok is False:
                measured = f"**{measured}**"
            limit = (m.limit or "") if m else ""
            if first:
                out.append(f"| {i} | {_cell(s.title)} | {_WORD[s.outcome]} | {_cell(measured)} "
                           f"| {_cell(limit)} | {_cell(s.message)} |")
                first = False
            else:
                out.append(f"| | | | {_cell(measured)} | {_cell(limit)} | |")
    out.append("")
    if report.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    out += [agent_log_line(report, "`"), ""]
    return "\n".join(out)


def agent_log_line(report: RunReport, quote: str = "") -> str:
    """The closing line naming the agent's own log (or why there is none)."""
    if report.agent_log is not None and report.agent_log.exists():
        return f"agent log: {quote}{report.agent_log}{quote}"
    return "agent log: none (the agent was not started)"
