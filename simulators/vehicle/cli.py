"""Vehicle simulator command line: many simulated vehicles, each with its real agent.

    python -m kickstand.simulators vehicle --mqtt-url mqtt://127.0.0.1:1883 \\
        --command-key <hex> --count 5 ride --speed 18
    python -m kickstand.simulators.vehicle --mqtt-url ... --cloud-url mqtt://user:pw@host:port \\
        coverage --outage-s 20

Scenarios: ``idle`` (parked), ``ride`` (unlock, ride the route, lock), ``coverage``
(the same with the broker link cut mid-ride and the lock done out of coverage),
``fall`` (fall over), ``drain`` (e-assist battery to ``--to-pct``), ``bad-nmea``
(corrupt sentences, garbage and a teleport). With ``--cloud-url`` (the cloud's
broker login) the command plays the cloud too: it answers births and heartbeats
and sends the signed Unlock; without it the real cloud must do that (pass its
``--command-key``) and ``ride`` waits for the lock to open.

Exit status 0 when every vehicle did its part, 1 otherwise, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from kickstand.protocol.v1.enums import BatteryKind
from kickstand.protocol.v1.messages import Unlock
from kickstand.simulators.vehicle.errors import ScenarioError
from kickstand.simulators.vehicle.fleet import FleetMember, VehicleFleet
from kickstand.simulators.vehicle.route import Route
from kickstand.simulators.vehicle.vehicle import wait_until

log = logging.getLogger("kickstand.simulators.vehicle.cli")

SCENARIOS = ("idle", "ride", "coverage", "fall", "drain", "bad-nmea")


def parse_route(text: str) -> Route:
    """``"lon,lat;lon,lat;…"`` → Route."""
    try:
        points = [tuple(float(v) for v in p.split(",")) for p in text.split(";") if p.strip()]
        if any(len(p) != 2 for p in points):
            raise ValueError("each point is lon,lat")
        return Route.of([(p[0], p[1]) for p in points])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"route {text!r}: {exc}") from None


def _url(text: str) -> tuple[str, int, str | None, str | None]:
    parts = urlsplit(text)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not mqtt://[user:password@]host:port")
    return (
        parts.hostname,
        parts.port or 1883,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kickstand-sim vehicle", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mqtt-url", type=_url, default=_url("mqtt://127.0.0.1:1883"),
                   help="broker the agents connect to (through a coverage proxy each)")
    p.add_argument("--cloud-url", type=_url, default=None,
                   help="the cloud's broker login: play the cloud (births, signed commands)")
    p.add_argument("--command-key", action="append", default=[],
                   help="hex Ed25519 public key the agents trust (repeatable)")
    p.add_argument("--count", type=int, default=1, help="vehicles (default 1)")
    p.add_argument("--prefix", default="BK", help="serial number prefix (default BK)")
    p.add_argument("--state-dir", type=Path, default=None, help="default: a temp dir")
    p.add_argument("--riding-interval-s", type=float, default=5.0)
    p.add_argument("--reconnect-max-s", type=float, default=2.0,
                   help="agents' longest reconnect back-off (a device uses 30)")
    p.add_argument("--durable", action="store_true",
                   help="fsync every queued message as a device does (slow with many vehicles)")
    p.add_argument("--duration", type=float, default=None,
                   help="stop after this many seconds (default: when the scenario ends)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="scenario", required=True)
    sub.add_parser("idle", help="parked vehicles reporting")
    for name in ("ride", "coverage"):
        s = sub.add_parser(name, help="unlock, ride the route, lock" +
                           (" — out of coverage" if name == "coverage" else ""))
        s.add_argument("--route", type=parse_route, default=None,
                       help='"lon,lat;lon,lat;…" (default: --distance-m east of where each '
                       "vehicle is parked)")
        s.add_argument("--distance-m", type=float, default=300.0)
        s.add_argument("--speed", type=float, default=18.0, help="km/h")
        if name == "coverage":
            s.add_argument("--outage-s", type=float, default=5.0,
                           help="time out of coverage after the lock")
    sub.add_parser("fall", help="every vehicle falls over")
    d = sub.add_parser("drain", help="drain the e-assist battery")
    d.add_argument("--to-pct", type=float, default=15.0)
    sub.add_parser("bad-nmea", help="corrupt NMEA, garbage and a GPS teleport")
    return p


async def _ride(m: FleetMember, cloud: Any, route: Route, speed: float,
                outage_s: float | None) -> None:
    sim = m.sim
    if cloud is not None:
        await cloud.send_command(m.device_id, Unlock(window_s=60))
    await wait_until(lambda: sim.lock.name == "OPEN", 120)
    sim.take_chain_out()
    sim.ride(route, speed)
    if outage_s is not None and m.proxy is not None:
        await asyncio.sleep(route.length_m / (speed / 3.6) / 3)
        m.proxy.cut()
        print(f"{m.device_id}: coverage lost", flush=True)
    await sim.wait_route_done(route.length_m / (speed / 3.6) * 2 + 30)
    sim.rider_lock()
    print(f"{m.device_id}: locked", flush=True)
    if outage_s is not None and m.proxy is not None:
        await asyncio.sleep(outage_s)
        await m.proxy.restore()
        print(f"{m.device_id}: coverage back", flush=True)
    agent = m.agent
    if agent is not None:
        await wait_until(lambda: agent.queue_depth == 0, 60)


async def run(args: argparse.Namespace) -> int:
    host, port, _, _ = args.mqtt_url
    cloud: Any = None
    keys = list(args.command_key)
    stack = contextlib.AsyncExitStack()
    async with stack:
        if args.cloud_url is not None:
            from kickstand.simulators.station.cloudpeer import CloudPeer

            chost, cport, user, password = args.cloud_url
            cloud = await stack.enter_async_context(
                CloudPeer(chost, cport, username=user, password=password)
            )
            keys.append(cloud.public_key_hex)
        base = args.state_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        fleet = await stack.enter_async_context(VehicleFleet(
            base, mqtt_host=host, mqtt_port=port, command_keys=keys,
            agent_overrides={"riding_interval_s": args.riding_interval_s,
                             "reconnect_max_s": args.reconnect_max_s,
                             "queue_synchronous": "FULL" if args.durable else "NORMAL",
                             "lockbox_timeout_s": 0.3},
        ))
        await fleet.add_many(args.count, prefix=args.prefix)
        if cloud is not None:
            await fleet.wait_online(30)
        print(f"{len(fleet)} vehicles up: " + " ".join(m.device_id for m in fleet), flush=True)
        scenario = asyncio.ensure_future(_scenario(args, fleet, cloud))
        try:
            async with asyncio.timeout(args.duration):
                await scenario
                if args.scenario == "idle" or args.duration is not None:
                    await asyncio.Event().wait()  # until --duration or Ctrl-C
        except TimeoutError:
            pass
        finally:
            scenario.cancel()
            (outcome,) = await asyncio.gather(scenario, return_exceptions=True)
        ok = outcome is None
        if isinstance(outcome, Exception):
            print(f"scenario failed: {outcome!r}", file=sys.stderr)
        _summary(fleet, cloud)
        return 0 if ok or args.scenario == "idle" else 1


async def _scenario(args: argparse.Namespace, fleet: VehicleFleet, cloud: Any) -> None:
    members = list(fleet)
    name = args.scenario
    if name in ("ride", "coverage"):
        outage = args.outage_s if name == "coverage" else None

        def route_of(m: FleetMember) -> Route:
            if args.route is not None:
                route: Route = args.route
                return route
            east = args.distance_m / (111_320 * math.cos(math.radians(m.sim.lat)))
            return Route.of([(m.sim.lon, m.sim.lat), (m.sim.lon + east, m.sim.lat)])

        await asyncio.gather(*(_ride(m, cloud, route_of(m), args.speed, outage)
                               for m in members))
    elif name == "fall":
        for m in members:
            m.sim.fall_over()
    elif name == "drain":
        for m in members:
            m.sim.drain_battery(BatteryKind.VAE, args.to_pct)
    elif name == "bad-nmea":
        for m in members:
            m.sim.send_bad_nmea(10)
            m.sim.teleport(48.8566, 2.3522)
    await asyncio.sleep(1.0)  # let the agents report it


def _summary(fleet: VehicleFleet, cloud: Any) -> None:
    for m in fleet:
        if m.agent is None:
            continue
        snap = m.agent.snapshot()
        v, gps = snap.get("vehicle", {}), snap.get("vehicle", {}).get("gps", {})
        print(f"{m.device_id}: state={v.get('state')} lock={v.get('lock')} "
              f"queue={snap.get('queue', {}).get('depth')} "
              f"gps_fixes={gps.get('fixes_accepted')} bad_checksums={gps.get('checksum_errors')} "
              f"jumps={gps.get('rejected_jump')}")
        if cloud is not None:
            kinds = Counter(type(r.body).__name__ for r in cloud.view(m.device_id).messages)
            print(f"  cloud got: {dict(sorted(kinds.items()))}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.count < 1 or args.count > 10_000:
        parser.error("--count must be 1..10000")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not args.verbose:
        logging.getLogger("mqtt").setLevel(logging.ERROR)  # aiomqtt's "pending publish calls"
    try:
        return asyncio.run(run(args))
    except ScenarioError as exc:
        print(f"kickstand-sim vehicle: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
