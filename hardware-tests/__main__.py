"""``python -m kickstand.rigs station|vehicle (--rig RIG.toml | --simulated)`` (``kickstand-rig``).

Exit status: 0 every step passed or was skipped, 1 a step failed, 2 the rig could not run
(bad rig description, no broker).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from rich.console import Console

from kickstand.rigs.config import RigDescription, StationRig, VehicleRig, load_rig
from kickstand.rigs.errors import RigConfigError, RigError

FAULT_HELP = """simulated faults (repeatable):
  station: lock-jam:SPOT  lock-stuck:SPOT  board-firmware:SPOT=VERSION
           board-silent:SPOT  badge-dead  spot-hot:SPOT=CELSIUS  mains-off
  vehicle: gps-bad-checksums  lock-jam  ble-dead  pinpad-dead"""


def parse_faults(kind: str, specs: list[str]) -> object | None:
    """``--fault`` strings → StationFaults / VehicleFaults (RigConfigError if unknown)."""
    if not specs:
        return None
    from kickstand.rigs.station import StationFaults
    from kickstand.rigs.vehicle import VehicleFaults

    try:
        if kind == "station":
            sf = StationFaults()
            for spec in specs:
                name, _, arg = spec.partition(":")
                if name == "lock-jam":
                    sf.jammed_locks.add(int(arg))
                elif name == "lock-stuck":
                    sf.stuck_locks.add(int(arg))
                elif name == "board-firmware":
                    spot, _, version = arg.partition("=")
                    sf.board_firmware[int(spot)] = version or "sb-0.0.0"
                elif name == "board-silent":
                    sf.silent_boards.add(int(arg))
                elif name == "badge-dead":
                    sf.dead_badge_reader = True
                elif name == "mains-off":
                    sf.mains_off = True
                elif name == "spot-hot":
                    spot, _, celsius = arg.partition("=")
                    sf.hot_spots[int(spot)] = float(celsius or 75)
                else:
                    raise ValueError(f"unknown station fault {spec!r}")
            return sf
        vf = VehicleFaults()
        for spec in specs:
            if spec == "gps-bad-checksums":
                vf.gps_bad_checksums = True
            elif spec == "lock-jam":
                vf.jammed_lock = True
            elif spec == "ble-dead":
                vf.ble_dead = True
            elif spec == "pinpad-dead":
                vf.pinpad_dead = True
            else:
                raise ValueError(f"unknown vehicle fault {spec!r}")
        return vf
    except ValueError as exc:
        raise RigConfigError(None, f"--fault: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kickstand-rig",
        description="Hardware-in-the-loop test rigs: end-of-line suites for a station or a "
                    "vehicle controller, with a JUnit XML and a Markdown report.",
        epilog=FAULT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", choices=["station", "vehicle"])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--rig", type=Path, help="the rig description (TOML), see "
                        "hardware-tests/examples/")
    source.add_argument("--simulated", action="store_true",
                        help="run the suite against the simulators (they play the technician)")
    parser.add_argument("--unattended", action="store_true",
                        help="skip the steps that need a person, with a reason")
    parser.add_argument("--reports", type=Path, default=None,
                        help="report folder (default: the rig's [report] dir, or ./reports)")
    parser.add_argument("--broker", default=None, metavar="MQTT_URL",
                        help="use this broker (the cloud's login) instead of an in-process one")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the agent's state, settings and log here")
    parser.add_argument("--fault", action="append", default=[], metavar="FAULT",
                        help="inject a fault in the simulators (with --simulated)")
    parser.add_argument("-v", "--verbose", action="store_true", help="rig logs on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    from kickstand.rigs.app import run_rig

    try:
        rig: RigDescription
        if args.simulated:
            rig = StationRig.simulated() if args.kind == "station" else VehicleRig.simulated()
        else:
            rig = load_rig(args.rig)
            if rig.kind != args.kind:
                raise RigConfigError(args.rig, f"describes a {rig.kind}, not a {args.kind}")
        if args.fault and not args.simulated:
            raise RigConfigError(None, "--fault needs --simulated")
        faults = parse_faults(args.kind, args.fault)
        run = asyncio.run(run_rig(
            rig, simulated=args.simulated, unattended=args.unattended, broker_url=args.broker,
            reports_dir=args.reports, console=console, faults=faults, workdir=args.workdir,
            rig_path=args.rig,
        ))
    except RigError as exc:
        console.print(f"[bold red]kickstand-rig:[/] {exc}", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    return run.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
