"""Many simulated stations, each with its real agent, in one process (load tests, compose).

    python -m kickstand.simulators fleet --stations 8 --vehicles 60 --mqtt-url mqtt://h:1883

Stations are ``st-0001`` … (the demo seed's ids); the seed's docked vehicles are put
in spots 1-3 of stations 1-4. With ``--vehicles N`` the vehicle simulator's fleet
(``kickstand.simulators.vehicle``) runs N vehicles with their agents beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from kickstand.simulators.station.cli import (
    _wait_for_signal,
    add_common,
    command_keys,
    start_station,
)
from kickstand.simulators.station.scenario import ControlServer, ScenarioController
from kickstand.simulators.station.sim import StationRig

log = logging.getLogger("kickstand.simulators.station.fleet")


def vehicle_serials(count: int) -> list[str]:
    """The seed's vehicles first (LY0001-LY0012, LYF001-LYF004), then LYS0001…"""
    seeded = [f"LY{i:04d}" for i in range(1, 13)] + [f"LYF{i:03d}" for i in range(1, 5)]
    extra = [f"LYS{i:04d}" for i in range(1, max(0, count - len(seeded)) + 1)]
    return (seeded + extra)[:count]


class StationFleet:
    """N stations with agents; ``async with StationFleet(...) as fleet: fleet.rigs[...]``."""

    def __init__(self, count: int, *, mqtt_url: str, keys: list[str], workdir: Path,
                 spots: int = 6, nfc: bool = False, fast: bool = False,
                 seed_docked: bool = True, first: int = 1, **overrides: Any) -> None:
        self.count, self.first = count, first
        self.mqtt_url, self.keys, self.workdir = mqtt_url, keys, workdir
        self.spots, self.nfc, self.fast, self.seed_docked = spots, nfc, fast, seed_docked
        self.overrides = overrides
        self.rigs: dict[str, StationRig] = {}

    async def __aenter__(self) -> StationFleet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        for i in range(self.first, self.first + self.count):
            device_id = f"st-{i:04d}"
            _, rig = await start_station(
                device_id, mqtt_url=self.mqtt_url, keys=self.keys, spots=self.spots,
                workdir=self.workdir / device_id, nfc=self.nfc, fast=self.fast,
                seed_docked=self.seed_docked, index=i, **self.overrides,
            )
            assert rig is not None
            self.rigs[device_id] = rig

    async def stop(self) -> None:
        await asyncio.gather(*(rig.stop() for rig in self.rigs.values()),
                             return_exceptions=True)
        self.rigs.clear()

    def accepted(self) -> int:
        return sum(1 for r in self.rigs.values()
                   if r.agent is not None and r.agent.link.accepted.is_set())


async def _run_vehicles(count: int, mqtt_url: str, keys: list[str], workdir: Path,
                        stop: asyncio.Event) -> None:
    try:
        from kickstand.simulators.vehicle.fleet import VehicleFleet
    except ImportError as exc:
        log.error("vehicle_fleet_unavailable error=%s", exc)
        return
    from urllib.parse import urlsplit

    url = urlsplit(mqtt_url)
    async with VehicleFleet(workdir / "vehicles", mqtt_host=url.hostname or "127.0.0.1",
                            mqtt_port=url.port or 1883, command_keys=keys) as fleet:
        for serial in vehicle_serials(count):
            try:
                await fleet.add(serial)
            except Exception as exc:
                log.error("vehicle_start_failed serial=%s error=%s", serial, exc)
        await stop.wait()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kickstand-sim fleet", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stations", type=int, default=4)
    p.add_argument("--vehicles", type=int, default=0)
    p.add_argument("--first", type=int, default=1, help="number of the first station")
    add_common(p)
    p.set_defaults(nfc=False)
    return p


async def run_fleet(args: argparse.Namespace) -> int:
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fleet-"))
    keys = command_keys(args)
    stop = asyncio.Event()
    async with StationFleet(args.stations, mqtt_url=args.mqtt_url, keys=keys, workdir=workdir,
                            spots=args.spots, nfc=args.nfc, fast=args.fast,
                            seed_docked=args.seed_docked, first=args.first) as fleet:
        server = ControlServer(
            {d: ScenarioController(r.sim, r) for d, r in fleet.rigs.items()},
            port=args.control_port or 0,
        )
        await server.start()
        print(f"fleet: {len(fleet.rigs)} stations -> {args.mqtt_url}; workdir {workdir}; "
              f"control 127.0.0.1:{server.port}", flush=True)
        vehicles = (
            asyncio.create_task(_run_vehicles(args.vehicles, args.mqtt_url, keys, workdir, stop))
            if args.vehicles > 0 else None
        )
        try:
            await _wait_for_signal()
        finally:
            stop.set()
            if vehicles is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(vehicles, 20)
            await server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if args.stations < 0 or args.stations > 5000:
        raise SystemExit("--stations must be 0..5000")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return asyncio.run(run_fleet(args))
