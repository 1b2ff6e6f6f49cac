"""Station simulator command line.

    # one simulated station with its real agent, scenario commands on stdin / a socket
    python -m kickstand.simulators station run --device-id st-0001 --spots 6 \\
        --mqtt-url mqtt://127.0.0.1:1883 --command-key <hex> --control-port 7001
    python -m kickstand.simulators station ctl --port 7001 dock 3 AB1234

    # the hardware only: run the agent yourself on the printed pty / udp / dir paths
    python -m kickstand.simulators station run --no-agent --spots 6

    # N stations with their real agents in one process (load tests, docker-compose)
    python -m kickstand.simulators fleet --stations 8 [--vehicles 60]

The command key is the cloud's command-signing *public* key (hex), or give the
private key file with ``--command-key-file`` (env ``COMMAND_SIGNING_KEY_FILE``);
``--mqtt-url`` defaults to env ``MQTT_URL`` or mqtt://127.0.0.1:1883.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kickstand.protocol.signing import load_private_key, public_key_bytes
from kickstand.simulators.station.scenario import ControlServer, ScenarioController, send_control
from kickstand.simulators.station.sim import SimulatedStation, StationRig

log = logging.getLogger("kickstand.simulators.station.cli")


def command_keys(args: argparse.Namespace) -> list[str]:
    keys = list(args.command_key or [])
    key_file = args.command_key_file or os.environ.get("COMMAND_SIGNING_KEY_FILE")
    if key_file:
        try:
            keys.append(public_key_bytes(load_private_key(Path(key_file))).hex())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"cannot read command signing key {key_file}: {exc}") from None
    return keys


def _broker(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp", "mqtts", "ssl") or not parts.hostname:
        raise SystemExit(f"--mqtt-url {url!r}: expected mqtt[s]://host:port")
    return parts.hostname, parts.port or (8883 if parts.scheme in ("mqtts", "ssl") else 1883)


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mqtt-url", default=os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883"))
    p.add_argument("--command-key", action="append", help="trusted public key (hex)")
    p.add_argument("--command-key-file", help="the cloud's private signing key file")
    p.add_argument("--spots", type=int, default=6)
    p.add_argument("--workdir", type=Path, default=None, help="state and inputs (default: temp)")
    p.add_argument("--control-port", type=int, default=None, help="scenario control socket")
    p.add_argument("--nfc", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--fast", action="store_true", help="test timings (poll every 0.1 s)")
    p.add_argument("--seed-docked", action=argparse.BooleanOptionalAction, default=True,
                   help="dock the demo seed's vehicles (LY0001… in spots 1-3)")
    p.add_argument("-v", "--verbose", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kickstand-sim station", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="one simulated station (with its agent)")
    run.add_argument("--device-id", default="st-0001")
    run.add_argument("--index", type=int, default=None,
                     help="seed index of the station (default: from the device id)")
    run.add_argument("--no-agent", action="store_true", help="hardware only")
    run.add_argument("--health-port", type=int, default=None,
                     help="agent's local status endpoint (kickstand-station status)")
    add_common(run)
    ctl = sub.add_parser("ctl", help="send one scenario command to a running simulator")
    ctl.add_argument("--port", type=int, required=True)
    ctl.add_argument("words", nargs="+")
    return parser


def seed_serials(index: int) -> dict[int, str]:
    """The demo seed (cloud/seed.py): station i holds LY(3i-2)..LY(3i) in spots 1-3."""
    if not 1 <= index <= 4:
        return {}
    return {n: f"LY{(index - 1) * 3 + n:04d}" for n in (1, 2, 3)}


def _index_of(device_id: str) -> int:
    digits = "".join(ch for ch in device_id.split("-", 1)[-1] if ch.isdigit())
    return int(digits) if digits else 0


async def start_station(
    device_id: str,
    *,
    mqtt_url: str,
    keys: list[str],
    spots: int,
    workdir: Path,
    nfc: bool,
    fast: bool,
    seed_docked: bool,
    index: int | None = None,
    agent: bool = True,
    proxy: bool = True,
    **overrides: Any,
) -> tuple[SimulatedStation, StationRig | None]:
    """A simulated station (and, with ``agent``, its real agent) started in this loop.
    An ``mqtts://`` URL: the agent speaks TLS (its certificate in ``overrides``)."""
    serials = seed_serials(index if index is not None else _index_of(device_id))
    if not agent:
        sim = SimulatedStation(device_id, spots, workdir=workdir, nfc=nfc)
        await sim.start()
        if seed_docked:
            for spot, serial in serials.items():
                if spot <= spots:
                    sim.dock(spot, serial)
        return sim, None
    host, port = _broker(mqtt_url)
    rig = StationRig(device_id, host, port, command_keys=keys, workdir=workdir, spots=spots,
                     nfc=nfc, proxy=proxy, fast=fast,
                     tls=urlsplit(mqtt_url).scheme in ("mqtts", "ssl"), **overrides)
    # Dock before the agent's first poll, so the seed's vehicles are "already there".
    await rig.sim.start()
    if seed_docked:
        for spot, serial in serials.items():
            if spot <= spots:
                rig.sim.dock(spot, serial)
    if rig.proxy is not None:
        await rig.proxy.start()
    await rig.start_agent()
    return rig.sim, rig


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _stdin_commands(server: ControlServer) -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        answer = await server.execute(line)
        if answer:
            print(answer, flush=True)


async def run_station(args: argparse.Namespace) -> int:
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"{args.device_id}-"))
    sim, rig = await start_station(
        args.device_id, mqtt_url=args.mqtt_url, keys=command_keys(args), spots=args.spots,
        workdir=workdir, nfc=args.nfc, fast=args.fast, seed_docked=args.seed_docked,
        index=args.index, agent=not args.no_agent,
        **({"health_port": args.health_port} if args.health_port is not None else {}),
    )
    server = ControlServer({args.device_id: ScenarioController(sim, rig)},
                           port=args.control_port or 0)
    await server.start()
    print(f"station {args.device_id}: spot bus {sim.bus.slave_path}", flush=True)
    if sim.badge is not None:
        print(f"  badge reader: {sim.badge.path}", flush=True)
    print(f"  inputs: {sim.inputs.path}   workdir: {workdir}", flush=True)
    if rig is not None:
        print(f"  agent -> {rig.mqtt_url} (proxy to {args.mqtt_url})", flush=True)
        if args.health_port is not None:
            print(f"  agent status: python -m kickstand.edge.station status "
                  f"http://127.0.0.1:{args.health_port}", flush=True)
    print(f"  control: 127.0.0.1:{server.port} (or type commands here; 'help')", flush=True)
    stdin_task = asyncio.create_task(_stdin_commands(server)) if sys.stdin.isatty() else None
    try:
        await _wait_for_signal()
    finally:
        if stdin_task is not None:
            stdin_task.cancel()
        await server.stop()
        if rig is not None:
            await rig.stop()
        else:
            await sim.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.action == "ctl":
        answer = asyncio.run(send_control(args.port, " ".join(args.words)))
        print(answer)
        return 1 if answer.startswith("error") else 0
    return asyncio.run(run_station(args))
