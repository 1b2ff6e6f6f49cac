"""Unlock latency: rider API request → broker → station agent → simulated spot board →
result → API response, with 50 riders unlocking at once.

Deployed as in production, one process each, on loopback: Mosquitto and PostgreSQL
(kickstand.testing), the ingest worker (`python -m kickstand.cloud ingest`), the rider
API (`python -m kickstand.cloud api`, uvicorn, MqttCommandGateway), and the stations (a
child process running the REAL station agents against simulated spot boards, one board
per spot on a pty bus). This process only drives HTTP clients.

The simulated actuator answers UNLOCK after ``--actuator-ms`` (the lock's own time):
figures are reported with it and beyond it.

    .venv/bin/python benchmarks/unlock_latency.py [--riders 50] [--rounds 3]

Last line: ``unlock p50_ms: X p99_ms: Y`` (total, actuator included).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATIONS_PER_CHILD_SPOTS = 10
RIDER_PASSWORD = "bench-rider-1"


# ── the stations child process ────────────────────────────────────────────────────────


async def run_stations(spec: dict[str, Any]) -> None:
    from kickstand.protocol.spotbus import Cmd, Frame
    from kickstand.simulators.spotboard import SpotBoard
    from kickstand.simulators.station.sim import StationRig

    actuator_s = spec["actuator_ms"] / 1000

    @dataclass(slots=True)
    class ActuatedBoard(SpotBoard):
        """A board whose UNLOCK answer comes after the lock actuated."""

        actuator_s: float = 0.0

        def handle(self, req: Frame) -> Frame:
            self.delay_s = self.actuator_s if req.cmd == Cmd.UNLOCK else 0.0
            return SpotBoard.handle(self, req)

    rigs: list[StationRig] = []
    async with contextlib.AsyncExitStack() as stack:
        for device_id, docked in spec["stations"].items():
            rig = StationRig(
                device_id, spec["host"], spec["port"], command_keys=[spec["key"]],
                workdir=Path(spec["workdir"]) / device_id, spots=spec["spots"], nfc=False,
                proxy=False, unlock_window_s=spec["window_s"],
                # Real-hardware polling (the test rigs' FAST polling would saturate this
                # process with 50 boards); a bus answer may take the actuator's time.
                poll_interval_s=1.0, active_poll_interval_s=0.2, response_timeout_s=0.2,
            )
            for addr in list(rig.sim.bus.boards):
                rig.sim.bus.boards[addr] = ActuatedBoard(addr, actuator_s=actuator_s)
            for spot, serial in docked.items():
                rig.sim.dock(int(spot), serial)
            rigs.append(await stack.enter_async_context(rig))
        for rig in rigs:
            await rig.accepted(within=30)
        print("stations ready", flush=True)
        await asyncio.Event().wait()  # until killed


# ── the driver ────────────────────────────────────────────────────────────────────────


async def prepare_database(db_url: str, stations: dict[str, dict[int, str]], riders: int) -> None:
    from sqlalchemy import select

    from kickstand.cloud.db import create_engine, create_sessionmaker
    from kickstand.cloud.migrations import upgrade
    from kickstand.cloud.models import (
        Cluster,
        Device,
        DeviceKind,
        Network,
        Spot,
        Station,
        User,
        UserRole,
        Vehicle,
        VehicleType,
    )
    from kickstand.cloud.security import hash_password
    from kickstand.cloud.seed import rider_permissions, seed_demo

    engine = create_engine(db_url)
    await upgrade(engine)
    async with create_sessionmaker(engine)() as s, s.begin():
        await seed_demo(s)
    async with create_sessionmaker(engine)() as s, s.begin():
        network = (await s.scalars(select(Network))).first()
        cluster = (await s.scalars(select(Cluster))).first()
        assert network is not None and cluster is not None
        for device_id, docked in stations.items():
            s.add(Device(device_id=device_id, kind=DeviceKind.STATION, hardware_version="bench"))
            station = Station(cluster_id=cluster.id, device_id=device_id, name=device_id)
            s.add(station)
            await s.flush()
            for number in range(1, STATIONS_PER_CHILD_SPOTS + 1):
                spot = Spot(station_id=station.id, displayed_number=number)
                s.add(spot)
                await s.flush()
                if number in docked:
                    s.add(Vehicle(serial_number=docked[number], vehicle_type=VehicleType.BIKE,
                                  network_id=network.id, spot_id=spot.id))
        password_hash = hash_password(RIDER_PASSWORD)
        for i in range(riders):
            s.add(User(email=f"rider{i:03d}@bench.example.com", password_hash=password_hash,
                       role=UserRole.RIDER, permissions=rider_permissions(network.id),
                       wallet_balance=100))
    await engine.dispose()


async def spot_ids(db_url: str, stations: dict[str, dict[int, str]]) -> list[int]:
    from sqlalchemy import select

    from kickstand.cloud.db import create_engine
    from kickstand.cloud.models import Spot, Station

    engine = create_engine(db_url)
    ids: list[int] = []
    async with engine.connect() as conn:
        for device_id, docked in stations.items():
            for number in docked:
                ids.append((await conn.execute(
                    select(Spot.id).join(Station, Station.id == Spot.station_id)
                    .where(Station.device_id == device_id, Spot.displayed_number == number)
                )).scalar_one())
    await engine.dispose()
    return ids


async def open_rents(db_url: str) -> int:
    from sqlalchemy import func, select

    from kickstand.cloud.db import create_engine
    from kickstand.cloud.models import ACTIVE_RENT_STATUSES, Rent

    engine = create_engine(db_url)
    async with engine.connect() as conn:
        n = (await conn.execute(
            select(func.count()).select_from(Rent).where(Rent.status.in_(ACTIVE_RENT_STATUSES))
        )).scalar_one()
    await engine.dispose()
    return int(n)


async def breakdown(
    db_url: str, wall: dict[int, tuple[float, float]]
) -> dict[str, list[float]]:
    """Where the time went, from the rows' timestamps (same host clock; the device's
    result time is the agent's clock, synchronised by the heartbeat TimeReply)."""
    from sqlalchemy import select

    from kickstand.cloud.db import create_engine
    from kickstand.cloud.ingest.tables import DeviceCommand
    from kickstand.cloud.models import Rent

    engine = create_engine(db_url)
    stages: dict[str, list[float]] = {
        "api before command (auth, idempotency, rent)": [],
        "rent commit, offline check, sign": [],
        "device (broker, agent, bus, actuator, result)": [],
        "back to the rider (broker, rent update, answer)": [],
    }
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(Rent.id, Rent.created_at, DeviceCommand.issued_at, DeviceCommand.result_at)
            .join(DeviceCommand, DeviceCommand.rent_id == Rent.id)
        )).all()
    await engine.dispose()
    names = list(stages)
    for rent_id, created, issued, result in rows:
        if rent_id not in wall or result is None:
            continue
        sent, answered = wall[rent_id]
        points = [sent, created.timestamp(), issued.timestamp(), result.timestamp(), answered]
        for name, (a, b) in zip(names, itertools.pairwise(points), strict=True):
            stages[name].append((b - a) * 1000)
    return stages


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


