"""Dashboard queries: p50/p99 of the overview, usage-stats and list endpoints over a year
of trips of a big city, through the real API.

A fresh PostgreSQL database from the test harness (kickstand.testing: the machine's
server at 127.0.0.1:5432 when it answers, else a cluster of its own), migrated to head.
Generated in the database itself (``INSERT … SELECT generate_series``: no row crosses the
wire): one network of ``--stations`` stations (one per cluster, 12 spots each),
``--vehicles`` vehicles (four in five docked), ``--riders`` riders (one in ten in one of
ten organizations) and ``--days`` days of finished trips, ``--trips-per-day`` per vehicle,
in time order (as they are written), the usage rollup rebuilt from them (migration 0019's
backfill), then VACUUM ANALYZE.

The API (``create_app``, access log on) is called in this process through httpx's ASGI
transport by an operator holding the operator role on the network (the one access check
runs on every call). Each endpoint: 3 warm-up calls, then ``--calls`` sequential calls;
the usage-stats ones over the last 30 days (the dashboard's default view) and, named
``…[year]``, over the whole year. List endpoints of other parts are measured when the
running API serves them (first page, default size), skipped with a note otherwise.

    .venv/bin/python benchmarks/dashboard_queries.py [--small] [--stations 1000]
        [--vehicles 10000] [--days 365] [--trips-per-day 1.0] [--calls 40]

Last line: ``dashboard p99_ms: X (slowest: NAME)``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import text

from kickstand.cloud.access.grants import ou_snapshot
from kickstand.cloud.access.models import OrganizationalUnit
from kickstand.cloud.api import create_app
from kickstand.cloud.api.main import settle_heap
from kickstand.cloud.config import Settings
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.migrations import upgrade
from kickstand.cloud.models import Network, User, UserRole
from kickstand.cloud.security import create_access_token
from kickstand.cloud.seed import operator_permissions
from kickstand.cloud.stats import rollup
from kickstand.testing import open_postgres

JWT = "bench-secret-" + "x" * 40
TZ = "Europe/Paris"
SPOTS_PER_STATION = 12


@dataclass(frozen=True)
class Size:
    stations: int
    vehicles: int
    riders: int
    days: int
    trips_per_day: float

    @property
    def trips(self) -> int:
        return int(self.vehicles * self.days * self.trips_per_day)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


GENERATE = [
    # Clusters around (48.85, 2.35), about 10 km across.
    """INSERT INTO clusters (network_id, name, latitude, longitude, has_badge_reader,
           is_accessible)
       SELECT :net, 'C' || g, 48.80 + random() * 0.1, 2.28 + random() * 0.14, true, true
       FROM generate_series(1, :stations) g""",
    """INSERT INTO stations (cluster_id, device_id, name)
       SELECT c.id, 'bench-st-' || c.id, c.name || '-1' FROM clusters c
       WHERE c.network_id = :net""",
    """INSERT INTO spots (station_id, displayed_number, lock_status, state)
       SELECT s.id, n, 0, CASE WHEN random() < 0.03 THEN 'maintenance' ELSE 'active' END
       FROM stations s JOIN clusters c ON c.id = s.cluster_id, generate_series(1, :spots) n
       WHERE c.network_id = :net""",
    # Four vehicles in five docked, one per spot in spot order.
    """INSERT INTO vehicles (serial_number, vehicle_type, network_id, state, battery_level,
           spot_id, in_maintenance)
       SELECT 'B' || lpad(g::text, 7, '0'),
              (ARRAY['bike', 'e-bike', 'kick-scooter'])[1 + g % 3], :net,
              CASE WHEN g % 50 = 0 THEN 'maintenance' WHEN g % 7 = 0 THEN 'rented'
                   ELSE 'available' END,
              CASE WHEN g % 3 = 0 THEN NULL ELSE (g * 37) % 100 END,
              CASE WHEN g % 5 <> 0 AND g % 7 <> 0 THEN sp.id END,
              g % 50 = 0
       FROM generate_series(1, :vehicles) g
       LEFT JOIN (SELECT s.id, row_number() OVER (ORDER BY s.id) AS k FROM spots s
                  JOIN stations st ON st.id = s.station_id
                  JOIN clusters c ON c.id = st.cluster_id WHERE c.network_id = :net) sp
              ON sp.k = g""",
    """INSERT INTO users (email, password_hash, full_name, role, permissions, wallet_balance,
           is_active, token_generation, created_at, lang)
       SELECT 'rider' || g || '@bench.example.com', 'x', 'Rider ' || g, 'rider', '[]', 20,
              true, 0, CAST(:t0 AS timestamptz) - (random() * interval '400 days'), 'en'
       FROM generate_series(1, :riders) g""",
    # The network's own organizations (an operator reaches those: migration 0022).
    """INSERT INTO organizations (third_party_id, name, is_guarantor, allow_outside_rules,
           paid_outside_rules_ratio, only_show_matching_clusters, pays_rule_overrun, created_at,
           network_id)
       SELECT g, 'Org ' || g, false, false, 0, false, false, CAST(:t0 AS timestamptz), :net
       FROM generate_series(1, 10) g""",
    """INSERT INTO user_organizations (user_id, organization_id, linked_at)
       SELECT u.id, o.id, CAST(:t0 AS timestamptz)
       FROM (SELECT id, row_number() OVER (ORDER BY id) AS k FROM users
             WHERE email LIKE '%@bench.example.com') u
       JOIN (SELECT id, row_number() OVER (ORDER BY id) AS k FROM organizations) o
         ON o.k = 1 + u.k % 10
       WHERE u.k % 10 = 0""",
    # A year of finished trips in time order (ids follow time, as they are written).
    """INSERT INTO trips (user_id, vehicle_id, network_id, status, free_floating_start,
           free_floating_end, start_cluster_id, end_cluster_id, start_latitude,
           start_longitude, end_latitude, end_longitude, started_at, ended_at, hold_periods,
           cost, currency, version, created_at, updated_at)
       SELECT r.user_id, v.min_id + g % v.n, :net, 'finished', false, false,
              cl.min_id + (g * 7) % cl.n, cl.min_id + (g * 13) % cl.n,
              48.80 + (g % 1000) * 0.0001, 2.28 + (g % 1400) * 0.0001,
              48.80 + ((g * 7) % 1000) * 0.0001, 2.28 + ((g * 13) % 1400) * 0.0001,
              t.started, t.started + (240 + (g * 7919) % 3000) * interval '1 second', '[]',
              CASE WHEN g % 4 = 0 THEN 0 ELSE 1 + (g % 9) * 0.25 END, 'EUR', 1,
              t.started, t.started
       FROM generate_series(1::bigint, :trips) g
       CROSS JOIN (SELECT min(id) AS min_id, count(*) AS n FROM vehicles
                   WHERE network_id = :net) v
       CROSS JOIN (SELECT min(id) AS min_id, count(*) AS n FROM clusters
                   WHERE network_id = :net) cl
       CROSS JOIN LATERAL (SELECT CAST(:t0 AS timestamptz)
                                  + (g::float8 / :trips) * (:days * interval '1 day')
                           AS started) t
       CROSS JOIN LATERAL (SELECT u.min_id + (g * 104729) % u.n AS user_id
                           FROM (SELECT min(id) AS min_id, count(*) AS n FROM users
                                 WHERE email LIKE '%@bench.example.com') u) r""",
]


async def generate(url: str, size: Size) -> tuple[int, int]:
    """The city; returns (network id, operator id)."""
    engine = create_engine(url)
    try:
        await upgrade(engine)
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=size.days)
        async with create_sessionmaker(engine)() as session:
            network = Network(name="Benchville", currency="EUR", timezone=TZ)
            session.add(network)
            await session.flush()
            unit = OrganizationalUnit(
                name="Benchville", networks=[network.id], clusters=[], app_labels=[],
                organizations=[],
            )  # fmt: skip
            session.add(unit)
            await session.flush()
            operator = User(
                email="operator@bench.example.org",
                password_hash="x",
                role=UserRole.OPERATOR,
                permissions=operator_permissions(network.id, unit.id),
            )
            assert ou_snapshot  # the grants carry the unit's snapshot (operator_permissions)
            session.add(operator)
            await session.flush()
            params = {
                "net": network.id,
                "stations": size.stations,
                "spots": SPOTS_PER_STATION,
                "vehicles": size.vehicles,
                "riders": size.riders,
                "trips": size.trips,
                "days": size.days,
                "t0": t0,
            }
            for statement in GENERATE:
                started = time.perf_counter()
                result = await session.execute(text(statement), params)
                print(
                    f"  {statement.split()[2]}: {result.rowcount} rows "
                    f"in {time.perf_counter() - started:.1f} s",
                    flush=True,
                )
            await session.commit()
            ids = (network.id, operator.id)
        # The trips were written by SQL, not ended by the engine: the usage rollup loads them
        # as migration 0019's backfill does (set-based, timed).
        async with engine.begin() as conn:
            started = time.perf_counter()
            await conn.run_sync(rollup.rebuild)
            print(f"  usage rollup rebuilt in {time.perf_counter() - started:.1f} s", flush=True)
        async with engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            started = time.perf_counter()
            await autocommit.execute(text("VACUUM ANALYZE"))
            print(f"  vacuum analyze: {time.perf_counter() - started:.1f} s", flush=True)
        return ids
    finally:
        await engine.dispose()


@dataclass
class Target:
    name: str
    path: str


def targets(net: int, days: int) -> list[Target]:
    today = datetime.now(UTC).date()
    month = f"start_date={today - timedelta(days=29)}&end_date={today}&timezone={TZ}"
    year = f"start_date={today - timedelta(days=days - 1)}&end_date={today}&timezone={TZ}"
    n = f"networks={net}"
    out = [
        Target("overview/stations", f"/v1/dashboard/overview/stations?{n}"),
        Target("overview/vehicles", f"/v1/dashboard/overview/vehicles?{n}"),
        Target("overview/trips", f"/v1/dashboard/overview/trips?{n}&timezone={TZ}"),
        Target("overview/users", f"/v1/dashboard/overview/users?{n}&timezone={TZ}"),
        Target("overview/map", f"/v1/dashboard/overview/map?{n}"),
        Target("usage-stats/organizations", f"/v1/dashboard/usage-stats/organizations?{n}"),
    ]
    for op in (
        "", "/summary", "/trips-by-dow", "/trips-by-time-of-day", "/distance-distribution",
        "/duration-distribution", "/station-distribution",
    ):  # fmt: skip
        out.append(
            Target(f"usage-stats{op or ''}[30d]", f"/v1/dashboard/usage-stats{op}?{n}&{month}")
        )
    for op in ("", "/summary", "/trips-by-dow"):
        out.append(Target(f"usage-stats{op}[year]", f"/v1/dashboard/usage-stats{op}?{n}&{year}"))
    return out


#: Other parts' list endpoints: (name, path template, query).
LISTS = [
    ("trips list", "/v1/dashboard/trips", "networks={net}"),
    ("vehicles list", "/v1/dashboard/vehicles", "networks={net}"),
    ("clusters list", "/v1/dashboard/clusters", "networks={net}"),
]


async def measure(url: str, net: int, operator_id: int, size: Size, calls: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(DATABASE_URL=url, VAR_DIR=Path(tmp) / "var", JWT_SECRET=JWT)
        engine = create_engine(url)
        app = create_app(settings, engine=engine)
        settle_heap()  # as the served API does (kickstand.cloud.api.main)
        async with create_sessionmaker(engine)() as session:
            operator = await session.get_one(User, operator_id)
            token = create_access_token(
                settings, operator.id, operator.permissions, operator.token_generation
            )
        headers = {"Authorization": f"Bearer {token}"}
        paths = {p for p in app.openapi()["paths"]}
        todo = targets(net, size.days)
        for name, path, query in LISTS:
            if path.removeprefix("") in paths:
                todo.append(Target(name, f"{path}?{query.format(net=net)}"))
            else:
                print(f"  note: {name} ({path}) is not served yet: skipped", flush=True)
        results: dict[str, tuple[float, float]] = {}
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
        ):
            for target in todo:
                timings: list[float] = []
                failed = None
                for i in range(3 + calls):
                    started = time.perf_counter()
                    r = await client.get(target.path, headers=headers)
                    elapsed = (time.perf_counter() - started) * 1000
                    if r.status_code != 200:
                        failed = f"{r.status_code} {r.text[:200]}"
                        break
                    if i >= 3:
                        timings.append(elapsed)
                if failed:
                    print(f"  note: {target.name} answered {failed}: skipped", flush=True)
                    continue
                p50, p99 = percentile(timings, 50), percentile(timings, 99)
                results[target.name] = (p50, p99)
                print(f"  {target.name:40s} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms", flush=True)
        await engine.dispose()
    slowest = max(results, key=lambda k: results[k][1])
    over = [k for k, (_, p99) in results.items() if p99 > 200]
    print(f"over 200 ms p99: {', '.join(over) if over else 'none'}")
    print(f"dashboard p99_ms: {results[slowest][1]:.1f} (slowest: {slowest})")


async def run(size: Size, calls: int) -> None:
    with open_postgres() as pg:
        db = pg.new_database()
        try:
            print(
                f"city: {size.stations} stations, {size.vehicles} vehicles, {size.riders} "
                f"riders, {size.trips} trips over {size.days} days",
                flush=True,
            )
            started = time.perf_counter()
            net, operator = await generate(db.url, size)
            print(f"generated in {time.perf_counter() - started:.1f} s", flush=True)
            await measure(db.url, net, operator, size, calls)
        finally:
            pg.drop_database(db.name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true", help="a quick check (a small city)")
    parser.add_argument("--stations", type=int, default=None)
    parser.add_argument("--vehicles", type=int, default=None)
    parser.add_argument("--riders", type=int, default=None)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--trips-per-day", type=float, default=1.0, help="per vehicle")
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args()
    small = args.small
    size = Size(
        stations=args.stations or (50 if small else 1000),
        vehicles=args.vehicles or (500 if small else 10000),
        riders=args.riders or (2000 if small else 50000),
        days=60 if small and args.days == 365 else args.days,
        trips_per_day=args.trips_per_day,
    )
    asyncio.run(run(size, 10 if small and args.calls == 40 else args.calls))


if __name__ == "__main__":
    main()
