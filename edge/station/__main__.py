"""``python -m kickstand.edge.station --config station.toml`` (or ``status [url]``).

Exit status: 0 stopped, 2 bad configuration. A Reboot command restarts the
process in place (exec), as a supervisor would.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from kickstand.edge.core.errors import ConfigError, EdgeError


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


async def _run(config: Path | None) -> str:
    from kickstand.edge.station import StationAgent, StationSettings

    settings = StationSettings.load(config)
    _configure_logging(settings.log_level)
    agent = StationAgent(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop)
    return await agent.run()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "status":
        from kickstand.edge.core.health import main as status_main

        return status_main(argv[1:])
    parser = argparse.ArgumentParser(prog="kickstand-station", description="Station edge agent")
    parser.add_argument("--config", type=Path, default=None, help="TOML or YAML settings file")
    args = parser.parse_args(argv)
    try:
        result = asyncio.run(_run(args.config))
    except (ConfigError, EdgeError) as exc:
        print(f"kickstand-station: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    if result == "reboot":
        logging.getLogger("kickstand.edge.station").info("rebooting")
        os.execv(sys.executable, [sys.executable, "-m", "kickstand.edge.station", *argv])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
