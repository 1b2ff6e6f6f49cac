"""``python -m kickstand.edge.station --config station.toml`` (or ``status [url]``).

The process is the framework's (:mod:`kickstand.edge.core.main`): exit status 0 stopped,
2 bad configuration; a Reboot command re-executes the process, as a supervisor would.
"""

from __future__ import annotations

from pathlib import Path

from kickstand.edge.core.main import main as run_agent
from kickstand.edge.station.agent import StationAgent
from kickstand.edge.station.config import StationSettings


def _load(path: Path | None) -> StationSettings:
    return StationSettings.load(path)


def main(argv: list[str] | None = None) -> int:
    return run_agent("kickstand-station", "kickstand.edge.station", _load, StationAgent, argv)


if __name__ == "__main__":
    raise SystemExit(main())
