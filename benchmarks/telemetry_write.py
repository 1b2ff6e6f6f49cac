"""Points per second written to InfluxDB through `InfluxV1Writer`, against a bare
line-protocol POST loop, same batch size, same process, same run.

Both encode the same `VehiclePosition` points with the same encoder; the bare loop
POSTs each batch and waits for the answer before encoding the next, the writer is
fed point by point (the producer yields to the event loop every 1,000 points, as
an ingest worker would) and the clock stops when `drain()` says InfluxDB has
everything. Rounds alternate between the two and each gets a fresh database; the
median of the rounds is reported.

    .venv/bin/python benchmarks/telemetry_write.py [--points 100000] [--batch 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

import httpx

from kickstand.cloud.telemetry import InfluxV1Writer, VehiclePosition, encode_many
from kickstand.testing import InfluxService

T0 = 1_780_000_000_000_000_000


def make_points(count: int) -> list[VehiclePosition]:
    # 1,000 vehicles, distinct timestamps per vehicle (series + time is the key).
    return [
        VehiclePosition(f"AB{i % 1000:05d}", 45.0 + (i % 997) * 1e-4, 4.8 + (i % 991) * 1e-4,
                        T0 + i * 1_000, speed=float(i % 40), heading=float(i % 360),
                        network=str(i % 3 + 1))
        for i in range(count)
    ]


async def count_points(influx: InfluxService, database: str) -> int:
    async with httpx.AsyncClient(base_url=influx.url, timeout=60) as client:
        response = await client.get("/query", params={
            "db": database, "q": "SELECT count(lat) FROM vehicle_position"})
        series = response.json()["results"][0].get("series", [])
        return int(series[0]["values"][0][1]) if series else 0


async def bare_loop(influx: InfluxService, database: str, points: list[VehiclePosition],
                    batch: int) -> float:
    async with httpx.AsyncClient(base_url=influx.url, timeout=60) as client:
        started = time.perf_counter()
        for start in range(0, len(points), batch):
            body = encode_many(points[start:start + batch]).encode()
            response = await client.post("/write", params={"db": database, "precision": "ns"},
                                         content=body)
            response.raise_for_status()
        return time.perf_counter() - started


async def through_writer(influx: InfluxService, database: str, points: list[VehiclePosition],
                         batch: int) -> float:
    with tempfile.TemporaryDirectory(prefix="kickstand-bench-spool-") as spool:
        async with InfluxV1Writer(influx.url, database, spool_dir=spool, batch_size=batch,
                                  timeout=60) as writer:
            started = time.perf_counter()
            for i, point in enumerate(points):
                writer.write(point)
                if i % 1_000 == 999:
                    await asyncio.sleep(0)
            await writer.drain()
            elapsed = time.perf_counter() - started
            stats = writer.stats
        if stats.spooled or stats.quarantined or stats.dropped:
            print(f"  note: writer spooled={stats.spooled} quarantined={stats.quarantined} "
                  f"dropped={stats.dropped}")
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    points = make_points(args.points)
    rates: dict[str, list[float]] = {"bare": [], "writer": []}
    with InfluxService() as influx:
        print(f"InfluxDB 1.6 at {influx.url}; {args.points} points, batch {args.batch}, "
              f"{args.rounds} rounds")
        # Warm-up: the first writes to a new InfluxDB pay for its first shard.
        await bare_loop(influx, influx.create_database("warmup"), points[: args.batch],
                        args.batch)
        for round_no in range(args.rounds):
            for name in ("bare", "writer") if round_no % 2 == 0 else ("writer", "bare"):
                database = influx.create_database(f"bench_{name}_{round_no}")
                run = bare_loop if name == "bare" else through_writer
                elapsed = await run(influx, database, points, args.batch)
                stored = await count_points(influx, database)
                if stored != len(points):
                    raise SystemExit(f"{name}: InfluxDB holds {stored} of {len(points)} points")
                rate = len(points) / elapsed
                rates[name].append(rate)
                print(f"round {round_no + 1} {name:6s}: {elapsed:6.2f} s  {rate:10,.0f} pts/s")
                influx.drop_database(database)
    writer_rate = statistics.median(rates["writer"])
    bare_rate = statistics.median(rates["bare"])
    print(f"telemetry ratio: {writer_rate / bare_rate:.2f} "
          f"(writer {writer_rate:.0f} pts/s, bare {bare_rate:.0f} pts/s)")


if __name__ == "__main__":
    asyncio.run(main())
