"""``python -m kickstand.edge.vehicle --config vehicle.toml`` (or ``kickstand-vehicle``).

The process is the framework's (:mod:`kickstand.edge.core.main`): SIGTERM / SIGINT end
the boot with a Death "stopped" (what is stored stays stored and is sent after the next
start); a Reboot command re-executes the process, as a supervisor would.
"""

from __future__ import annotations

from pathlib import Path

from kickstand.edge.core.main import main as run_agent
from kickstand.edge.vehicle.agent import VehicleAgent
from kickstand.edge.vehicle.config import VehicleSettings


def _load(path: Path | None) -> VehicleSettings:
    return VehicleSettings.load(path)


def main(argv: list[str] | None = None) -> int:
    return run_agent("kickstand-vehicle", "kickstand.edge.vehicle", _load, VehicleAgent, argv)


if __name__ == "__main__":
    raise SystemExit(main())
