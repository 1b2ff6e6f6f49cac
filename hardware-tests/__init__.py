"""Technicians' test rigs: end-of-line suites for a station or a vehicle controller.

    python -m kickstand.rigs station --simulated            # or: make rig
    python -m kickstand.rigs vehicle --rig bench.toml [--unattended] [--reports DIR]

From Python (tests, tools)::

    from kickstand.rigs import StationRig, run_rig
    run = await run_rig(StationRig.simulated(), simulated=True)
    run.report.failed, run.xml_path, run.md_path, run.exit_code

The rig plays the cloud (broker, birth answers, signed commands) and runs the production
agent as a child process against the device's ports (or the simulators'); it never
reimplements the agent. Modules: ``config`` (rig descriptions), ``bench`` (broker, link
proxy, cloud peer, agent process), ``runner`` (steps, prompts, progress), ``station`` /
``vehicle`` (the suites), ``report`` (JUnit XML, Markdown), ``app`` (one run).
"""

from kickstand.rigs.app import RigRun, run_rig
from kickstand.rigs.config import RigDescription, StationRig, VehicleRig, load_rig
from kickstand.rigs.errors import RigConfigError, RigError
from kickstand.rigs.results import Outcome, RunReport, StepResult

__all__ = [
    "Outcome",
    "RigConfigError",
    "RigDescription",
    "RigError",
    "RigRun",
    "RunReport",
    "StationRig",
    "StepResult",
    "VehicleRig",
    "load_rig",
    "run_rig",
]
