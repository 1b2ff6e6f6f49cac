"""Unlock latency: rider API request → broker → station agent → simulated spot board →
result → API response, and where the CPU goes per unlock.

Deployed as in production, one process each, on loopback: Mosquitto and PostgreSQL
(kickstand.testing), the ingest worker (`python -m kickstand.cloud ingest`), the rider
API (`python -m kickstand.cloud api`, uvicorn, MqttCommandGateway; ``--api-processes``),
and the stations (a child process running the REAL station agents against simulated spot
boards, one board per spot on a pty bus). This process only drives HTTP: one persistent
keep-alive connection per rider (a rider = one phone) on a lean asyncio client
(`_lean_http.py`), so the driver's own CPU does not show up as server latency.

Three workloads on the same stack, one after the other; each rider owns one docked bike:

- **riders** (the headline): ``--riders`` closed-loop virtual users, the usual meaning
  of "concurrent users" in load testing. They start at random offsets; each then loops:
  ``POST /v1/rents`` (timed) → like the app, ``GET /v1/rents`` every 0.5 s until the rent
  is no longer current (the agent re-locks after its 2 s window, the rent expires, no
  trip) → a think time (exponential, ``--think-s`` mean, 5 s: back to the map, walking
  to the next bike) → unlock again. ``--unlocks-per-rider`` attempts each, or as many as
  fit in ``--duration`` seconds. 50 riders make about 3.5 unlocks/s, the peak-hour unlock
  rate of a large city's whole network.
- **stress**: the same riders with no think time (about 22 unlocks/s, six times that
  peak): where the machine's CPU, not the design, sets the latency.
- **burst**: every rider sends ``POST /v1/rents`` in the same instant, ``--rounds``
  times (all rents over between rounds): the thundering herd, the worst case.

Each block reports the unlock latency (p50/p99/mean/max, total and beyond the simulated
actuator: the latch opens ``--actuator-ms`` after the board acknowledged UNLOCK), the
stages from the rent and device_command rows' timestamps, failures by reason, and CPU
per unlock by process (utime+stime from /proc via psutil: API, ingest, stations, this
driver, Mosquitto, and the PostgreSQL backends of the bench database, sampled every 0.1 s so pooled
connections that come and go are counted; a backend living less than that is missed):

    cpu ms per unlock: api 12.3, ingest 4.1, ... (total 21.2; 2 cores → floor for 50 at
    once ≈ 530 ms, ceiling ≈ 94 unlocks/s)

The floor is what a burst of ``--riders`` unlocks can physically achieve on this
machine: that much CPU has to be spent before the last rider gets an answer. The
riders' CPU covers the whole workload (the app's polls and the re-locks included); the
burst's only the herd itself, from the first request to the last answer. "other
processes on the machine" is the CPU the rest of the machine used meanwhile, per unlock:
when it is large, the figures above it are noisy.

    .venv/bin/python benchmarks/unlock_latency.py [--riders 50] [--unlocks-per-rider 4 |
        --duration S] [--think-s 5] [--rounds 2] [--actuator-ms 20] [--api-processes 1]
        [--tls]

Last three lines: ``stress unlock p50_ms: X p99_ms: Y``, ``burst unlock …``, then the
headline ``unlock p50_ms: X p99_ms: Y`` for the riders workload (totals, actuator
included; the "beyond actuator" lines above subtract it).

``--tls`` (issue 17) runs the whole thing twice in the same run, on a fresh stack each:
plain MQTT, then the deployment's TLS policy (``MosquittoService(tls=...)``: each station
with its own client certificate on the TLS listener, ingest and the API with their own
broker accounts). It ends with ``riders beyond actuator p99_ms plain: X tls: Y`` (and
the p50s), the TLS cost on what riders wait for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import psutil
from _lean_http import HttpError, KeepAliveConnection

if TYPE_CHECKING:
    import asyncpg

    from kickstand.simulators.station.sim import StationRig
    from kickstand.testing import DeviceTls, MosquittoService

SPOTS_PER_STATION = 10
RIDER_PASSWORD = "bench-rider-1"
AGENT_UNLOCK_WINDOW_S = 2  # the agent re-locks a spot whose bike stayed this long
API_UNLOCK_WINDOW_S = 5  # RENT_UNLOCK_WINDOW_S: a pending unlock expires after this
POLL_S = 0.5  # the app's GET /v1/rents period while a rent is current
#: A rider between two unlocks: back to the map, choosing, walking to the bike. Short for
#: a person (a real one rides for minutes between unlocks); the "stress" block has none.
THINK_S = 5.0
RENT_END_WAIT_S = 30  # a rent still current after this is a failure, not a hang
CPU_SAMPLE_S = 0.1
SEED = 20261101  # the riders' start offsets: the same from run to run


# ── the stations child process ────────────────────────────────────────────────────────


def install_boards(rig: StationRig, actuator_s: float) -> None:
    """The spot boards of one simulated station: the latch opens ``actuator_s`` after the
    UNLOCK, which the board acknowledges at once (SPEC §9.3: the agent polls the lock
    sensor with the bus free, so a station opens several locks at the same time)."""
    for board in rig.sim.bus.boards.values():
        board.actuation_s = actuator_s


async def run_stations(spec: dict[str, Any]) -> None:
    from kickstand.simulators.station.sim import StationRig

    rigs: list[StationRig] = []
    identities: dict[str, dict[str, str]] = spec.get("identities") or {}
    async with contextlib.AsyncExitStack() as stack:
        for device_id, docked in spec["stations"].items():
            rig = StationRig(
                device_id, spec["host"], spec["port"], command_keys=[spec["key"]],
                workdir=Path(spec["workdir"]) / device_id, spots=spec["spots"], nfc=False,
                proxy=False, unlock_window_s=spec["window_s"],
                tls=device_id in identities, **identities.get(device_id, {}),
                # Real-hardware polling (the test rigs' FAST polling would saturate this
                # process with 50 boards); a bus answer may take the actuator's time.
                poll_interval_s=1.0, active_poll_interval_s=0.2, response_timeout_s=0.2,
            )
            install_boards(rig, spec["actuator_ms"] / 1000)
            for spot, serial in docked.items():
                rig.sim.dock(int(spot), serial)
            rigs.append(await stack.enter_async_context(rig))
        for rig in rigs:
            await rig.accepted(within=30)
        print("stations ready", flush=True)
        await asyncio.Event().wait()  # until terminated


# ── the database ──────────────────────────────────────────────────────────────────────


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
    from kickstand.cloud.seed import DEMO_CONFIRMED_AT, rider_permissions, seed_demo

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
            for number in range(1, SPOTS_PER_STATION + 1):
                spot = Spot(station_id=station.id, displayed_number=number)
                s.add(spot)
                await s.flush()
                if number in docked:
                    s.add(Vehicle(serial_number=docked[number], vehicle_type=VehicleType.BIKE,
                                  network_id=network.id, spot_id=spot.id))
        # Cheap demo-grade hashes: 50 logins with the production cost would take ~15 s of
        # API CPU before the first unlock (the bench measures unlocks, not logins).
        password_hash = hash_password(RIDER_PASSWORD, demo=True)
        for i in range(riders):
            s.add(User(email=f"rider{i:03d}@bench.example.com", password_hash=password_hash,
                       role=UserRole.RIDER, permissions=rider_permissions(network.id),
                       wallet_balance=100, email_confirmed_at=DEMO_CONFIRMED_AT))
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


# ── CPU accounting ────────────────────────────────────────────────────────────────────


class CpuMeter:
    """Cumulative CPU seconds per process group, and for the whole machine.

    Services count their reaped children too. The PostgreSQL backends serving one
    database are found in pg_stat_activity (queried from another database, so the
    meter's own backend is not among them) and sampled every CPU_SAMPLE_S: a backend
    that has gone keeps its last reading, so the pool's connections that come and go
    during a workload are counted up to their last sample.
    """

    def __init__(self, services: dict[str, list[int]], admin_dsn: str, database: str) -> None:
        self.services, self.admin_dsn, self.database = services, admin_dsn, database
        self._procs: dict[int, psutil.Process] = {}
        self._last: dict[int, float] = {}  # pid → last CPU seconds read
        self._backends: set[int] = set()
        self._lock = asyncio.Lock()
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> CpuMeter:
        import asyncpg

        self._conn = await asyncpg.connect(self.admin_dsn)
        await self._sample_backends()
        self._task = asyncio.create_task(self._sample_forever())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            await self._conn.close()

    @property
    def backends_seen(self) -> int:
        return len(self._backends)

    async def mark(self) -> dict[str, float]:
        await self._sample_backends()
        seconds = {name: sum(self._cpu(pid, children=True) for pid in pids)
                   for name, pids in self.services.items()}
        seconds["driver"] = time.process_time()
        seconds["postgres"] = sum(self._last.get(pid, 0.0) for pid in self._backends)
        t = psutil.cpu_times()  # Linux; guest time is already in user
        seconds["machine"] = t.user + t.nice + t.system + t.irq + t.softirq + t.steal
        return seconds

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(CPU_SAMPLE_S)
            await self._sample_backends()

    async def _sample_backends(self) -> None:
        assert self._conn is not None
        async with self._lock:
            rows = await self._conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1", self.database
            )
        for (pid,) in rows:
            self._backends.add(pid)
            self._cpu(pid, children=False)

    def _cpu(self, pid: int, *, children: bool) -> float:
        try:
            proc = self._procs.get(pid) or self._procs.setdefault(pid, psutil.Process(pid))
            t = proc.cpu_times()
        except psutil.Error:
            return self._last.get(pid, 0.0)  # gone since: its last reading stands
        seconds = t.user + t.system + (t.children_user + t.children_system if children else 0.0)
        self._last[pid] = seconds
        return seconds


def cpu_delta(start: dict[str, float], end: dict[str, float]) -> dict[str, float]:
    return {name: end[name] - start[name] for name in start}


# ── the riders ────────────────────────────────────────────────────────────────────────


@dataclass
class Rider:
    email: str
    spot_id: int
    conn: KeepAliveConnection
    token: str = ""

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Tally:
    """One workload's figures."""

    latencies: list[float] = field(default_factory=list)  # ms, successful unlocks
    failures: Counter[str] = field(default_factory=Counter)
    wall: dict[int, tuple[float, float]] = field(default_factory=dict)  # rent → (sent, answered)
    polls: int = 0
    reconnects: int = 0  # timed requests that had to open a new connection
    last_answered: float = 0.0  # monotonic
    busy_s: float = 0.0  # the unlock rate's time: first request to last answer (per herd)
    cpu_s: dict[str, float] = field(default_factory=dict)

    def add_cpu(self, delta: dict[str, float]) -> None:
        for name, seconds in delta.items():
            self.cpu_s[name] = self.cpu_s.get(name, 0.0) + seconds


async def unlock(rider: Rider, tally: Tally) -> int | None:
    """One timed ``POST /v1/rents``; the rent id, or None after tallying the failure."""
    t0 = time.perf_counter()
    sent = time.time()
    connects = rider.conn.connects
    try:
        r = await rider.conn.request(
            "POST", "/v1/rents", json_body={"spot_id": rider.spot_id},
            headers={**rider.headers(), "Idempotency-Key": f"bench-{uuid.uuid4()}"},
        )
    except HttpError as exc:
        tally.failures[exc.reason] += 1
        return None
    elapsed = (time.perf_counter() - t0) * 1000
    tally.reconnects += rider.conn.connects != connects
    tally.last_answered = max(tally.last_answered, time.monotonic())
    if r.status == 201:
        rent_id: int = r.json()["data"]["rent_id"]
        tally.latencies.append(elapsed)
        tally.wall[rent_id] = (sent, time.time())
        return rent_id
    try:
        body = r.json()
    except ValueError:  # uvicorn's own 500 is plain text
        body = {"message": r.body.decode(errors="replace")}
    reason = str(body.get("reason") or f"http {r.status}")
    tally.failures[reason] += 1
    if tally.failures[reason] <= 2:
        print(f"  {reason}: {str(body.get('message', ''))[:160]}", flush=True)
    return None


async def current_rents(rider: Rider) -> list[dict[str, Any]]:
    """``GET /v1/rents`` as the app does."""
    r = await rider.conn.request("GET", "/v1/rents", headers=rider.headers())
    if r.status != 200:
        raise HttpError(f"http {r.status}", r.body[:300].decode(errors="replace"))
    rents: list[dict[str, Any]] = r.json()["data"]
    return rents


async def wait_rent_over(rider: Rider, rent_id: int, tally: Tally) -> None:
    """Poll until the rent is no longer current."""
    deadline = time.monotonic() + RENT_END_WAIT_S
    while time.monotonic() < deadline:
        await asyncio.sleep(POLL_S)
        tally.polls += 1
        try:
            rents = await current_rents(rider)
        except HttpError as exc:
            tally.failures[f"GET /v1/rents {exc.reason}"] += 1
            continue
        if all(item.get("rent_id") != rent_id for item in rents):
            return
    tally.failures["rent still current"] += 1


async def riders_workload(riders: list[Rider], args: argparse.Namespace,
                          meter: CpuMeter, think_s: float) -> Tally:
    tally = Tally()
    rng = random.Random(SEED)
    offsets = [rng.uniform(0, AGENT_UNLOCK_WINDOW_S + think_s) for _ in riders]
    stop_at = None if args.duration is None else time.monotonic() + args.duration

    async def ride(rider: Rider, offset: float) -> None:
        await asyncio.sleep(offset)
        attempts = 0
        while (time.monotonic() < stop_at) if stop_at is not None \
                else (attempts < args.unlocks_per_rider):
            attempts += 1
            rent_id = await unlock(rider, tally)
            if rent_id is None:
                await asyncio.sleep(POLL_S)  # the app would not hammer a refusal either
            else:
                await wait_rent_over(rider, rent_id, tally)
            if think_s:  # looking at the map, walking to the bike: exponential, seeded
                await asyncio.sleep(rng.expovariate(1 / think_s))

    start = await meter.mark()
    t0 = time.monotonic()
    await asyncio.gather(*(ride(r, o) for r, o in zip(riders, offsets, strict=True)))
    tally.busy_s = tally.last_answered - t0
    tally.add_cpu(cpu_delta(start, await meter.mark()))
    return tally


async def burst_workload(riders: list[Rider], rounds: int, meter: CpuMeter) -> Tally:
    tally = Tally()
    for rnd in range(rounds):
        # The app refreshes its view first: no herd request pays for a connection that
        # uvicorn closed while the rider waited for the others.
        for res in await asyncio.gather(*(current_rents(r) for r in riders),
                                        return_exceptions=True):
            if isinstance(res, HttpError):
                tally.failures[f"GET /v1/rents {res.reason}"] += 1
            elif isinstance(res, BaseException):
                raise res
        start = await meter.mark()
        t0 = time.monotonic()
        rent_ids = await asyncio.gather(*(unlock(r, tally) for r in riders))
        tally.busy_s += time.monotonic() - t0
        tally.add_cpu(cpu_delta(start, await meter.mark()))
        # Outside the herd's CPU window: the app's polls until every rent is over.
        await asyncio.gather(*(wait_rent_over(r, rent_id, tally)
                               for r, rent_id in zip(riders, rent_ids, strict=True)
                               if rent_id is not None))
        print(f"burst round {rnd + 1}: {len(tally.latencies)} unlocked so far, "
              f"failures {dict(tally.failures)}", flush=True)
    return tally


async def log_in(riders: list[Rider]) -> None:
    """Each rider logs in on its own connection (which stays open), then loads its
    current rents once: connections, the pools and the token path are warm."""

    async def one(rider: Rider) -> None:
        r = await rider.conn.request("POST", "/v1/auth/login", json_body={
            "email": rider.email, "password": RIDER_PASSWORD})
        if r.status != 200:
            raise RuntimeError(f"login of {rider.email}: HTTP {r.status} {r.body[:300]!r}")
        rider.token = r.json()["data"]["token"]
        await current_rents(rider)

    await asyncio.gather(*(one(r) for r in riders))


# ── the report ────────────────────────────────────────────────────────────────────────


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def spread(values: list[float], minus: float = 0.0) -> str:
    p50, p99 = percentile(values, 50) - minus, percentile(values, 99) - minus
    mean, top = statistics.mean(values) - minus, max(values) - minus
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (mean {mean:.1f} ms, max {top:.1f} ms)"


CPU_GROUPS = ("api", "ingest", "stations", "driver", "postgres", "mosquitto")


def cpu_line(cpu_s: dict[str, float], unlocks: int, riders: int) -> str:
    per = {name: cpu_s[name] * 1000 / unlocks for name in cpu_s}
    total = sum(per[name] for name in CPU_GROUPS)
    cores = psutil.cpu_count() or 1
    parts = ", ".join(f"{name} {per[name]:.1f}" for name in CPU_GROUPS)
    return (f"cpu ms per unlock: {parts} (total {total:.1f}; {cores} cores → floor for "
            f"{riders} at once ≈ {total * riders / cores:.0f} ms, ceiling ≈ "
            f"{cores * 1000 / total:.0f} unlocks/s); other processes on the machine "
            f"{per['machine'] - total:.1f}")


def report(title: str, tally: Tally, stages: dict[str, list[float]], args: argparse.Namespace,
           riders: int) -> None:
    failed = sum(tally.failures.values())
    print(f"== {title}")
    if not tally.latencies:
        print(f"  no unlock succeeded: {dict(tally.failures)}")
        return
    n = len(tally.latencies)
    span = max(tally.busy_s, 1e-9)
    print(f"  unlocks: {n} in {span:.1f} s ({n / span:.1f} unlocks/s), failed: {failed}"
          f"{' ' + str(dict(tally.failures)) if failed else ''}, "
          f"polls per unlock: {tally.polls / n:.1f}, reconnects: {tally.reconnects}")
    for name, values in stages.items():
        if values:
            print(f"  stage {name}: p50 {percentile(values, 50):.1f} ms, "
                  f"p99 {percentile(values, 99):.1f} ms")
    print(f"  total: {spread(tally.latencies)}")
    print(f"  beyond actuator: {spread(tally.latencies, args.actuator_ms)}")
    print(f"  {cpu_line(tally.cpu_s, n, riders)}")


# ── the run ───────────────────────────────────────────────────────────────────────────


async def wait_http(host: str, port: int, path: str, wait_s: float = 60) -> None:
    deadline = time.monotonic() + wait_s
    async with KeepAliveConnection(host, port, timeout_s=2) as conn:
        while True:
            with contextlib.suppress(HttpError):
                if (await conn.request("GET", path)).status == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"http://{host}:{port}{path} not up")
            await asyncio.sleep(0.2)


