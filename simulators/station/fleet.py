"""Many simulated stations, each with its real agent, in one process (load tests, compose).

    python -m kickstand.simulators fleet --stations 8 --vehicles 60 --mqtt-url mqtt://h:1883
    PROVISIONING_EMAIL=… PROVISIONING_PASSWORD=… python -m kickstand.simulators fleet \
        --mqtt-url mqtts://mqtt.city.example:8883 --provision-api https://api.city.example

With ``mqtts://`` every device gets its certificate as real hardware does
(:mod:`kickstand.simulators.provisioning`: its key made in its own directory, its CSR signed
through the installation's bench endpoint with a bench operator's login, nothing of the
cloud's keys held here) and its agent dials the broker directly (the broker's certificate
names the broker's host, not a local proxy: the scenario's link cuts are then unavailable).

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

from kickstand.simulators.provisioning import Bench, BenchAccount, DeviceFiles
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
                 seed_docked: bool = True, first: int = 1, bench: Bench | None = None,
                 **overrides: Any) -> None:
        """``bench``: each station's certificate provisioned through it (``mqtts://``)."""
        self.count, self.first = count, first
        self.bench = bench
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
            overrides = dict(self.overrides)
            if self.bench is not None:
                files = await self.bench.provision(
                    device_id, "station", self.workdir / device_id / "identity"
                )
                overrides.update(files.agent_settings())
            _, rig = await start_station(
                device_id, mqtt_url=self.mqtt_url, keys=self.keys, spots=self.spots,
                workdir=self.workdir / device_id, nfc=self.nfc, fast=self.fast,
                seed_docked=self.seed_docked, index=i, proxy=self.bench is None, **overrides,
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
                        stop: asyncio.Event, bench: Bench | None = None) -> None:
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
                tls: dict[str, Any] = {}
                if bench is not None:
                    files: DeviceFiles = await bench.provision(
                        f"vh-{serial}", "vehicle", workdir / "vehicles" / serial / "identity"
                    )
                    # Direct to the broker: its certificate names it, not the local proxy.
                    tls = {"mqtt_url": mqtt_url, **files.agent_settings()}
                await fleet.add(serial, **tls)
            except Exception as exc:
                log.error("vehicle_start_failed serial=%s error=%s", serial, exc)
        await stop.wait()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kickstand-sim fleet", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stations", type=int, default=4)
    p.add_argument("--vehicles", type=int, default=0)
    p.add_argument("--first", type=int, default=1, help="number of the first station")
    p.add_argument(
        "--provision-api",
        default=os.environ.get("PROVISIONING_API_URL"),
        help="with an mqtts:// broker: the installation's API that signs each device's "
        "certificate (bench login from PROVISIONING_EMAIL and PROVISIONING_PASSWORD)",
    )
    add_common(p)
    p.set_defaults(nfc=False)
    return p


def bench_account(args: argparse.Namespace) -> BenchAccount | None:
    """The bench login of an ``mqtts://`` fleet (None: plain MQTT, no certificates)."""
    if not args.mqtt_url.startswith(("mqtts://", "ssl://")):
        return None
    email = os.environ.get("PROVISIONING_EMAIL", "")
    password = os.environ.get("PROVISIONING_PASSWORD", "")
    if not args.provision_api or not email or not password:
        raise SystemExit(
            "an mqtts:// broker takes device certificates: set --provision-api (or "
            "PROVISIONING_API_URL), PROVISIONING_EMAIL and PROVISIONING_PASSWORD (a bench "
            "operator of the installation)"
        )
    return BenchAccount(args.provision_api, email, password)


async def run_fleet(args: argparse.Namespace) -> int:
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fleet-"))
    keys = command_keys(args)
    stop = asyncio.Event()
    account = bench_account(args)
    async with contextlib.AsyncExitStack() as stack:
        bench = await stack.enter_async_context(Bench(account)) if account else None
        await _serve_fleet(args, workdir, keys, stop, bench)
    return 0


async def _serve_fleet(args: argparse.Namespace, workdir: Path, keys: list[str],
                       stop: asyncio.Event, bench: Bench | None) -> None:
    async with StationFleet(args.stations, mqtt_url=args.mqtt_url, keys=keys, workdir=workdir,
                            spots=args.spots, nfc=args.nfc, fast=args.fast,
                            seed_docked=args.seed_docked, first=args.first,
                            bench=bench) as fleet:
        server = ControlServer(
            {d: ScenarioController(r.sim, r) for d, r in fleet.rigs.items()},
            port=args.control_port or 0,
        )
        await server.start()
        print(f"fleet: {len(fleet.rigs)} stations -> {args.mqtt_url}; workdir {workdir}; "
              f"control 127.0.0.1:{server.port}", flush=True)
        vehicles = (
            asyncio.create_task(
                _run_vehicles(args.vehicles, args.mqtt_url, keys, workdir, stop, bench)
            )
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