async def wait_http(url: str, wait_s: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + wait_s
    async with httpx.AsyncClient() as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not up")
            await asyncio.sleep(0.2)


async def wait_line(proc: asyncio.subprocess.Process, text: str, wait_s: float = 90) -> None:
    assert proc.stdout is not None
    async with asyncio.timeout(wait_s):
        while True:
            line = await proc.stdout.readline()
            if not line:
                err = await proc.stderr.read() if proc.stderr else b""
                raise RuntimeError(f"child exited before {text!r}: {err.decode()[-3000:]}")
            if text in line.decode():
                return


async def drive(args: argparse.Namespace) -> None:
    import httpx

    from kickstand.cloud.broker import free_port
    from kickstand.cloud.commands import load_signer
    from kickstand.cloud.config import Settings
    from kickstand.testing import MosquittoService, PostgresServer

    n_stations = (args.riders + STATIONS_PER_CHILD_SPOTS - 1) // STATIONS_PER_CHILD_SPOTS
    stations: dict[str, dict[int, str]] = {}
    serial = 0
    for s in range(n_stations):
        docked: dict[int, str] = {}
        for spot in range(1, STATIONS_PER_CHILD_SPOTS + 1):
            if serial < args.riders:
                serial += 1
                docked[spot] = f"BK{serial:04d}"
        stations[f"st-{9000 + s}"] = docked

    procs: list[asyncio.subprocess.Process] = []
    with tempfile.TemporaryDirectory() as tmpdir, MosquittoService() as broker, \
            PostgresServer() as pg:
        tmp = Path(tmpdir)
        db_url = pg.create_database()
        await prepare_database(db_url, stations, args.riders)
        var = tmp / "var"
        key_file = var / "command-signing.key"
        settings = Settings(VAR_DIR=var, COMMAND_SIGNING_KEY_FILE=key_file)
        public_hex = load_signer(settings).public_key.hex()
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "MQTT_URL": broker.url,
            "VAR_DIR": str(var),
            "COMMAND_SIGNING_KEY_FILE": str(key_file),
            "COMMAND_TIMEOUT_S": "5",
            "RENT_UNLOCK_WINDOW_S": "5",
        }
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        try:
            procs.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "kickstand.cloud", "ingest", "--workers", "1",
                "--client-id-prefix", f"bench-{uuid.uuid4().hex[:6]}", env=env, **quiet,
            ))
            ports = [port, *(free_port() for _ in range(args.api_processes - 1))]
            for api_port in ports:  # several API processes, each with its own gateway
                procs.append(await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "kickstand.cloud", "api", "--port", str(api_port),
                    env=env, **quiet,
                ))
            spec = {
                "host": broker.host, "port": broker.port, "key": public_hex,
                "workdir": str(tmp / "stations"), "spots": STATIONS_PER_CHILD_SPOTS,
                "stations": stations, "actuator_ms": args.actuator_ms, "window_s": 2,
            }
            child = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--stations-child", json.dumps(spec),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
            procs.append(child)
            bases = [f"http://127.0.0.1:{p}" for p in ports]
            for base in bases:
                await wait_http(f"{base}/health")
            await wait_line(child, "stations ready")
            spots = await spot_ids(db_url, stations)
            limits = httpx.Limits(max_connections=args.riders + 10)
            async with httpx.AsyncClient(timeout=30, limits=limits) as http:
                tokens = []
                for i in range(args.riders):
                    for attempt in range(5):
                        try:
                            r = await http.post(f"{bases[i % len(bases)]}/v1/auth/login", json={
                                "email": f"rider{i:03d}@bench.example.com",
                                "password": RIDER_PASSWORD})
                            break
                        except httpx.TransportError:
                            if attempt == 4:
                                raise
                            await asyncio.sleep(0.5)
                    r.raise_for_status()
                    tokens.append(r.json()["data"]["token"])
                # Warm-up: one unlock (connections, prepared statements), then let it expire.
                await asyncio.sleep(1.0)
                latencies: list[float] = []
                failures: dict[str, int] = {}
                wall: dict[int, tuple[float, float]] = {}  # rent id → (sent, answered)

                async def unlock(i: int) -> None:
                    t0 = time.perf_counter()
                    sent = time.time()
                    try:
                        r = await http.post(
                            f"{bases[i % len(bases)]}/v1/rents", json={"spot_id": spots[i]},
                            headers={"Authorization": f"Bearer {tokens[i]}",
                                     "Idempotency-Key": f"bench-{uuid.uuid4()}"},
                        )
                    except httpx.TransportError as exc:
                        name = type(exc).__name__
                        failures[name] = failures.get(name, 0) + 1
                        return
                    elapsed = (time.perf_counter() - t0) * 1000
                    if r.status_code == 201:
                        latencies.append(elapsed)
                        wall[r.json()["data"]["rent_id"]] = (sent, time.time())
                    else:
                        body = r.json()
                        reason = body.get("reason", str(r.status_code))
                        failures[reason] = failures.get(reason, 0) + 1
                        if failures[reason] <= 2:
                            print(f"  {reason}: {body.get('message', '')[:160]}", flush=True)

                for rnd in range(args.rounds):
                    await asyncio.gather(*(unlock(i) for i in range(args.riders)))
                    print(f"round {rnd + 1}: {len(latencies)} unlocked so far, "
                          f"failures {failures}", flush=True)
                    # The agents re-lock after their window; the rents expire (no trip).
                    deadline = time.monotonic() + 30
                    while await open_rents(db_url) and time.monotonic() < deadline:  # noqa: ASYNC110
                        await asyncio.sleep(0.25)
        finally:
            for proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
            for proc in procs:
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
        stages = await breakdown(db_url, wall)
    if not latencies:
        raise SystemExit(f"no unlock succeeded: {failures}")
    a = args.actuator_ms
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    print(f"API processes: {args.api_processes}, stations: {n_stations} x "
          f"{STATIONS_PER_CHILD_SPOTS} spots (one agent process), ingest: 1 worker")
    print(f"riders: {args.riders} concurrent, rounds: {args.rounds}, unlocks: {len(latencies)}, "
          f"failed: {sum(failures.values())} {failures or ''}")
    print(f"simulated actuator time: {a:.0f} ms (reported apart)")
    for name, values in stages.items():
        if values:
            print(f"  stage {name}: p50 {percentile(values, 50):.1f} ms, "
                  f"p99 {percentile(values, 99):.1f} ms")
    print(f"beyond actuator: p50 {p50 - a:.1f} ms, p99 {p99 - a:.1f} ms "
          f"(mean {statistics.mean(latencies) - a:.1f} ms, max {max(latencies) - a:.1f} ms)")
    print(f"unlock p50_ms: {p50:.1f} p99_ms: {p99:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--riders", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--actuator-ms", type=float, default=20.0)
    parser.add_argument("--api-processes", type=int, default=1)
    parser.add_argument("--stations-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stations_child:
        import logging

        logging.basicConfig(level=logging.ERROR)
        asyncio.run(run_stations(json.loads(args.stations_child)))
        return
    asyncio.run(drive(args))


if __name__ == "__main__":
    main()
