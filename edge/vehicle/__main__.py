"""``python -m kickstand.edge.vehicle --config vehicle.toml`` (or ``kickstand-vehicle``).

SIGTERM / SIGINT stop the agent cleanly (the queue is closed; what is stored stays
stored and is sent after the next start).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from kickstand.edge.core.errors import EdgeError
from kickstand.edge.vehicle.agent import VehicleAgent
from kickstand.edge.vehicle.config import VehicleSettings
from kickstand.protocol.errors import ProtocolError


async def serve(settings: VehicleSettings) -> None:
    task = asyncio.create_task(VehicleAgent(settings).run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        logging.getLogger("kickstand.edge.vehicle").info("vehicle_agent_stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kickstand-vehicle", description=__doc__)
    parser.add_argument("--config", help="TOML or YAML settings file (KICKSTAND_* env overrides)")
    args = parser.parse_args(argv)
    try:
        settings = VehicleSettings.load(args.config)
    except (EdgeError, ProtocolError, ValueError) as exc:
        print(f"kickstand-vehicle: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
