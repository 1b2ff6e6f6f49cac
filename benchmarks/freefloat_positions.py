"""Vehicle positions per second through the ingest's FreeFloatHook (geofencing of a batch).

Lyon demo network with its demo zones (kickstand.cloud.geofence.store.seed_zones) plus
``--zones`` random small parkings, ``--vehicles`` scooters riding random walks over the
city centre (~5 m per fix, the 5 s cadence at 4 km/h... up to 20 km/h), fed in batches of
``--batch`` positions exactly as the ingest does (begin_batch → add_position → after_commit):
one cache check per batch, the debounced tracker per position, and the transitions
written (speed limits queued to a counting sender, alerts and outbox rows in SQLite).
Baseline in the same run: the bare ``GeofenceIndex.check`` of the same positions.

    .venv/bin/python benchmarks/freefloat_positions.py [--vehicles 2000] [--rounds 20]

Last line: ``freefloat hook positions/s: N (bare index checks/s: M)``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from kickstand.cloud.alerts.engine import AlertEngine
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.freefloat import FreeFloatHook
from kickstand.cloud.geofence import store as zones
from kickstand.cloud.migrations import upgrade
from kickstand.cloud.models import Vehicle, VehicleType
from kickstand.cloud.seed import seed_demo

CENTRE = (4.8357, 45.7640)
M_LAT = 1 / 111_195.0
M_LON = M_LAT / math.cos(math.radians(CENTRE[1]))


class CountingSender:
    def __init__(self) -> None:
        self.sent = 0

    async def send(self, device_id: str, command: Any, **_: Any) -> None:
        self.sent += 1


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.sqlite3'}")
        await upgrade(engine)
        maker = create_sessionmaker(engine)
        async with maker() as s, s.begin():
            refs = await seed_demo(s)
            nid = refs.network_id
            await zones.seed_zones(s, nid)
            for _ in range(args.zones):
                lon = CENTRE[0] + rng.uniform(-0.02, 0.02)
                lat = CENTRE[1] + rng.uniform(-0.015, 0.015)
                d = 0.0003
                shape = [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d]]
                await zones.create_virtual_parking(s, nid, shape, 5)
            vehicles = [
                Vehicle(
                    serial_number=f"BF{i:06d}",
                    vehicle_type=VehicleType.KICK_SCOOTER,
                    network_id=nid,
                )
                for i in range(args.vehicles)
            ]
            s.add_all(vehicles)
            await s.flush()
            ids = [v.id for v in vehicles]

        sender = CountingSender()
        hook = FreeFloatHook(
            zones.GeofenceCache(recheck_s=2.0), commands=sender, alerts=AlertEngine()
        )
        pos = {
            vid: [
                CENTRE[0] + rng.uniform(-0.012, 0.012),
                CENTRE[1] + rng.uniform(-0.008, 0.008),
                rng.uniform(0, 2 * math.pi),
            ]
            for vid in ids
        }
        t0 = time.time()
        batches: list[list[tuple[int, float, float, float]]] = []
        for r in range(args.rounds):
            batch: list[tuple[int, float, float, float]] = []
            for vid in ids:
                p = pos[vid]
                p[2] += rng.uniform(-0.4, 0.4)
                step = rng.uniform(5, 28)  # metres per 5 s fix
                p[0] += math.sin(p[2]) * step * M_LON
                p[1] += math.cos(p[2]) * step * M_LAT
                batch.append((vid, p[0], p[1], t0 + r * 5))
            batches.append(batch)

        from datetime import UTC, datetime

        flat = [b for batch in batches for b in batch]
        async with maker() as s:
            index = await zones.GeofenceCache().index(s, nid)
        start = time.perf_counter()
        for _, lon, lat, _ts in flat:
            index.check(lon, lat)
        bare = len(flat) / (time.perf_counter() - start)

        async def feed(rounds: list[list[tuple[int, float, float, float]]]) -> None:
            for batch in rounds:
                for i in range(0, len(batch), args.batch):
                    hook.begin_batch()
                    for vid, lon, lat, ts in batch[i : i + args.batch]:
                        at = datetime.fromtimestamp(ts, UTC)
                        hook.add_position(vid, f"vh-BF{vid}", nid, lon, lat, at)
                    await hook.after_commit(maker)

        # The first fix of each vehicle sets its state (every zone it starts in is
        # "entered"): a warm-up, not the steady riding measured.
        await feed(batches[:1])
        warm = dict(hook.stats)
        flat = [b for batch in batches[1:] for b in batch]
        start = time.perf_counter()
        await feed(batches[1:])
        elapsed = time.perf_counter() - start
        await hook.drain()
        await engine.dispose()
    transitions = sum(v - warm.get(k, 0) for k, v in hook.stats.items() if k[0].isupper())
    rate = len(flat) / elapsed
    print(f"vehicles: {args.vehicles}, positions: {len(flat)}, zones: {args.zones + 6}")
    print(f"transitions while riding: {transitions}, speed commands (all): {sender.sent}")
    print(f"hook: {elapsed:.2f} s; ratio to bare checks: {bare / rate:.1f}x")
    print(f"freefloat hook positions/s: {rate:.0f} (bare index checks/s: {bare:.0f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--vehicles", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--zones", type=int, default=200)
    parser.add_argument("--batch", type=int, default=200)
    asyncio.run(main(parser.parse_args()))
