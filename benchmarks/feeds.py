"""GBFS feeds under load: ``station_status`` and ``vehicle_status`` requests/s of a city of
1,000 stations and 10,000 vehicles, against a static copy of the same bytes served by the
same server in the same run.

A fresh PostgreSQL database from the test harness (kickstand.testing), migrated to head;
the city generated in the database (``generate_series``): ``--stations`` stations (one per
cluster, 10 spots each, online), ``--vehicles`` vehicles (four in five docked, the rest
free-floating with an online controller), two finished trips per vehicle. One API process
(uvicorn, uvloop + httptools, the app of ``create_app`` plus a ``StaticFiles`` mount of a
directory holding copies of the two feed documents), driven from this process over
``--connections`` keep-alive connections for ``--seconds`` per case:

- build: what one request would cost without the cache (the feed built in this process,
  the server's code, sequentially: builds/s);
- 200: every request gets the full document (served from the cache);
- 304: every request revalidates with ``If-None-Match`` (what a polite aggregator sends);
- static 200 / static 304: the same bytes from ``StaticFiles`` (its own ETag);
- loop: what a build costs the server's other requests: ``/health`` asked every 2 ms on
  its own connection while the server builds the feed (a request under a Host never seen
  before: a cache key of its own), the worst and the median answer time during the build,
  over ``--builds`` builds.

    .venv/bin/python benchmarks/feeds.py [--small] [--stations 1000] [--vehicles 10000]
        [--connections 16] [--seconds 5] [--builds 5]

Last line: ``gbfs req/s: N (static: M)``: station_status 200 from the cache, and the
static copy of the same document, 200.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).parent))
from _lean_http import HttpError, KeepAliveConnection

from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.feeds.gbfs import service
from kickstand.cloud.migrations import upgrade
from kickstand.testing import open_postgres

JWT = "bench-secret-" + "x" * 40
SPOTS_PER_STATION = 10
FEEDS = ("station_status", "vehicle_status")


@dataclass(frozen=True)
class Size:
    stations: int
    vehicles: int


GENERATE = [
    """INSERT INTO networks (name, currency, timezone, max_simultaneous_rented_vehicle,
           min_battery_to_rent, trip_on_hold, trip_too_long_notifications,
           trip_too_long_notifications_frequency, vehicle_stolen, trip_auto_pause,
           trip_max_pause, trip_auto_lock, out_of_border_policy, is_public, created_at,
           default_vat, trip_to_skip_pre_auth_guarantee, first_purchase_required,
           credit_depletion_auto_lock, default_vehicle_guarantee, sponsoring_reward,
           sponsored_reward)
       VALUES ('Benchville', 'EUR', 'Europe/Paris', 1, 10, true, 3600, 900, 43200, 604800,
               604800, 604800, 'alert', true, now() - interval '30 days', 0, 0, false, false,
               0, 0, 0)""",
    """INSERT INTO pricing_rules (network_id, start_dow, start_hod, end_dow, end_hod,
           unlock_price, unlock_included_time, use_per_minute_price, on_hold_price,
           freefloat_lock_price)
       SELECT id, 0, '00:00:00', 6, '24:00:00', 1.00, 300, 0.10, 0.05, 0.50 FROM networks""",
    """INSERT INTO clusters (network_id, name, latitude, longitude, has_badge_reader,
           is_accessible)
       SELECT n.id, 'C' || g, 48.80 + random() * 0.1, 2.28 + random() * 0.14, true, true
       FROM networks n, generate_series(1, :stations) g""",
    """INSERT INTO devices (device_id, kind, online, last_seen_at, heartbeat_s)
       SELECT 'bench-st-' || c.id, 'station', true, now(), 3600 FROM clusters c""",
    """INSERT INTO stations (cluster_id, device_id, name)
       SELECT c.id, 'bench-st-' || c.id, c.name FROM clusters c""",
    """INSERT INTO spots (station_id, displayed_number, lock_status, state)
       SELECT s.id, n, 0, CASE WHEN random() < 0.03 THEN 'maintenance' ELSE 'active' END
       FROM stations s, generate_series(1, :spots) n""",
    """INSERT INTO devices (device_id, kind, online, last_seen_at, heartbeat_s)
       SELECT 'vh-B' || lpad(g::text, 7, '0'), 'vehicle', true, now(), 3600
       FROM generate_series(1, :vehicles) g WHERE g % 5 = 0""",
    # Four vehicles in five docked (one per spot in spot order), the fifth free-floating.
    """INSERT INTO vehicles (serial_number, vehicle_type, network_id, state, battery_level,
           assist_battery_level, spot_id, latitude, longitude, position_at, device_id,
           in_maintenance)
       SELECT 'B' || lpad(g::text, 7, '0'),
              CASE WHEN g % 5 = 0 THEN 'kick-scooter'
                   ELSE (ARRAY['bike', 'e-bike'])[1 + g % 2] END,
              n.id,
              CASE WHEN g % 50 = 0 THEN 'maintenance' ELSE 'available' END,
              (g * 37) % 100, CASE WHEN g % 2 = 1 THEN (g * 53) % 100 END,
              CASE WHEN g % 5 <> 0 THEN sp.id END,
              48.80 + random() * 0.1, 2.28 + random() * 0.14, now(),
              CASE WHEN g % 5 = 0 THEN 'vh-B' || lpad(g::text, 7, '0') END,
              g % 50 = 0
       FROM networks n, generate_series(1, :vehicles) g
       LEFT JOIN (SELECT id, row_number() OVER (ORDER BY id) AS k FROM spots) sp
              ON sp.k = g - g / 5""",
    """INSERT INTO trips (vehicle_id, network_id, status, free_floating_start,
           free_floating_end, started_at, ended_at, currency, hold_periods, version,
           created_at, updated_at)
       SELECT v.id, v.network_id, 'finished', false, false, now() - (k || ' days')::interval,
              now() - (k || ' days')::interval + interval '15 minutes', 'EUR', '[]', 1,
              now(), now()
       FROM vehicles v, generate_series(1, 2) k""",
]


async def generate(url: str, size: Size) -> int:
    engine = create_engine(url)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            for statement in GENERATE:
                await conn.execute(
                    text(statement),
                    {
                        "stations": size.stations,
                        "vehicles": size.vehicles,
                        "spots": SPOTS_PER_STATION,
                    },
                )
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE"))
            network_id: int = (
                await conn.execute(text("SELECT min(id) FROM networks"))
            ).scalar_one()
        return network_id
    finally:
        await engine.dispose()


def bench_app() -> object:
    """The served app (uvicorn ``--factory``): the API, plus the static copies."""
    from fastapi.staticfiles import StaticFiles

    from kickstand.cloud.api import create_app
    from kickstand.cloud.api.main import settle_heap
    from kickstand.cloud.config import Settings

    app = create_app(Settings(DATABASE_URL=os.environ["BENCH_DATABASE_URL"], JWT_SECRET=JWT))
    app.mount("/static", StaticFiles(directory=os.environ["BENCH_STATIC_DIR"]), name="static")
    settle_heap()
    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_up(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            async with KeepAliveConnection("127.0.0.1", port, timeout_s=5) as c:
                if (await c.request("GET", "/health")).status == 200:
                    return
        except (OSError, HttpError):
            pass  # not listening yet
        await asyncio.sleep(0.2)
    raise RuntimeError("the API did not start")


async def load(
    port: int, path: str, headers: dict[str, str], connections: int, seconds: float, status: int
) -> float:
    """Requests/s over ``connections`` keep-alive connections for ``seconds``."""
    done = 0
    deadline = time.monotonic() + seconds

    async def user() -> None:
        nonlocal done
        async with KeepAliveConnection("127.0.0.1", port) as conn:
            while time.monotonic() < deadline:
                r = await conn.request("GET", path, headers=headers)
                if r.status != status:
                    raise RuntimeError(f"{path}: {r.status} instead of {status}")
                done += 1

    started = time.monotonic()
    await asyncio.gather(*(user() for _ in range(connections)))
    return done / (time.monotonic() - started)


async def _get_as_host(port: int, path: str, host: str) -> int:
    """One GET under another Host (the feed cache keys documents by their base URL)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    return int(answer.split(b" ", 2)[1])


