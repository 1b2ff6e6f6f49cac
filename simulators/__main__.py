"""``python -m kickstand.simulators <station|fleet|vehicle> …`` (also ``kickstand-sim``)."""

from __future__ import annotations

import sys

USAGE = """usage: python -m kickstand.simulators <command> [options]

  station run|ctl …   one simulated station (spot boards on a pty, NFC, inputs) + its agent
  fleet …             many stations with their agents (and --vehicles N) in one process
  vehicle …           simulated vehicles (kickstand.simulators.vehicle)
"""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "station":
        from kickstand.simulators.station.cli import main as station_main

        return station_main(rest)
    if command == "fleet":
        from kickstand.simulators.station.fleet import main as fleet_main

        return fleet_main(rest)
    if command == "vehicle":
        from kickstand.simulators.vehicle.cli import main as vehicle_main

        return vehicle_main(rest)
    print(f"unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
