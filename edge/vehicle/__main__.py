"""``python -m kickstand.edge.vehicle --config vehicle.toml`` (or ``kickstand-vehicle``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

from kickstand.edge.core.errors import EdgeError
from kickstand.edge.vehicle.agent import VehicleAgent
from kickstand.edge.vehicle.config import VehicleSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kickstand-vehicle", description=__doc__)
    parser.add_argument("--config", help="TOML or YAML settings file (KICKSTAND_* env overrides)")
    args = parser.parse_args(argv)
    try:
        settings = VehicleSettings.load(args.config)
    except EdgeError as exc:
        print(f"kickstand-vehicle: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(VehicleAgent(settings).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