async def _poll_health(port: int, building: asyncio.Event, times: list[float]) -> None:
    """``/health`` every 2 ms until the build is over, each answer time (ms) kept."""
    async with KeepAliveConnection("127.0.0.1", port) as conn:
        while not building.is_set():
            started = time.perf_counter()
            r = await conn.request("GET", "/health")
            times.append((time.perf_counter() - started) * 1000)
            if r.status != 200:
                raise RuntimeError(f"/health: {r.status}")
            await asyncio.sleep(0.002)


async def loop_block(port: int, path: str, builds: int) -> tuple[float, float]:
    """Worst and median ``/health`` answer times (ms) while the server builds ``path``."""
    worst: list[float] = []
    for k in range(builds):
        times: list[float] = []
        built = asyncio.Event()
        poller = asyncio.create_task(_poll_health(port, built, times))
        await asyncio.sleep(0.05)  # the poller is running before the build starts
        status = await _get_as_host(port, path, f"build-{k}-{time.monotonic_ns()}.bench")
        built.set()
        await poller
        if status != 200:
            raise RuntimeError(f"{path}: {status}")
        worst.append(max(times))
    worst.sort()
    return worst[-1], worst[len(worst) // 2]


async def build_rate(url: str, network_id: int, name: str, rounds: int) -> float:
    engine = create_engine(url)
    maker = create_sessionmaker(engine)
    feed = service.FEEDS[name]
    try:
        await service.build(maker, network_id, feed, secret=JWT, mail_from="x@y.z", base_url="/")
        started = time.perf_counter()
        for _ in range(rounds):
            await service.build(
                maker, network_id, feed, secret=JWT, mail_from="x@y.z", base_url="/"
            )
        return rounds / (time.perf_counter() - started)
    finally:
        await engine.dispose()


async def measure(
    url: str, network_id: int, connections: int, seconds: float, n_builds: int
) -> None:
    static = Path(tempfile.mkdtemp(prefix="kickstand-feeds-"))
    port = free_port()
    env = {**os.environ, "BENCH_DATABASE_URL": url, "BENCH_STATIC_DIR": str(static),
           "JWT_SECRET": JWT, "ENVIRONMENT": "development"}  # fmt: skip
    server = subprocess.Popen(  # noqa: ASYNC220 (started once, before any measure)
        [sys.executable, "-m", "uvicorn", "--factory", "feeds:bench_app",
         "--app-dir", str(Path(__file__).parent), "--port", str(port),
         "--loop", "uvloop", "--http", "httptools", "--no-access-log",
         "--log-level", "warning"],
        env=env,
    )  # fmt: skip
    results: dict[str, float] = {}
    try:
        await wait_up(port)
        system = f"/gbfs/v3/{service.system_id(network_id)}/"
        for name in FEEDS:
            async with KeepAliveConnection("127.0.0.1", port) as c:
                started = time.perf_counter()
                first = await c.request("GET", system + name + ".json")
                cold_ms = (time.perf_counter() - started) * 1000
            assert first.status == 200, first.status
            (static / f"{name}.json").write_bytes(first.body)
            async with KeepAliveConnection("127.0.0.1", port) as c:
                static_tag = (await c.request("GET", f"/static/{name}.json")).headers["etag"]
            n = len(first.json()["data"]["stations" if name == "station_status" else "vehicles"])
            builds = await build_rate(url, network_id, name, 5)
            print(f"{name}: {n} entries, {len(first.body) / 1024:.0f} KiB, first request "
                  f"{cold_ms:.0f} ms, build {1000 / builds:.0f} ms ({builds:.1f} builds/s)",
                  flush=True)  # fmt: skip
            cases = {
                "200": (system + name + ".json", {}, 200),
                "304": (system + name + ".json", {"If-None-Match": first.headers["etag"]}, 304),
                "static 200": (f"/static/{name}.json", {}, 200),
                "static 304": (f"/static/{name}.json", {"If-None-Match": static_tag}, 304),
            }
            results[f"{name} build"] = builds
            block_max, block_median = await loop_block(port, system + name + ".json", n_builds)
            print(f"  loop: /health during a build: worst {block_max:.0f} ms, median of "
                  f"{n_builds} builds' worst {block_median:.0f} ms", flush=True)  # fmt: skip
            results[f"{name} loop"] = block_max
            for case, (path, headers, status) in cases.items():
                rate = await load(port, path, headers, connections, seconds, status)
                results[f"{name} {case}"] = rate
                print(f"  {case:11s} {rate:8.0f} req/s", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"vehicle_status build: /health waited at most {results['vehicle_status loop']:.0f} ms")
    print(
        f"gbfs req/s: {results['station_status 200']:.0f} "
        f"(static: {results['station_status static 200']:.0f})"
    )


async def run(size: Size, connections: int, seconds: float, builds: int) -> None:
    with open_postgres() as pg:
        db = pg.new_database()
        try:
            print(f"city: {size.stations} stations, {size.vehicles} vehicles", flush=True)
            started = time.perf_counter()
            network_id = await generate(db.url, size)
            print(f"generated in {time.perf_counter() - started:.1f} s", flush=True)
            await measure(db.url, network_id, connections, seconds, builds)
        finally:
            pg.drop_database(db.name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true", help="a quick check (a small city)")
    parser.add_argument("--stations", type=int, default=None)
    parser.add_argument("--vehicles", type=int, default=None)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--builds", type=int, default=5, help="builds timed for the loop case")
    args = parser.parse_args()
    size = Size(
        stations=args.stations or (50 if args.small else 1000),
        vehicles=args.vehicles or (500 if args.small else 10000),
    )
    asyncio.run(run(size, args.connections, 2.0 if args.small else args.seconds, args.builds))


if __name__ == "__main__":
    main()
