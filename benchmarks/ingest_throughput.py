"""Ingest throughput: status + telemetry messages per second through real Mosquitto into the
ingest workers (decode, dedupe, state upserts in PostgreSQL, telemetry to InfluxDB),
against a bare paho subscriber draining the same broker in the same run.

Method (same for both, so the publisher's speed never limits either): the consumer's
persistent session is subscribed, then disconnected; N messages are published into the
broker queue; the consumer reconnects and the time to drain the N messages is measured.
For ingest "drained" means applied and committed (the worker's PUBACK follows its commit).
A bare aiomqtt subscriber is measured too (paho vs aiomqtt for the ingest's MQTT side).
Medians of ``--rounds`` bare/ingest pairs. ``--live`` adds a live-flow figure (consumers
online, a publisher process sending; first to last message), where the publisher is the
limit for both. The fleet alert rules are off for the headline (they are measured apart:
``--alerts-messages``). Then an event mix, with the alert rules on and off: what the
devices send when every one of ``--event-stations`` x 3 docked vehicles and
``--event-floating`` lock-box vehicles is unlocked once (statuses, Unlocked, command
results, VehicleRemoved / VehicleDocked / Locked for a ride, UnlockExpired for an unlock
nobody used; rents and commands recorded beforehand as the rent API does). Every figure
comes with the CPU of the workers per message (this process while draining), which a busy
machine disturbs less than the rate.

    .venv/bin/python benchmarks/ingest_throughput.py [--messages 20000] [--workers 2] [--live]

Last line: ``ingest ratio: X (ingest N msg/s, bare M msg/s)``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiomqtt
import paho.mqtt.client as mqtt
from sqlalchemy import func, select, update

from kickstand.cloud.alerts.engine import AlertEngine
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.ingest import IngestWorker
from kickstand.cloud.ingest.tables import CommandStatus, DeviceCommand, DeviceStatus
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
    User,
    Vehicle,
    VehicleType,
)
from kickstand.cloud.seed import seed_demo
from kickstand.cloud.telemetry import open_telemetry_store
from kickstand.protocol import topics
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m
from kickstand.testing import InfluxService, MosquittoService, open_postgres

STATIONS = [f"st-{i:04d}" for i in range(1, 5)]
VEHICLES = [f"vh-LY{i:04d}" for i in range(1, 13)] + [f"vh-LYF{i:03d}" for i in range(1, 5)]


async def add_fleet(db_url: str, vehicles: int) -> None:
    """Free-floating vehicles (device + vehicle rows) on top of the demo network."""
    engine = create_engine(db_url)
    async with create_sessionmaker(engine)() as s, s.begin():
        network_id = (await s.execute(select(Network.id))).scalars().first()
        for i in range(1, vehicles + 1):
            serial = f"BX{i:04d}"
            s.add(Device(device_id=f"vh-{serial}", kind=DeviceKind.VEHICLE))
            s.add(Vehicle(serial_number=serial, vehicle_type=VehicleType.KICK_SCOOTER,
                          network_id=network_id, device_id=f"vh-{serial}", battery_level=90))
            VEHICLES.append(f"vh-{serial}")
    await engine.dispose()


async def mark_booted(db_url: str) -> None:
    """What each device's accepted birth leaves (ingest refuses the messages of a device
    never booted): a current boot on every device row."""
    engine = create_engine(db_url)
    async with create_sessionmaker(engine)() as s, s.begin():
        await s.execute(update(Device).where(Device.boot_id.is_(None)).values(boot_id="1"))
    await engine.dispose()


@dataclass
class EventFleet:
    """Stations with docked vehicles and free-floating vehicles, each with a pending rent
    and its unlock command on record (as the rent API leaves them): one unlock each."""

    tag: str
    stations: list[tuple[str, list[tuple[int, str]]]] = field(default_factory=list)
    floating: list[str] = field(default_factory=list)
    commands: dict[str, bytes] = field(default_factory=dict)  # serial -> command id


async def add_event_fleet(db_url: str, tag: str, stations: int, floating: int) -> EventFleet:
    """``stations`` stations of 6 spots with vehicles in spots 1-3, ``floating`` lock-box
    vehicles; for each vehicle a rider with money, a rent (pending) and an unlock command."""
    fleet = EventFleet(tag)
    engine = create_engine(db_url)
    now = datetime.now(UTC)
    async with create_sessionmaker(engine)() as s, s.begin():
        network_id = (await s.execute(select(Network.id))).scalars().first()
        clusters = (await s.execute(select(Cluster.id))).scalars().all()
        pending: list[tuple[Vehicle, Spot | None, str]] = []
        for n in range(1, stations + 1):
            device_id = f"st-{tag}{n:03d}"
            s.add(Device(device_id=device_id, kind=DeviceKind.STATION))
            station = Station(device_id=device_id, cluster_id=clusters[n % len(clusters)],
                              name=f"bench {tag} {n}")
            s.add(station)
            await s.flush()
            docked: list[tuple[int, str]] = []
            for number in range(1, 7):
                spot = Spot(station_id=station.id, displayed_number=number)
                s.add(spot)
                await s.flush()
                if number <= 3:
                    serial = f"{tag}S{n:03d}{number}"
                    s.add(Device(device_id=f"vh-{serial}", kind=DeviceKind.VEHICLE))
                    vehicle = Vehicle(serial_number=serial, vehicle_type=VehicleType.BIKE,
                                      network_id=network_id, device_id=f"vh-{serial}",
                                      spot_id=spot.id, docked_at=now - timedelta(hours=1),
                                      battery_level=90)
                    s.add(vehicle)
                    pending.append((vehicle, spot, device_id))
                    docked.append((number, serial))
            fleet.stations.append((device_id, docked))
        for n in range(1, floating + 1):
            serial = f"{tag}F{n:04d}"
            s.add(Device(device_id=f"vh-{serial}", kind=DeviceKind.VEHICLE))
            vehicle = Vehicle(serial_number=serial, vehicle_type=VehicleType.KICK_SCOOTER,
                              network_id=network_id, device_id=f"vh-{serial}", battery_level=90,
                              latitude=45.76 + n * 1e-5, longitude=4.84, position_at=now)
            s.add(vehicle)
            pending.append((vehicle, None, f"vh-{serial}"))
            fleet.floating.append(serial)
        # A rider per rent, as when everyone unlocks at once (no rider row shared by trips).
        riders = [
            User(email=f"bench-{tag}-{i}@example.com", password_hash="x",
                 wallet_balance=Decimal("1000"))
            for i in range(len(pending))
        ]
        s.add_all(riders)
        await s.flush()
        for rider, (vehicle, spot, target) in zip(riders, pending, strict=True):
            rent = Rent(user_id=rider.id, vehicle_id=vehicle.id,
                        spot_id=spot.id if spot is not None else None,
                        kind=RentKind.APP_SPOT if spot is not None else RentKind.APP_VEHICLE,
                        status=RentStatus.PENDING, created_at=now,
                        expires_at=now + timedelta(hours=1))
            s.add(rent)
            await s.flush()
            command_id = uuid.uuid4().bytes
            s.add(DeviceCommand(command_id=command_id.hex(), device_id=target,
                                command_type="unlock", spot=spot.displayed_number if spot else 0,
                                rent_id=rent.id, issued_at=now,
                                expires_at=now + timedelta(minutes=1), sent_by="bench",
                                status=CommandStatus.PENDING))
            fleet.commands[vehicle.serial_number] = command_id
    await engine.dispose()
    return fleet


def build_event_mix(fleet: EventFleet, boot: int = 11) -> list[tuple[str, bytes]]:
    """What the devices send for one unlock each, as the riders of the unlock benchmark make
    it: a station spot goes UNLOCKING, Unlocked, awaiting removal, command result; then two
    rides in three take the vehicle (VehicleRemoved, empty spot; later VehicleDocked in spot
    +3, Locked by docking, docked status) and one in three leaves it (UnlockExpired, locked
    status). A lock-box vehicle: Unlocked, result, status, later Locked, status. The stages
    of all unlocks interleave (everyone unlocks at once), each device's seq rising."""
    seqs: dict[str, int] = {}
    ts = time.time_ns() // 1_000_000 - 600_000
    stages: list[list[tuple[str, m.UpBody]]] = [[] for _ in range(6)]
    locked, open_ = pe.LockState.LOCKED, pe.LockState.OPEN
    n = 0
    for device_id, docked in fleet.stations:
        for spot, serial in docked:
            n += 1
            cid = fleet.commands[serial]
            stages[0].append((device_id, m.Status(spot, pe.SpotState.UNLOCKING, locked, serial)))
            stages[1].append((device_id, m.Unlocked(spot, pe.LockCause.COMMAND, cid)))
            stages[1].append((device_id, m.Status(
                spot, pe.SpotState.UNLOCKED_AWAITING_REMOVAL, open_, serial)))
            stages[2].append((device_id, m.CommandResult(cid, pe.ResultStatus.DONE)))
            if n % 3:
                stages[3].append((device_id, m.VehicleRemoved(spot, serial, command_id=cid)))
                stages[3].append((device_id, m.Status(spot, pe.SpotState.EMPTY, open_)))
                stages[4].append((device_id, m.VehicleDocked(spot + 3, serial)))
                stages[4].append((device_id, m.Locked(spot + 3, pe.LockCause.DOCKING)))
                stages[5].append((device_id, m.Status(
                    spot + 3, pe.SpotState.DOCKED_LOCKED, locked, serial)))
            else:
                stages[3].append((device_id, m.UnlockExpired(spot, cid)))
                stages[4].append((device_id, m.Status(
                    spot, pe.SpotState.DOCKED_LOCKED, locked, serial)))
    for serial in fleet.floating:
        device_id, cid = f"vh-{serial}", fleet.commands[serial]
        stages[0].append((device_id, m.Unlocked(0, pe.LockCause.COMMAND, cid)))
        stages[1].append((device_id, m.CommandResult(cid, pe.ResultStatus.DONE)))
        stages[2].append((device_id, m.Status(0, pe.DeviceState.UNLOCKED, battery_pct=88)))
        stages[4].append((device_id, m.Locked(0, pe.LockCause.MANUAL)))
        stages[5].append((device_id, m.Status(0, pe.DeviceState.LOCKED, battery_pct=87)))
    out: list[tuple[str, bytes]] = []
    for stage in stages:
        ts += 60_000  # a minute between stages: a ride has a price
        for i, (device_id, body) in enumerate(stage):
            seq = seqs[device_id] = seqs.get(device_id, 0) + 1
            stamp = m.Stamp(boot, seq, ts + i)
            out.append((topics.up(device_id, codec.channel_of(body)),
                        codec.encode_up(stamp, body)))
    return out


