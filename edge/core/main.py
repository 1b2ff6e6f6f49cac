"""Every agent's process entry point (``python -m kickstand.edge.station|vehicle``).

    --config FILE   TOML or YAML settings (``KICKSTAND_*`` environment variables override)
    status [URL]    the health endpoint's snapshot, readable

Exit status: 0 stopped (SIGTERM / SIGINT end the boot with a Death "stopped"), 2 bad
configuration. Before the agent starts, the bootloader step (SPEC §13.6,
:func:`~kickstand.edge.core.firmware.boot.boot`) chooses the firmware slot this start runs
(a pending one on trial) and, when that slot holds an image, re-executes the process from
it. A Reboot command (or a firmware update's restart) ends the boot with a Death "reboot"
and the process executes itself again from the factory environment, as a mainboard's
supervisor restarts the agent: a new process, a new boot id, the slot chosen again, every
port opened again.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kickstand.edge.core.agent import EdgeAgent
from kickstand.edge.core.config import EdgeSettings
from kickstand.edge.core.errors import ConfigError, EdgeError
from kickstand.edge.core.firmware.boot import boot, exec_into, factory_environment
from kickstand.protocol.errors import ProtocolError


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


async def _run(agent: EdgeAgent[Any]) -> str:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop)
    return await agent.run()


def main(
    prog: str,
    module: str,
    load: Callable[[Path | None], EdgeSettings],
    build: Callable[[Any], EdgeAgent[Any]],
    argv: list[str] | None = None,
) -> int:
    """Run one agent process: ``load`` reads the settings, ``build`` makes the agent."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "status":
        from kickstand.edge.core.health import main as status_main

        return status_main(argv[1:])
    parser = argparse.ArgumentParser(prog=prog, description=f"{prog} edge agent")
    parser.add_argument("--config", type=Path, default=None, help="TOML or YAML settings file")
    args = parser.parse_args(argv)
    try:
        settings = load(args.config)
        _configure_logging(settings.log_level)
        choice = boot(Path(settings.state_dir), trial_s=settings.firmware_trial_s)
        exec_into(choice, module, argv)  # returns when this process runs the chosen slot
        agent = build(settings)
        agent.slot_choice = choice
        result = asyncio.run(_run(agent))
    except (ConfigError, EdgeError, ProtocolError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    if result == "reboot":
        logging.getLogger(module).info("rebooting")
        os.execve(sys.executable, [sys.executable, "-m", module, *argv],
                  factory_environment(os.environ))
    return 0
