"""Backlog drain: a station fleet back from an hour offline, against the live rate.

Real Mosquitto and PostgreSQL (the harness's own), real ingest workers in this process,
and every station a real edge link (CloudLink + DiskQueue, end-to-end acks on, as the
station agent runs it) in this process too. Per station and simulated hour: telemetry
every minute and ``--rides`` rides (unlock statuses, Unlocked, the command's result,
VehicleRemoved, and ten minutes later VehicleDocked, Locked, the docked status), stamped
on the device clock inside that hour, each rent and unlock command on record as the rent
API leaves them.

- **backlog**: the fleet's queues are filled while it is offline; then every station
  connects at once. Time until every queue is empty, i.e. until the cloud has applied
  (committed) every message and its Ack came back: a message leaves a device's queue only
  on its Ack (SPEC §4.6).
- **live**: a second fleet of the same size, online first; the same mix is emitted as fast
  as the stations can queue it, round-robin, and timed the same way.

Both figures count from the first message to the last Ack, with the workers' CPU (this
process: devices included, both phases alike); the workers send their Acks at once
(``ack_delay_s`` 0, not the deployment's ACK_DELAY_S), so the last Ack marks the last
commit. Then the Ack traffic: bytes on the wire
(MQTT 3.1.1 PUBLISH QoS 0: fixed header, topic, payload) per acknowledged message in each
phase, and what Acks add to a day of a vehicle (benchmarks/vehicle_data_budget.py's duty
cycle, where the Acks are merged over ACK_DELAY_S as ingest does) in that day's total.

    .venv/bin/python benchmarks/backlog_drain.py [--stations 150] [--rides 3] [--workers 2]

Last line: ``backlog drain events/s: N (live: M)``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiomqtt
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vehicle_data_budget as budget  # the vehicle's day, to fold the Acks into

from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.ingest import IngestWorker
from kickstand.cloud.ingest.tables import CommandStatus, DeviceCommand
from kickstand.cloud.migrations import upgrade
from kickstand.cloud.models import (
    Cluster,
    Device,
    DeviceKind,
    Network,
    Rent,
    RentKind,
    RentStatus,
    Spot,
    Station,
    Trip,
    User,
    Vehicle,
    VehicleType,
)
from kickstand.cloud.seed import seed_demo
from kickstand.cloud.telemetry import open_telemetry_store
from kickstand.edge.core import DeviceClock, DiskQueue, SqliteReplayGuard
from kickstand.edge.core.link import CloudLink, CommandRouter, LinkConfig
from kickstand.protocol import topics
from kickstand.protocol.signing import CommandVerifier, key_id
from kickstand.protocol.transport import SOCKET_OPTIONS
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m
from kickstand.testing import MosquittoService, open_postgres

HOUR_MS = 3_600_000
LOCKED, OPEN = pe.LockState.LOCKED, pe.LockState.OPEN


@dataclass
class Ride:
    spot: int
    serial: str
    command_id: bytes
    start_ms: int  # device time of the unlock


@dataclass
class StationPlan:
    device_id: str
    rides: list[Ride] = field(default_factory=list)


async def add_fleet(db_url: str, tag: str, stations: int, rides: int, hour0_ms: int,
                    ) -> list[StationPlan]:
    """``stations`` stations of 6 spots, vehicles docked in spots 1..``rides``, and per
    vehicle a rider, a pending rent and its unlock command, at the ride's device time."""
    plans: list[StationPlan] = []
    engine = create_engine(db_url)
    async with create_sessionmaker(engine)() as s, s.begin():
        network_id = (await s.execute(select(Network.id))).scalars().first()
        clusters = (await s.execute(select(Cluster.id))).scalars().all()
        for n in range(1, stations + 1):
            plan = StationPlan(f"st-{tag}{n:04d}")
            s.add(Device(device_id=plan.device_id, kind=DeviceKind.STATION))
            station = Station(device_id=plan.device_id, cluster_id=clusters[n % len(clusters)],
                              name=f"drain {tag} {n}")
            s.add(station)
            await s.flush()
            spots = [Spot(station_id=station.id, displayed_number=k) for k in range(1, 7)]
            s.add_all(spots)
            await s.flush()
            for k in range(1, rides + 1):
                serial = f"{tag}{n:04d}{k}"
                start_ms = hour0_ms + (k * HOUR_MS // (rides + 2)) + n * 37
                at = datetime.fromtimestamp(start_ms / 1000, UTC)
                s.add(Device(device_id=f"vh-{serial}", kind=DeviceKind.VEHICLE))
                vehicle = Vehicle(serial_number=serial, vehicle_type=VehicleType.BIKE,
                                  network_id=network_id, device_id=f"vh-{serial}",
                                  spot_id=spots[k - 1].id, docked_at=at - timedelta(hours=2),
                                  battery_level=90)
                rider = User(email=f"drain-{tag}-{n}-{k}@example.com", password_hash="x",
                             wallet_balance=Decimal("1000"))
                s.add_all([vehicle, rider])
                await s.flush()
                rent = Rent(user_id=rider.id, vehicle_id=vehicle.id, spot_id=spots[k - 1].id,
                            kind=RentKind.APP_SPOT, status=RentStatus.PENDING,
                            created_at=at - timedelta(seconds=2),
                            expires_at=at + timedelta(seconds=60))
                s.add(rent)
                await s.flush()
                command_id = uuid.uuid4().bytes
                s.add(DeviceCommand(command_id=command_id.hex(), device_id=plan.device_id,
                                    command_type="unlock", spot=k, rent_id=rent.id,
                                    issued_at=at - timedelta(seconds=2),
                                    expires_at=at + timedelta(seconds=60), sent_by="bench",
                                    status=CommandStatus.PENDING))
                plan.rides.append(Ride(k, serial, command_id, start_ms))
            plans.append(plan)
    await engine.dispose()
    return plans


def hour_of(plan: StationPlan, hour0_ms: int) -> list[tuple[int, m.UpBody]]:
    """What the station queues in its hour, in device-time order."""
    out: list[tuple[int, m.UpBody]] = [
        (hour0_ms + minute * 60_000 + 500,
         m.Telemetry(temperature_c=21.5, energy_wh=1000 + minute, power_w=40))
        for minute in range(60)
    ]
    for r in plan.rides:
        t, spot, serial, cid = r.start_ms, r.spot, r.serial, r.command_id
        out += [
            (t, m.Status(spot, pe.SpotState.UNLOCKING, LOCKED, serial)),
            (t + 400, m.Unlocked(spot, pe.LockCause.COMMAND, cid)),
            (t + 401, m.Status(spot, pe.SpotState.UNLOCKED_AWAITING_REMOVAL, OPEN, serial)),
            (t + 402, m.CommandResult(cid, pe.ResultStatus.DONE)),
            (t + 5_000, m.VehicleRemoved(spot, serial, command_id=cid)),
            (t + 5_001, m.Status(spot, pe.SpotState.EMPTY, OPEN)),
            (t + 600_000, m.VehicleDocked(spot + 3, serial)),
            (t + 600_500, m.Locked(spot + 3, pe.LockCause.DOCKING)),
            (t + 600_501, m.Status(spot + 3, pe.SpotState.DOCKED_LOCKED, LOCKED, serial)),
        ]
    out.sort(key=lambda item: item[0])
    return out


class SetClock:
    """The wall clock, or the time the benchmark set while it queues a message of the hour
    (publication and Ack timing stay on the wall clock)."""

    def __init__(self) -> None:
        self.ms: int | None = None

    def __call__(self) -> int:
        return self.ms if self.ms is not None else time.time_ns() // 1_000_000

    @contextlib.contextmanager
    def at(self, ms: int) -> Iterator[None]:
        self.ms = ms
        try:
            yield
        finally:
            self.ms = None


@dataclass
class EdgeStation:
    link: CloudLink
    queue: DiskQueue
    guard: SqliteReplayGuard
    clock: SetClock
    task: asyncio.Task[None] | None = None


def make_device(broker: MosquittoService, device_id: str, state: Path) -> EdgeStation:
    clock = SetClock()
    # The agent's FULL fsync per message would time the disk of this machine, not ingest.
    queue = DiskQueue(state / f"{device_id}.db", clock=clock, synchronous="NORMAL")
    guard = SqliteReplayGuard(state / f"{device_id}-replay.db")
    pub = bytes(32)
    link = CloudLink(
        LinkConfig(device_id, broker.host, broker.port, reconnect_min_s=0.2,
                   reconnect_max_s=2.0),
        queue=queue,
        birth=lambda: m.Birth(pe.DeviceKind.STATION, "1.0", "drain"),
        verifier=CommandVerifier(device_id, {key_id(pub): pub}, guard),
        router=CommandRouter(),
        clock=DeviceClock(),
    )
    return EdgeStation(link, queue, guard, clock)


async def stop_devices(devices: list[EdgeStation]) -> None:
    for d in devices:
        if d.task is not None:
            d.task.cancel()
    for d in devices:
        if d.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await d.task
        d.queue.close()
        d.guard.close()


@dataclass
class AckSniffer:
    """Counts the Acks on the wire (the cloud account may read ks/#)."""

    broker: MosquittoService
    count: int = 0
    wire_bytes: int = 0

    async def run(self, ready: asyncio.Event) -> None:
        async with aiomqtt.Client(self.broker.host, self.broker.port,
                                  username=self.broker.cloud_username,
                                  password=self.broker.cloud_password,
                                  identifier=f"ack-sniffer-{uuid.uuid4().hex[:6]}",
                                  socket_options=SOCKET_OPTIONS) as client:
            await client.subscribe(f"{topics.ROOT}/c/+/ack", qos=0)
            ready.set()
            async for message in client.messages:
                payload = message.payload
                assert isinstance(payload, bytes)
                self.count += 1
                self.wire_bytes += budget.publish_bytes(str(message.topic), len(payload), 0)


@dataclass
class Phase:
    name: str
    messages: int
    seconds: float
    cpu_s: float
    acks: int
    ack_bytes: int
    republished: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


async def drained(devices: list[EdgeStation], within: float) -> None:
    deadline = time.perf_counter() + within
    while any(d.queue.depth() for d in devices):
        if time.perf_counter() > deadline:
            left = sum(d.queue.depth() for d in devices)
            raise RuntimeError(f"not drained within {within:.0f} s: {left} messages left")
        await asyncio.sleep(0.01)


def fill(device: EdgeStation, plan: StationPlan, hour0_ms: int) -> int:
    items = hour_of(plan, hour0_ms)
    for t, body in items:
        with device.clock.at(t):
            device.queue.append(body)
    return len(items)


async def backlog_phase(broker: MosquittoService, plans: list[StationPlan], state: Path,
                        hour0_ms: int, sniffer: AckSniffer) -> Phase:
    devices = [make_device(broker, p.device_id, state) for p in plans]
    total = sum(fill(d, p, hour0_ms) for d, p in zip(devices, plans, strict=True))
    acks0, bytes0 = sniffer.count, sniffer.wire_bytes
    t0, cpu0 = time.perf_counter(), time.process_time()
    try:
        for d in devices:
            d.task = asyncio.create_task(d.link.run())
        await drained(devices, within=600)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        republished = sum(d.link.counters.republished for d in devices)
    finally:
        await stop_devices(devices)
    return Phase("backlog", total, seconds, cpu, sniffer.count - acks0,
                 sniffer.wire_bytes - bytes0, republished)


async def live_phase(broker: MosquittoService, plans: list[StationPlan], state: Path,
                     hour0_ms: int, sniffer: AckSniffer) -> Phase:
    devices = [make_device(broker, p.device_id, state) for p in plans]
    try:
        for d in devices:
            d.task = asyncio.create_task(d.link.run())
        for d in devices:
            await asyncio.wait_for(d.link.accepted.wait(), 60)
        hours = [hour_of(p, hour0_ms) for p in plans]
        total = sum(len(h) for h in hours)
        acks0, bytes0 = sniffer.count, sniffer.wire_bytes
        t0, cpu0 = time.perf_counter(), time.process_time()
        for i in range(max(len(h) for h in hours)):
            for d, h in zip(devices, hours, strict=True):
                if i < len(h):
                    t, body = h[i]
                    with d.clock.at(t):
                        d.link.emit(body)
            await asyncio.sleep(0)  # one message per station per turn, as they come
        await drained(devices, within=600)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        republished = sum(d.link.counters.republished for d in devices)
    finally:
        await stop_devices(devices)
    return Phase("live", total, seconds, cpu, sniffer.count - acks0,
                 sniffer.wire_bytes - bytes0, republished)


def vehicle_day_with_acks() -> tuple[int, int, int, int]:
    """(sequenced messages, Acks, their bytes, bytes/day in all): vehicle_data_budget.py's
    day, which counts the Acks as ingest merges them (ACK_DELAY_S)."""
    day = budget.Day(budget.VehicleSettings(device_id=budget.DEVICE, serial_number=budget.SERIAL))
    day.run()
    return day.seq, day.cbor.count["Ack"], day.cbor.by_kind["Ack"], day.cbor.total


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stations", type=int, default=150)
    parser.add_argument("--rides", type=int, default=3, help="per station and hour (<= 3)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-max", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    hour0_ms = int(time.time() * 1000) - HOUR_MS - 60_000  # the hour just gone
    rides = max(0, min(args.rides, 3))
    with tempfile.TemporaryDirectory() as tmpdir, MosquittoService() as broker, \
            open_postgres() as pg:
        tmp = Path(tmpdir)
        db_url = pg.create_database()
        engine = create_engine(db_url, pool_size=args.workers + 2)
        await upgrade(engine)
        maker = create_sessionmaker(engine)
        async with maker() as s, s.begin():
            await seed_demo(s)
        backlog_plans = await add_fleet(db_url, "B", args.stations, rides, hour0_ms)
        live_plans = await add_fleet(db_url, "L", args.stations, rides, hour0_ms)
        store = open_telemetry_store(None, "kickstand", spool_dir=tmp / "spool",
                                     local_path=tmp / "telemetry.sqlite3")
        group = f"drain{uuid.uuid4().hex[:6]}"
        workers = [
            IngestWorker(broker.url, maker, telemetry=store, client_id=f"{group}-{n}",
                         group=group, batch_max=args.batch_max)
            for n in range(args.workers)
        ]
        sniffer = AckSniffer(broker)
        ready = asyncio.Event()
        sniffing = asyncio.create_task(sniffer.run(ready))
        async with store:
            await asyncio.wait_for(ready.wait(), 10)
            for w in workers:
                await w.start()
            try:
                backlog = await backlog_phase(broker, backlog_plans, tmp / "backlog", hour0_ms,
                                              sniffer)
                print(f"backlog: {backlog.messages} messages in {backlog.seconds:.1f} s",
                      flush=True)
                live = await live_phase(broker, live_plans, tmp / "live", hour0_ms, sniffer)
                print(f"live: {live.messages} messages in {live.seconds:.1f} s", flush=True)
            finally:
                for w in workers:
                    await w.stop()
                sniffing.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await sniffing
        async with maker() as s:
            trips = await s.scalar(select(func.count()).select_from(Trip))
        await engine.dispose()
    rejected: Counter[str] = sum((w.stats.rejected for w in workers), Counter())
    dead: Counter[str] = sum((w.stats.dead_lettered for w in workers), Counter())
    applied = sum(w.stats.applied for w in workers)
    duplicates = sum(w.stats.duplicates for w in workers)
    n_rides = 2 * args.stations * rides
    print(f"fleet: 2 x {args.stations} stations, {rides} rides each per simulated hour, "
          f"telemetry every minute; {args.workers} ingest worker(s), batch_max "
          f"{args.batch_max}; devices and workers in this process")
    print(f"ingest: applied {applied}, duplicates {duplicates}, rejected {dict(rejected)}, "
          f"dead letters {dict(dead)}; trips {trips} of {n_rides} rides")
    for p in (backlog, live):
        print(f"{p.name:8} {p.messages:7d} msgs {p.seconds:7.2f} s {p.rate:8.0f} msg/s "
              f"{p.cpu_s * 1000 / p.messages:6.3f} CPU ms/msg; {p.acks} Acks "
              f"({p.messages / max(p.acks, 1):.1f} msgs/Ack), {p.ack_bytes} B of Acks "
              f"({p.ack_bytes / p.messages:.2f} B/msg); republished {p.republished}")
    seq, acks, ack_bytes, day_bytes = vehicle_day_with_acks()
    print(f"vehicle day (vehicle_data_budget.py): {seq} sequenced messages, {acks} Acks merged "
          f"over {budget.ACK_DELAY_S:g} s: +{ack_bytes} B, {day_bytes} B/day in all "
          f"(target {budget.TARGET} B)")
    print(f"backlog drain events/s: {backlog.rate:.0f} (live: {live.rate:.0f})")


if __name__ == "__main__":
    asyncio.run(main())