def check_event_mix(drain: Drain, count: int) -> None:
    """The mix did what riders do (trips started and ended), not a pile of rejections."""
    applied = sum(w.stats.applied for w in drain.workers)
    rejected = sum(sum(w.stats.rejected.values()) for w in drain.workers)
    if applied + sum(w.stats.duplicates for w in drain.workers) < count or rejected:
        reasons = sum((w.stats.rejected for w in drain.workers), Counter())
        raise RuntimeError(f"event mix: {applied}/{count} applied, rejected {dict(reasons)}")


class TunedMosquitto(MosquittoService):
    """The harness broker with a wider QoS 1 window per client (``--inflight``): the ingest
    acknowledges after its commit, so the window bounds its batch size."""

    inflight = 100

    def _prepare(self) -> None:
        super()._prepare()
        text = self.config_path.read_text()
        line = f"max_inflight_messages {self.inflight}"
        self.config_path.write_text(
            re.sub(r"^max_inflight_messages .*$", line, text, flags=re.M)
            if "max_inflight_messages" in text else text + line + "\n"
        )


def build_messages(n: int, boot: int = 7) -> list[tuple[str, bytes]]:
    """Half status, half telemetry, spread over the seeded stations and vehicles."""
    seqs: dict[str, int] = {}
    ts0 = time.time_ns() // 1_000_000 - n
    out: list[tuple[str, bytes]] = []
    devices = STATIONS + VEHICLES
    for i in range(n):
        dev = devices[i % len(devices)]
        seqs[dev] = seqs.get(dev, 0) + 1
        stamp = m.Stamp(boot, seqs[dev], ts0 + i)
        body: m.UpBody
        if dev.startswith("st-"):
            if i % 2:
                spot = 1 + (i // len(devices)) % 6
                locked = (i // 7) % 2 == 0
                body = m.Status(
                    spot,
                    pe.SpotState.DOCKED_LOCKED if locked else pe.SpotState.EMPTY,
                    pe.LockState.LOCKED if locked else pe.LockState.OPEN,
                )
            else:
                body = m.Telemetry(
                    temperature_c=21.5, spot_temperatures_c=((1, 22.0), (2, 22.5)),
                    energy_wh=1000 + i, power_w=40,
                )
        elif i % 2:
            body = m.Status(0, pe.DeviceState.LOCKED, battery_pct=80 + i % 20)
        else:
            body = m.Telemetry(
                lat=45.76 + (i % 100) * 1e-4, lon=4.83 + (i % 50) * 1e-4,
                speed_kmh=12.5, heading_deg=90, battery_pct=80, vae_pct=60,
            )
        out.append((topics.up(dev, codec.channel_of(body)), codec.encode_up(stamp, body)))
    return out


def publish_all(broker: MosquittoService, messages: list[tuple[str, bytes]]) -> float:
    """Publish at QoS 1 with the cloud account (it may write ks/#); returns seconds."""
    client_id = f"bench-pub-{uuid.uuid4().hex[:6]}"
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.username_pw_set(broker.cloud_username, broker.cloud_password)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    done = threading.Event()
    acked = 0

    def on_publish(_c: object, _u: object, _mid: int, _rc: object, _p: object) -> None:
        nonlocal acked
        acked += 1
        if acked == len(messages):
            done.set()

    client.on_publish = on_publish
    client.connect(broker.host, broker.port)
    client.loop_start()
    t0 = time.perf_counter()
    for topic, payload in messages:
        client.publish(topic, payload, qos=1)
    done.wait(120)
    elapsed = time.perf_counter() - t0
    client.disconnect()
    client.loop_stop()
    return elapsed


def publish_child(host: str, port: int, user: str, password: str, n: int, boot: int,
                  fleet: int) -> None:
    """``--publish-child``: the live publisher, in a process of its own."""
    VEHICLES.extend(f"vh-BX{i:04d}" for i in range(1, fleet + 1))
    messages = build_messages(n, boot=boot)
    broker = argparse.Namespace(host=host, port=port, cloud_username=user,
                                cloud_password=password)
    publish_all(broker, messages)  # type: ignore[arg-type]


async def publish_live(broker: MosquittoService, n: int, boot: int, fleet: int) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--publish-child",
        json.dumps([broker.host, broker.port, broker.cloud_username, broker.cloud_password,
                    n, boot, fleet]),
    )
    if await proc.wait() != 0:
        raise RuntimeError("the publisher failed")


async def bare_paho_live(broker: MosquittoService, n: int, boot: int, fleet: int) -> float:
    received = 0
    done = threading.Event()
    subscribed = threading.Event()

    first = 0.0

    def on_message(_c: object, _u: object, _msg: mqtt.MQTTMessage) -> None:
        nonlocal received, first
        if not received:
            first = time.perf_counter()
        received += 1
        if received >= n:
            done.set()

    client_id = f"bench-live-{uuid.uuid4().hex[:6]}"
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.username_pw_set(broker.cloud_username, broker.cloud_password)
    c.on_message = on_message
    c.on_subscribe = lambda *_a: subscribed.set()
    c.connect(broker.host, broker.port)
    c.loop_start()
    c.subscribe(f"{topics.ROOT}/d/+/+", qos=1)
    subscribed.wait(10)
    await publish_live(broker, n, boot, fleet)
    await asyncio.to_thread(done.wait, 120)
    elapsed = time.perf_counter() - first  # first to last message (publisher start-up apart)
    c.disconnect()
    c.loop_stop()
    return elapsed


def bare_paho(broker: MosquittoService, messages: list[tuple[str, bytes]]) -> float:
    client_id = f"bench-bare-{uuid.uuid4().hex[:6]}"
    received = 0
    target = len(messages)
    done = threading.Event()
    subscribed = threading.Event()

    def on_message(_c: object, _u: object, _msg: mqtt.MQTTMessage) -> None:
        nonlocal received
        received += 1
        if received >= target:
            done.set()

    def make() -> mqtt.Client:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        c.username_pw_set(broker.cloud_username, broker.cloud_password)
        c.on_message = on_message
        c.on_subscribe = lambda *_a: subscribed.set()
        return c

    c = make()
    c.connect(broker.host, broker.port)
    c.loop_start()
    c.subscribe(f"{topics.ROOT}/d/+/+", qos=1)
    subscribed.wait(10)
    c.disconnect()
    c.loop_stop()
    publish_all(broker, messages)
    c = make()
    t0 = time.perf_counter()
    c.connect(broker.host, broker.port)
    c.loop_start()
    done.wait(120)
    elapsed = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    if received < target:
        raise RuntimeError(f"bare paho got {received}/{target}")
    return elapsed


async def bare_aiomqtt(broker: MosquittoService, messages: list[tuple[str, bytes]]) -> float:
    ident = f"bench-aio-{uuid.uuid4().hex[:6]}"
    kwargs = dict(username=broker.cloud_username, password=broker.cloud_password,
                  identifier=ident, clean_session=False)
    async with aiomqtt.Client(broker.host, broker.port, **kwargs) as c:  # type: ignore[arg-type]
        await c.subscribe(f"{topics.ROOT}/d/+/+", qos=1)
    await asyncio.to_thread(publish_all, broker, messages)
    received = 0
    t0 = time.perf_counter()
    async with aiomqtt.Client(broker.host, broker.port, **kwargs) as c:  # type: ignore[arg-type]
        async for _ in c.messages:
            received += 1
            if received >= len(messages):
                break
    return time.perf_counter() - t0


@dataclass
class Drain:
    seconds: float
    #: CPU of this process while draining: the workers (publishing is over by then).
    cpu_s: float
    workers: list[IngestWorker]

    def rate(self, n: int) -> float:
        return n / self.seconds

    def cpu_ms(self, n: int) -> float:
        return self.cpu_s * 1000 / n


async def ingest(
    broker: MosquittoService, db_url: str, influx: InfluxService | None,
    messages: list[tuple[str, bytes]], workers: int, batch_max: int, tmp: Path,
    with_alerts: bool = True,
    live: tuple[int, int] | None = None,
) -> Drain:
    """Drain a backlog (default), or ``live=(boot, fleet)``: workers online while a
    publisher process sends."""
    engine = create_engine(db_url, pool_size=workers + 2)
    maker = create_sessionmaker(engine)
    group = f"bench{uuid.uuid4().hex[:6]}"
    store = open_telemetry_store(
        influx.url if influx else None, influx.database if influx else "kickstand",
        spool_dir=tmp / "spool", local_path=tmp / "telemetry.sqlite3",
    )
    alerts = AlertEngine() if with_alerts else None
    ids = [f"{group}-{n}" for n in range(workers)]

    def make(client_id: str) -> IngestWorker:
        # A persistent session for the drain method only (production workers hold none).
        return IngestWorker(broker.url, maker, telemetry=store, client_id=client_id,
                            group=group, batch_max=batch_max, alerts=alerts,
                            clean_session=live is not None)

    async with store:
        if live is None:
            # Subscribe the persistent sessions, then go away: the broker queues for them.
            for cid in ids:
                w = make(cid)
                await w.start()
                await w.stop()
            await asyncio.to_thread(publish_all, broker, messages)
        running = [make(cid) for cid in ids]
        t0, cpu0 = time.perf_counter(), time.process_time()
        for w in running:
            await w.start()
        target = len(messages)
        if live is not None:
            publisher = asyncio.create_task(publish_live(broker, len(messages), *live))
            while not sum(w.stats.received for w in running):  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            t0, cpu0 = time.perf_counter(), time.process_time()  # first message in
            await publisher
        def drained() -> bool:
            return sum(w.stats.received for w in running) >= target and all(w.idle for w in running)

        while not drained():  # noqa: ASYNC110 (polling the workers' counters)
            await asyncio.sleep(0.005)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        for w in running:
            await w.stop()
        await store.flush()
        async with maker() as s:
            statuses = await s.scalar(select(func.count()).select_from(DeviceStatus))
        if statuses == 0:
            raise RuntimeError("no state was written")
    await engine.dispose()
    return Drain(elapsed, cpu, running)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-max", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="bare/ingest pairs; medians")
    parser.add_argument("--fleet", type=int, default=200, help="extra vehicles sending")
    parser.add_argument("--inflight", type=int, default=100,
                        help="broker max_inflight_messages (the harness config has 100)")
    parser.add_argument("--no-influx", action="store_true")
    parser.add_argument("--live", action="store_true",
                        help="also measure live flow: consumers online, a publisher process")
    parser.add_argument("--publish-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--alerts-messages", type=int, default=4000,
                        help="one more ingest run with the fleet alert rules on (0: skip)")
    parser.add_argument("--event-stations", type=int, default=40,
                        help="event mix: stations (3 docked vehicles each) unlocked once")
    parser.add_argument("--event-floating", type=int, default=150,
                        help="event mix: lock-box vehicles unlocked once (0 and 0: skip)")
    args = parser.parse_args()
    if args.publish_child:
        publish_child(*json.loads(args.publish_child))
        return
    logging.basicConfig(level=logging.ERROR)
    n = args.messages
    bare: list[float] = []
    aio: list[float] = []
    ing: list[float] = []
    cpu: list[float] = []
    with_alerts: Drain | None = None
    events: dict[str, tuple[int, Drain]] = {}
    live_bare: float | None = None
    live_ing: float | None = None
    batches = rejected = 0
    TunedMosquitto.inflight = args.inflight
    with tempfile.TemporaryDirectory() as tmpdir, TunedMosquitto() as broker, \
            open_postgres() as pg:
        tmp = Path(tmpdir)
        influx_cm = None if args.no_influx else InfluxService()
        influx = influx_cm.__enter__() if influx_cm else None
        try:
            db_url = pg.create_database()
            engine = create_engine(db_url)
            await upgrade(engine)
            async with create_sessionmaker(engine)() as s, s.begin():
                await seed_demo(s)
            await engine.dispose()
            await add_fleet(db_url, args.fleet)
            await mark_booted(db_url)
            for r in range(args.rounds):
                # Fresh sequence numbers per round (a replay would be deduplicated).
                messages = build_messages(n, boot=100 + r)
                bare.append(n / await asyncio.to_thread(bare_paho, broker, messages))
                aio.append(n / await bare_aiomqtt(broker, messages))
                drain = await ingest(
                    broker, db_url, influx, messages, args.workers, args.batch_max, tmp,
                    with_alerts=False,
                )
                ing.append(drain.rate(n))
                cpu.append(drain.cpu_ms(n))
                batches += sum(w.stats.batches for w in drain.workers)
                rejected += sum(sum(w.stats.rejected.values()) for w in drain.workers)
                print(f"round {r + 1}: bare paho {bare[-1]:.0f}, bare aiomqtt {aio[-1]:.0f}, "
                      f"ingest {ing[-1]:.0f} msg/s ({cpu[-1]:.3f} CPU ms/msg)", flush=True)
            if args.live:
                live_bare = n / await bare_paho_live(broker, n, 500, args.fleet)
                messages = build_messages(n, boot=501)
                drain = await ingest(
                    broker, db_url, influx, messages, args.workers, args.batch_max, tmp,
                    with_alerts=False, live=(501, args.fleet),
                )
                live_ing = drain.rate(n)
            if args.alerts_messages:
                messages = build_messages(args.alerts_messages, boot=999)
                with_alerts = await ingest(
                    broker, db_url, influx, messages, args.workers, args.batch_max, tmp,
                    with_alerts=True,
                )
            if args.event_stations or args.event_floating:
                for tag, alerts_on in (("EA", True), ("EB", False)):
                    fleet = await add_event_fleet(
                        db_url, tag, args.event_stations, args.event_floating
                    )
                    await mark_booted(db_url)
                    messages = build_event_mix(fleet)
                    drain = await ingest(
                        broker, db_url, influx, messages, args.workers, args.batch_max, tmp,
                        with_alerts=alerts_on,
                    )
                    events["on" if alerts_on else "off"] = (len(messages), drain)
                    check_event_mix(drain, len(messages))
        finally:
            if influx_cm is not None:
                influx_cm.__exit__(None, None, None)
    b, a, i = statistics.median(bare), statistics.median(aio), statistics.median(ing)
    store = "local store" if args.no_influx else "InfluxDB"
    print(f"messages per round: {n} (status + telemetry; {len(STATIONS)} stations, "
          f"{len(VEHICLES)} vehicles); medians of {args.rounds} rounds")
    print(f"bare paho subscriber (QoS 1):    {b:9.0f} msg/s")
    print(f"bare aiomqtt subscriber (QoS 1): {a:9.0f} msg/s")
    print(f"ingest, {args.workers} worker(s) (paho in the event loop, decode + CDDL, PostgreSQL "
          f"state upserts, {store}): {i:9.0f} msg/s; {batches} batches "
          f"(avg {n * args.rounds / max(batches, 1):.0f} msg), rejected {rejected}; "
          f"{statistics.median(cpu):.3f} CPU ms/msg")
    if with_alerts is not None:
        alerts_n = args.alerts_messages
        print(f"ingest with the fleet alert rules on (telemetry sampled every 5 s per vehicle): "
              f"{with_alerts.rate(alerts_n):.0f} msg/s, "
              f"{with_alerts.cpu_ms(alerts_n):.3f} CPU ms/msg ({alerts_n} messages)")
    for mode, (count, drain) in events.items():
        print(f"ingest, event mix (unlocks: statuses, Unlocked, results, VehicleRemoved, "
              f"VehicleDocked, UnlockExpired, Locked), alert rules {mode}: "
              f"{drain.rate(count):.0f} msg/s, {drain.cpu_ms(count):.3f} CPU ms/msg "
              f"({count} messages)")
    if live_bare is not None and live_ing is not None:
        print(f"live flow (consumers online, publisher process): ingest {live_ing:.0f} msg/s, "
              f"bare {live_bare:.0f} msg/s, ratio {live_ing / live_bare:.2f}")
    print(f"ingest ratio: {i / b:.2f} (ingest {i:.0f} msg/s, bare {b:.0f} msg/s)")


if __name__ == "__main__":
    asyncio.run(main())