async def wait_line(proc: asyncio.subprocess.Process, text: str, wait_s: float = 90) -> None:
    assert proc.stdout is not None
    async with asyncio.timeout(wait_s):
        while True:
            line = await proc.stdout.readline()
            if not line:
                raise RuntimeError(f"child exited before {text!r}")
            if text in line.decode():
                return


def plan_stations(riders: int) -> dict[str, dict[int, str]]:
    """Station device id → {spot number → docked bike serial}, one bike per rider."""
    serials = iter(f"BK{n:04d}" for n in range(1, riders + 1))
    stations: dict[str, dict[int, str]] = {}
    for s in range((riders + SPOTS_PER_STATION - 1) // SPOTS_PER_STATION):
        batch = list(itertools.islice(serials, SPOTS_PER_STATION))
        stations[f"st-{9000 + s}"] = dict(enumerate(batch, start=1))
    return stations


class Children:
    """The child processes, each logging to a file; all terminated at exit."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self._files: list[IO[bytes]] = []

    async def start(self, name: str, *argv: str, env: dict[str, str] | None = None,
                    stdout_pipe: bool = False) -> asyncio.subprocess.Process:
        log = (self.logs / f"{name}.log").open("wb")
        self._files.append(log)
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stderr=log,
            stdout=asyncio.subprocess.PIPE if stdout_pipe else log,
        )
        self.procs[name] = proc
        return proc

    def pids(self, prefix: str) -> list[int]:
        return [p.pid for name, p in self.procs.items() if name.startswith(prefix)]

    def print_log_tails(self, lines: int = 15) -> None:
        for name in self.procs:
            text = (self.logs / f"{name}.log").read_text(errors="replace").splitlines()
            if text:
                print(f"-- {name} log (last {lines} lines):", *text[-lines:], sep="\n  ",
                      file=sys.stderr)

    async def terminate(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in self.procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for log in self._files:
            log.close()


def station_identities(tls: DeviceTls, stations: dict[str, dict[int, str]],
                       directory: Path) -> dict[str, dict[str, str]]:
    """Each station's key and certificate (CN = its id), signed by the broker's CA: the
    agents' TLS settings."""
    from kickstand.cloud import pki

    identities: dict[str, dict[str, str]] = {}
    directory.mkdir(parents=True, exist_ok=True)
    for device_id in stations:
        key = pki.device_key()
        pki.write_pem(directory / f"{device_id}.pem",
                      tls.ca.sign_csr(pki.device_csr(key, device_id), device_id, 30))
        pki.write_pem(directory / f"{device_id}.key", key)
        identities[device_id] = {"mqtt_ca_file": str(tls.ca_file),
                                 "mqtt_cert_file": str(directory / f"{device_id}.pem"),
                                 "mqtt_key_file": str(directory / f"{device_id}.key")}
    return identities


async def drive(args: argparse.Namespace, *, tls: bool = False) -> tuple[Tally, Tally, Tally]:
    from kickstand.testing import DeviceTls, MosquittoService, open_postgres
    from kickstand.testing.mosquitto import API_ACCOUNT

    stations = plan_stations(args.riders)
    label = "[tls] " if tls else ("[plain] " if args.tls else "")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        device_tls = DeviceTls.create(tmp / "pki") if tls else None
        with MosquittoService(tls=device_tls) as broker, open_postgres() as pg:
            return await _drive(args, tmp, broker, pg, stations, label,
                                API_ACCOUNT if tls else None)


async def _drive(args: argparse.Namespace, tmp: Path, broker: MosquittoService, pg: Any,
                 stations: dict[str, dict[int, str]], label: str,
                 api_account: str | None) -> tuple[Tally, Tally, Tally]:
    from kickstand.cloud.broker import free_port
    from kickstand.cloud.commands import load_signer
    from kickstand.cloud.config import Settings

    db = pg.new_database()
    await prepare_database(db.url, stations, args.riders)
    var = tmp / "var"
    key_file = var / "command-signing.key"
    public_hex = load_signer(
        Settings(VAR_DIR=var, COMMAND_SIGNING_KEY_FILE=key_file)).public_key.hex()
    env = {
        **os.environ,
        "DATABASE_URL": db.url,
        "MQTT_URL": broker.url,
        "VAR_DIR": str(var),
        "COMMAND_SIGNING_KEY_FILE": str(key_file),
        "COMMAND_TIMEOUT_S": "5",
        "RENT_UNLOCK_WINDOW_S": str(API_UNLOCK_WINDOW_S),
    }
    children = Children(tmp)
    riders: list[Rider] = []
    try:
        await children.start(
            "ingest", sys.executable, "-m", "kickstand.cloud", "ingest", "--workers", "1",
            "--client-id-prefix", f"bench-{uuid.uuid4().hex[:6]}", env=env)
        ports = [free_port() for _ in range(args.api_processes)]
        # TLS: the API with its own broker account (commands out, results in).
        api_env = env if api_account is None else {
            **env, "MQTT_URL": broker.service_url(api_account)}
        for n, port in enumerate(ports):  # each API process has its own gateway
            await children.start(f"api-{n}", sys.executable, "-m", "kickstand.cloud", "api",
                                 "--port", str(port), env=api_env)
        spec = {
            "host": broker.host, "port": broker.tls_port or broker.port, "key": public_hex,
            "workdir": str(tmp / "stations"), "spots": SPOTS_PER_STATION,
            "stations": stations, "actuator_ms": args.actuator_ms,
            "window_s": AGENT_UNLOCK_WINDOW_S,
            "identities": (station_identities(broker.tls, stations, tmp / "identities")
                           if broker.tls is not None else None),
        }
        child = await children.start("stations", sys.executable, __file__,
                                     "--stations-child", json.dumps(spec), stdout_pipe=True)
        for port in ports:
            await wait_http("127.0.0.1", port, "/health")
        await wait_line(child, "stations ready")
        riders = [
            Rider(f"rider{i:03d}@bench.example.com", spot,
                  KeepAliveConnection("127.0.0.1", ports[i % len(ports)]))
            for i, spot in enumerate(await spot_ids(db.url, stations))
        ]
        await log_in(riders)
        services = {"api": children.pids("api-"), "ingest": children.pids("ingest"),
                    "stations": children.pids("stations"), "mosquitto": [broker.pid or 0]}
        async with CpuMeter(services, pg.dsn_for("postgres"), db.name) as meter:
            ridden = await riders_workload(riders, args, meter, args.think_s)
            print(f"riders: {len(ridden.latencies)} unlocked, "
                  f"failures {dict(ridden.failures)}", flush=True)
            stressed = await riders_workload(riders, args, meter, 0.0)
            print(f"stress: {len(stressed.latencies)} unlocked, "
                  f"failures {dict(stressed.failures)}", flush=True)
            burst = await burst_workload(riders, args.rounds, meter)
    except Exception:
        children.print_log_tails()
        raise
    finally:
        for rider in riders:
            await rider.conn.close()
        await children.terminate()
    reconnects = sum(r.conn.connects - 1 for r in riders)
    ridden_stages = await breakdown(db.url, ridden.wall)
    stressed_stages = await breakdown(db.url, stressed.wall)
    burst_stages = await breakdown(db.url, burst.wall)

    print(f"{label}API processes: {args.api_processes}, stations: {len(stations)} x "
          f"{SPOTS_PER_STATION} spots (one agent process), ingest: 1 worker; "
          f"simulated actuator: {args.actuator_ms:.0f} ms (reported apart); "
          f"rider reconnects: {reconnects}; PostgreSQL backends metered: {meter.backends_seen}")
    how_long = (f"for {args.duration:.0f} s" if args.duration is not None
                else f"{args.unlocks_per_rider} unlocks each")
    report(f"{label}riders: {args.riders} closed-loop riders, {how_long}, GET /v1/rents every "
           f"{POLL_S} s while a rent is current, then {args.think_s:.0f} s mean think time "
           "(cpu: whole workload)", ridden, ridden_stages, args, args.riders)
    report(f"{label}stress: the same riders with no think time: each unlocks again as soon as "
           f"its rent is over ({AGENT_UNLOCK_WINDOW_S} s unlock window)",
           stressed, stressed_stages, args, args.riders)
    report(f"{label}burst: {args.riders} riders fire at once, {args.rounds} rounds "
           "(cpu: the herds only)", burst, burst_stages, args, args.riders)
    if not ridden.latencies or not stressed.latencies or not burst.latencies:
        raise SystemExit("a workload had no successful unlock")
    for prefix, tally in (("stress unlock", stressed), ("burst unlock", burst),
                          ("unlock", ridden)):
        print(f"{label}{prefix} p50_ms: {percentile(tally.latencies, 50):.1f} "
              f"p99_ms: {percentile(tally.latencies, 99):.1f}")
    return ridden, stressed, burst


def tls_cost(plain: Tally, secure: Tally, actuator_ms: float) -> None:
    """What TLS adds to what riders wait for, beyond the simulated actuator."""
    for q in (50, 99):
        before = percentile(plain.latencies, q) - actuator_ms
        after = percentile(secure.latencies, q) - actuator_ms
        print(f"riders beyond actuator p{q}_ms plain: {before:.1f} tls: {after:.1f} "
              f"(tls - plain: {after - before:+.1f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--riders", type=int, default=50)
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--unlocks-per-rider", type=int, default=4)
    amount.add_argument("--duration", type=float, default=None,
                        help="seconds of the riders workload, instead of --unlocks-per-rider")
    parser.add_argument("--rounds", type=int, default=2, help="bursts")
    parser.add_argument("--think-s", type=float, default=THINK_S,
                        help="riders: mean pause between a rent's end and the next unlock")
    parser.add_argument("--actuator-ms", type=float, default=20.0)
    parser.add_argument("--api-processes", type=int, default=1)
    parser.add_argument("--tls", action="store_true",
                        help="run plain, then with the deployment's TLS policy; compare")
    parser.add_argument("--stations-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if min(args.riders, args.api_processes, args.unlocks_per_rider, args.rounds) < 1:
        parser.error("--riders, --api-processes, --unlocks-per-rider and --rounds must be ≥ 1")
    if args.stations_child:
        import logging

        logging.basicConfig(level=logging.ERROR)
        asyncio.run(run_stations(json.loads(args.stations_child)))
        return
    plain = asyncio.run(drive(args))
    if args.tls:
        secure = asyncio.run(drive(args, tls=True))
        tls_cost(plain[0], secure[0], args.actuator_ms)


if __name__ == "__main__":
    main()
