"""The SQL of the dashboard's figures: aggregates (GROUP BY, conditional sums) the database
computes, on PostgreSQL and on SQLite (``make run``).

The dialect seam is here and only here (:class:`Dialect`):

- **local time** of an instant in the request's time zone: PostgreSQL ``timezone(tz, t)``;
  SQLite has no time zones, so the zone's UTC offsets over the period come from
  ``zoneinfo`` and the statement applies them with ``datetime(t, CASE … END)`` (exact
  across DST changes: one branch per transition in the period);
- **truncation** of a local time to its day / week (Monday) / month / quarter:
  ``date_trunc`` on PostgreSQL, ``date``/``strftime`` modifiers on SQLite;
- **seconds between two instants**: ``extract(epoch …)`` / ``julianday`` difference.

Everything else is portable SQL (``extract('dow'|'hour')`` compiles to ``strftime`` on
SQLite; the haversine distance uses ``radians``/``sin``/``cos``/``asin``/``sqrt``, which
SQLite ≥ 3.35 has when built with its math functions, as Python's bundled SQLite is).

Indexes (migration 0017, :mod:`kickstand.cloud.stats.models`): ``trips (network_id,
started_at)`` for every "these networks, this period" filter, ``trips (user_id,
network_id)`` for "riders of these networks", ``user_organizations (organization_id)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    and_,
    case,
    cast,
    distinct,
    exists,
    extract,
    false,
    func,
    literal,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.access.models import Organization, UserOrganization
from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import CURRENT_STATES
from kickstand.cloud.api.geo import EARTH_RADIUS_M
from kickstand.cloud.keyset import Keyset, page_query
from kickstand.cloud.liveness import PRESENCE_COLUMNS
from kickstand.cloud.models import (
    ACTIVE_TRIP_STATUSES,
    Cluster,
    Device,
    Network,
    Spot,
    SpotState,
    Station,
    Trip,
    TripStatus,
    User,
    Vehicle,
    table_of,
)
from kickstand.cloud.stats.models import (
    ACTIVE,
    MASK_BITS,
    MASKS,
    NOT_ROLLED_UP,
    TripRollupCluster,
    TripRollupHistogram,
    TripRollupHistogramMonth,
    TripRollupHourly,
    TripRollupPresence,
    TripRollupRider,
)

HOURLY = table_of(TripRollupHourly)
HISTOGRAM = table_of(TripRollupHistogram)
HISTOGRAM_MONTH = table_of(TripRollupHistogramMonth)
CLUSTER = table_of(TripRollupCluster)
PRESENCE = table_of(TripRollupPresence)
RIDER = table_of(TripRollupRider)

Unit = Literal["day", "week", "month", "quarter"]


@dataclass(frozen=True, slots=True)
class Window:
    """Local days ``start`` … ``end`` (inclusive) of ``zone`` as UTC instants [since, until)."""

    start: date
    end: date
    zone: ZoneInfo

    @property
    def since(self) -> datetime:
        return local_midnight(self.start, self.zone)

    @property
    def until(self) -> datetime:
        return local_midnight(self.end + timedelta(days=1), self.zone)


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant ``day`` begins in ``zone`` (a midnight skipped by DST: the first
    instant after it, as zoneinfo resolves it)."""
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class OrganizationFilter:
    """Seed ``organizations``: trips of members of ``ids``, and/or (``without``) of riders
    in no organization. None of it: every trip."""

    ids: frozenset[int] = frozenset()
    without: bool = False

    @property
    def active(self) -> bool:
        return bool(self.ids) or self.without


def _offset_s(zone: ZoneInfo, at: datetime) -> int:
    return int((at.astimezone(zone).utcoffset() or timedelta()).total_seconds())


def utc_offsets(zone: ZoneInfo, since: datetime, until: datetime) -> list[tuple[datetime, int]]:
    """The zone's UTC offset (seconds) from ``since`` and from each transition before
    ``until``: day by day, a change is bisected to its instant."""
    out = [(since, _offset_s(zone, since))]
    at = since
    while at < until:
        nxt = min(at + timedelta(days=1), until)
        if _offset_s(zone, nxt) != out[-1][1]:
            lo, hi = at, nxt
            while hi - lo > timedelta(microseconds=1):
                mid = lo + (hi - lo) / 2
                lo, hi = (mid, hi) if _offset_s(zone, mid) == out[-1][1] else (lo, mid)
            out.append((hi, _offset_s(zone, hi)))
        at = nxt
    return out


class Dialect:
    """What differs between PostgreSQL and SQLite (see the module's docstring)."""

    def __init__(self, session: AsyncSession) -> None:
        bind = session.get_bind()
        self.name = bind.dialect.name

    @property
    def sqlite(self) -> bool:
        return self.name == "sqlite"

    def local(self, column: Any, window: Window) -> ColumnElement[Any]:
        """``column`` (a UTC instant) as a local timestamp of ``window.zone``."""
        if not self.sqlite:
            return func.timezone(window.zone.key, column)
        segments = utc_offsets(window.zone, window.since, window.until)
        if len(segments) == 1:
            return func.datetime(column, f"{segments[0][1]:+d} seconds")
        whens = [
            (column < nxt_at, f"{offset:+d} seconds")
            for (_, offset), (nxt_at, _) in pairwise(segments)
        ]
        return func.datetime(column, case(*whens, else_=f"{segments[-1][1]:+d} seconds"))

    def truncate(self, local: ColumnElement[Any], unit: Unit) -> ColumnElement[Any]:
        """The start of the local ``unit`` containing ``local`` (weeks start on Monday)."""
        if not self.sqlite:
            return func.date_trunc(unit, local)
        if unit == "day":
            return func.date(local)
        if unit == "week":
            # 'weekday 0': forward to Sunday (or stay); back 6 days: that week's Monday.
            return func.date(local, "weekday 0", "-6 days")
        if unit == "month":
            return func.strftime("%Y-%m-01", local)
        month = cast(func.strftime("%m", local), Integer)
        return func.printf("%s-%02d-01", func.strftime("%Y", local), (month - 1) // 3 * 3 + 1)

    def seconds_between(self, start: Any, end: Any) -> ColumnElement[Any]:
        if not self.sqlite:
            return extract("epoch", end - start)
        # julianday is a float of days: rounded to the millisecond, 1800 s stays 1800.
        return func.round((func.julianday(end) - func.julianday(start)) * 86400.0, 3)


def _all(result: Any) -> list[Any]:
    return list(result.all())


def bucket_date(value: Any) -> date:
    """A truncation's value (datetime on PostgreSQL, text on SQLite) as a date."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


# ── the trips of a period ────────────────────────────────────────────────────────────────


def distance_m() -> ColumnElement[Any]:
    """Straight-line distance of a trip (start to end position), meters; NULL without both."""
    lat1, lat2 = func.radians(Trip.start_latitude), func.radians(Trip.end_latitude)
    d_lat = func.radians(Trip.end_latitude - Trip.start_latitude)
    d_lng = func.radians(Trip.end_longitude - Trip.start_longitude)
    a = func.power(func.sin(d_lat / 2), 2) + func.cos(lat1) * func.cos(lat2) * func.power(
        func.sin(d_lng / 2), 2
    )
    # min(1, a): rounding can push a just above 1 for antipodal points (asin's domain).
    return 2 * EARTH_RADIUS_M * func.asin(func.sqrt(case((a > 1, 1.0), else_=a)))


def paid() -> ColumnElement[bool]:
    """Seed "payment mode": a trip that cost something (else free); Money is text on SQLite."""
    return cast(Trip.cost, Float) > 0


def trips_where(
    networks: Sequence[int], window: Window, organizations: OrganizationFilter
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [
        Trip.network_id.in_(networks),
        Trip.started_at >= window.since,
        Trip.started_at < window.until,
        Trip.status != TripStatus.CANCELLED,
    ]
    if organizations.active:
        either: list[ColumnElement[bool]] = []
        if organizations.ids:
            members = select(UserOrganization.user_id).where(
                UserOrganization.organization_id.in_(organizations.ids)
            )
            either.append(Trip.user_id.in_(members))
        if organizations.without:
            either.append(~exists().where(UserOrganization.user_id == Trip.user_id))
        where.append(or_(*either))
    return where


async def usage_by_bucket(
    session: AsyncSession, where: list[ColumnElement[bool]], window: Window, unit: Unit
) -> list[tuple[date, int, int]]:
    """(bucket start, trips, distinct riders) per local ``unit``."""
    sql = Dialect(session)
    bucket = sql.truncate(sql.local(Trip.started_at, window), unit).label("bucket")
    rows = await session.execute(
        select(bucket, func.count(), func.count(distinct(Trip.user_id)))
        .where(*where)
        .group_by(bucket)
    )
    return [(bucket_date(b), int(n), int(u)) for b, n, u in _all(rows)]


async def count_by(
    session: AsyncSession,
    where: list[ColumnElement[bool]],
    window: Window,
    part: Literal["dow", "hour"],
) -> dict[int, int]:
    """Trips per local day of week (0 Sunday, as pricing rules) or hour of day."""
    sql = Dialect(session)
    key = extract(part, sql.local(Trip.started_at, window)).label("k")
    rows = await session.execute(select(key, func.count()).where(*where).group_by(key))
    return {int(k): int(n) for k, n in _all(rows)}


@dataclass(frozen=True, slots=True)
class Measures:
    count: int
    total: float
    average: float | None
    median: float | None
    max: float | None


@dataclass(frozen=True, slots=True)
class Summary:
    trips: int
    users: int
    vehicles: int
    distance: Measures
    duration: Measures


async def _median(
    session: AsyncSession, where: list[ColumnElement[bool]], expr: Any, n: int
) -> float | None:
    # SQLite's median: the middle one or two values in order (PostgreSQL: percentile_cont).
    if n == 0:
        return None
    take = 1 if n % 2 else 2
    values: list[Any] = list(
        await session.scalars(
            select(expr)
            .where(*where, expr.is_not(None))
            .order_by(expr)
            .limit(take)
            .offset((n - 1) // 2)
        )
    )
    return sum(float(v) for v in values) / len(values)


async def summary(session: AsyncSession, where: list[ColumnElement[bool]]) -> Summary:
    sql = Dialect(session)
    duration = sql.seconds_between(Trip.started_at, Trip.ended_at)
    distance = distance_m()
    # Each trip's measures computed once (a subquery), aggregated once; PostgreSQL takes the
    # medians in the same pass (percentile_cont), SQLite by two ordered reads (_median).
    trip = (
        select(Trip.user_id, Trip.vehicle_id, distance.label("d"), duration.label("s"))
        .where(*where)
        .subquery()
    )
    medians: list[Any] = (
        []
        if sql.sqlite
        else [
            func.percentile_cont(0.5).within_group(trip.c.d),
            func.percentile_cont(0.5).within_group(trip.c.s),
        ]
    )
    row: Any = (
        await session.execute(
            select(
                func.count(),
                func.count(distinct(trip.c.user_id)),
                func.count(distinct(trip.c.vehicle_id)),
                func.count(trip.c.d),
                func.coalesce(func.sum(trip.c.d), 0.0),
                func.max(trip.c.d),
                func.count(trip.c.s),
                func.coalesce(func.sum(trip.c.s), 0.0),
                func.max(trip.c.s),
                *medians,
            )
        )
    ).one()
    trips, users, vehicles, n_dist, sum_dist, max_dist, n_dur, sum_dur, max_dur = row[:9]
    if sql.sqlite:
        median_dist = await _median(session, where, distance, int(n_dist))
        median_dur = await _median(session, where, duration, int(n_dur))
    else:
        median_dist, median_dur = (None if v is None else float(v) for v in row[9:])

    def measures(n: int, total: Any, top: Any, median: float | None) -> Measures:
        n = int(n)
        return Measures(
            count=n,
            total=float(total),
            average=float(total) / n if n else None,
            median=median,
            max=float(top) if top is not None else None,
        )

    return Summary(
        trips=int(trips),
        users=int(users),
        vehicles=int(vehicles),
        distance=measures(n_dist, sum_dist, max_dist, median_dist),
        duration=measures(n_dur, sum_dur, max_dur, median_dur),
    )


def _bucket_index(expr: ColumnElement[Any], edges: Sequence[float]) -> ColumnElement[Any]:
    """0 for [0, edges[0]), i for [edges[i-1], edges[i]), len(edges) beyond the last."""
    return case(
        *[(expr < edge, literal(i)) for i, edge in enumerate(edges)], else_=literal(len(edges))
    )


async def distribution(
    session: AsyncSession,
    where: list[ColumnElement[bool]],
    measure: Literal["distance", "duration"],
    edges: Sequence[float],
) -> dict[tuple[int, bool], int]:
    """Finished trips per (range index, paid) of their distance (m) or duration (s)."""
    sql = Dialect(session)
    expr = (
        distance_m()
        if measure == "distance"
        else sql.seconds_between(Trip.started_at, Trip.ended_at)
    )
    # The measure computed once per trip (a subquery): the CASE of the ranges reads it.
    trip = (
        select(expr.label("x"), case((paid(), True), else_=False).label("paid"))
        .where(*where, Trip.ended_at.is_not(None))
        .subquery()
    )
    index = _bucket_index(trip.c.x, edges).label("i")
    rows = await session.execute(
        select(index, trip.c.paid, func.count())
        .where(trip.c.x.is_not(None))
        .group_by(index, trip.c.paid)
    )
    return {(int(i), bool(p)): int(n) for i, p, n in _all(rows)}


@dataclass(frozen=True, slots=True)
class ClusterCounts:
    id: int
    network_id: int
    name: str
    latitude: float
    longitude: float
    started: int
    ended: int


async def station_distribution(
    session: AsyncSession, networks: Sequence[int], where: list[ColumnElement[bool]]
) -> list[ClusterCounts]:
    """Trips started and ended at each cluster of the networks (zero included)."""
    # Each trip's two ends in one scan of the period's trips.
    ends = union_all(
        select(
            Trip.start_cluster_id.label("cid"), literal(1).label("s"), literal(0).label("e")
        ).where(*where, Trip.start_cluster_id.is_not(None)),
        select(Trip.end_cluster_id, literal(0), literal(1)).where(
            *where, Trip.end_cluster_id.is_not(None)
        ),
    ).subquery()
    counts = (
        select(ends.c.cid, func.sum(ends.c.s).label("s"), func.sum(ends.c.e).label("e"))
        .group_by(ends.c.cid)
        .subquery()
    )
    return await _per_cluster(session, networks, counts)


async def _per_cluster(
    session: AsyncSession, networks: Sequence[int], counts: Any
) -> list[ClusterCounts]:
    """Every cluster of the networks with ``counts`` (columns ``cid``, ``s`` started, ``e``
    ended) of it, zero when it has none."""
    rows = await session.execute(
        select(
            Cluster.id,
            Cluster.network_id,
            Cluster.name,
            Cluster.latitude,
            Cluster.longitude,
            func.coalesce(counts.c.s, 0),
            func.coalesce(counts.c.e, 0),
        )
        .outerjoin(counts, counts.c.cid == Cluster.id)
        .where(Cluster.network_id.in_(networks))
        .order_by(Cluster.id)
    )
    return [ClusterCounts(*r) for r in _all(rows)]


async def organizations_of(
    session: AsyncSession, networks: Sequence[int]
) -> list[tuple[int, str, int]]:
    """(id, name, members who rode there) of organizations with a rider on the networks."""
    rows = await session.execute(
        select(Organization.id, Organization.name, func.count(UserOrganization.user_id))
        .join(UserOrganization, UserOrganization.organization_id == Organization.id)
        .where(rode_on(networks, UserOrganization.user_id))
        .group_by(Organization.id, Organization.name)
        .order_by(Organization.name, Organization.id)
    )
    return [(int(i), str(n), int(c)) for i, n, c in _all(rows)]


# ── overview: the state of things now ───────────────────────────────────────────────────


async def cluster_rows(session: AsyncSession, networks: Sequence[int]) -> list[Any]:
    """(id, network_id, name, latitude, longitude) of the networks' clusters, by id: the
    map's columns, not 1,000 ORM objects of a city."""
    rows = await session.execute(
        select(Cluster.id, Cluster.network_id, Cluster.name, Cluster.latitude, Cluster.longitude)
        .where(Cluster.network_id.in_(networks))
        .order_by(Cluster.id)
    )
    return _all(rows)


async def count_clusters(session: AsyncSession, networks: Sequence[int]) -> int:
    n = await session.scalar(
        select(func.count()).select_from(Cluster).where(Cluster.network_id.in_(networks))
    )
    return int(n or 0)


async def station_presence(
    session: AsyncSession, networks: Sequence[int]
) -> list[tuple[int, tuple[Any, ...]]]:
    """(cluster id, presence columns) of every station of the networks."""
    rows = await session.execute(
        select(Station.cluster_id, *PRESENCE_COLUMNS)
        .join(Cluster, Cluster.id == Station.cluster_id)
        .outerjoin(Device, Device.device_id == Station.device_id)
        .where(Cluster.network_id.in_(networks))
    )
    return [(int(r[0]), tuple(r[1:])) for r in _all(rows)]


async def spots_by_cluster(
    session: AsyncSession, networks: Sequence[int]
) -> list[tuple[int, str, bool, int]]:
    """(cluster id, spot state, holds a vehicle, spots) of the networks."""
    occupied = (Vehicle.id.is_not(None)).label("occupied")
    rows = await session.execute(
        select(Station.cluster_id, Spot.state, occupied, func.count())
        .select_from(Spot)
        .join(Station, Station.id == Spot.station_id)
        .join(Cluster, Cluster.id == Station.cluster_id)
        .outerjoin(Vehicle, Vehicle.spot_id == Spot.id)
        .where(Cluster.network_id.in_(networks))
        .group_by(Station.cluster_id, Spot.state, occupied)
    )
    return [(int(c), str(s), bool(o), int(n)) for c, s, o, n in _all(rows)]


async def vehicle_groups(
    session: AsyncSession, networks: Sequence[int]
) -> list[tuple[str, str, bool, str | None, bool, int]]:
    """Vehicles of the networks grouped by what the rentable rule reads:
    (state, type, in maintenance, spot state or None, battery below the network's
    minimum, count)."""
    low = and_(
        Vehicle.battery_level.is_not(None),
        Vehicle.battery_level < Network.min_battery_to_rent,
    )
    low_battery = case((low, True), else_=false()).label("low")
    rows = await session.execute(
        select(
            Vehicle.state,
            Vehicle.vehicle_type,
            Vehicle.in_maintenance,
            Spot.state,
            low_battery,
            func.count(),
        )
        .join(Network, Network.id == Vehicle.network_id)
        .outerjoin(Spot, Spot.id == Vehicle.spot_id)
        .where(Vehicle.network_id.in_(networks))
        .group_by(
            Vehicle.state, Vehicle.vehicle_type, Vehicle.in_maintenance, Spot.state, low_battery
        )
    )
    return [
        (str(s), str(t), bool(m), None if ss is None else str(ss), bool(lo), int(n))
        for s, t, m, ss, lo, n in _all(rows)
    ]


@dataclass(frozen=True, slots=True)
class StationPage:
    """The stations of a page by id range: what the per-station aggregates of
    :func:`spots_of_stations` and :func:`open_alerts_of_stations` read, one statement each
    whatever the page's size (a range and the networks, not a list of 1,000 ids)."""

    networks: Sequence[int]
    first_id: int
    last_id: int

    def where(self) -> ColumnElement[bool]:
        return and_(
            Station.id.between(self.first_id, self.last_id),
            Station.decommissioned_at.is_(None),
            Cluster.network_id.in_(self.networks),
        )


async def map_station_rows(
    session: AsyncSession, networks: Sequence[int], keyset: Keyset
) -> list[Any]:
    """A keyset page (by station id) of the networks' stations in service: (id, name,
    device_id, cluster_id, cluster name, network_id, latitude, longitude, *presence)."""
    stmt = (
        select(
            Station.id,
            Station.name,
            Station.device_id,
            Station.cluster_id,
            Cluster.name,
            Cluster.network_id,
            Cluster.latitude,
            Cluster.longitude,
            *PRESENCE_COLUMNS,
        )
        .join(Cluster, Cluster.id == Station.cluster_id)
        .outerjoin(Device, Device.device_id == Station.device_id)
        .where(Cluster.network_id.in_(networks), Station.decommissioned_at.is_(None))
    )
    return _all(await session.execute(page_query(stmt, Station.id, keyset)))


async def spots_of_stations(session: AsyncSession, page: StationPage) -> dict[int, tuple[int, ...]]:
    """Station id → (spots, active spots, active and empty, active holding a vehicle)."""
    active = Spot.state == SpotState.ACTIVE
    docked = Vehicle.id.is_not(None)
    rows = await session.execute(
        select(
            Spot.station_id,
            func.count(),
            func.sum(case((active, 1), else_=0)),
            func.sum(case((and_(active, ~docked), 1), else_=0)),
            func.sum(case((and_(active, docked), 1), else_=0)),
        )
        .join(Station, Station.id == Spot.station_id)
        .join(Cluster, Cluster.id == Station.cluster_id)
        .outerjoin(Vehicle, Vehicle.spot_id == Spot.id)
        .where(page.where())
        .group_by(Spot.station_id)
    )
    return {int(r[0]): tuple(int(n or 0) for n in r[1:]) for r in _all(rows)}


async def open_alerts_of_stations(session: AsyncSession, page: StationPage) -> dict[int, int]:
    """Station id → fleet alerts needing attention (new, escalated) on it or one of its
    spots (an alert naming both counts once)."""
    station_id = func.coalesce(FleetAlert.station_id, Spot.station_id)
    rows = await session.execute(
        select(station_id, func.count())
        .select_from(FleetAlert)
        .outerjoin(Spot, Spot.id == FleetAlert.spot_id)
        .join(Station, Station.id == station_id)
        .join(Cluster, Cluster.id == Station.cluster_id)
        .where(page.where(), FleetAlert.state.in_(CURRENT_STATES))
        .group_by(station_id)
    )
    return {int(s): int(n) for s, n in _all(rows)}


async def active_trips(session: AsyncSession, networks: Sequence[int]) -> dict[str, int]:
    rows = await session.execute(
        select(Trip.status, func.count())
        .where(Trip.network_id.in_(networks), Trip.status.in_(ACTIVE_TRIP_STATUSES))
        .group_by(Trip.status)
    )
    return {str(s): int(n) for s, n in _all(rows)}


async def trips_since(
    session: AsyncSession, networks: Sequence[int], marks: Sequence[datetime], until: datetime
) -> list[int]:
    """Trips (not cancelled) started in [mark, until) for each mark (one scan: the
    earliest mark's rows)."""
    since = min(marks)
    row = (
        await session.execute(
            select(
                *[
                    func.coalesce(func.sum(case((Trip.started_at >= m, 1), else_=0)), 0)
                    for m in marks
                ]
            ).where(
                Trip.network_id.in_(networks),
                Trip.started_at >= since,
                Trip.started_at < until,
                Trip.status != TripStatus.CANCELLED,
            )
        )
    ).one()
    return [int(v) for v in row]


async def riders_since(
    session: AsyncSession, networks: Sequence[int], marks: Sequence[datetime], until: datetime
) -> list[int]:
    """Distinct riders with a trip started on the networks in [mark, until), per mark
    (one scan: the earliest mark's rows)."""
    row: Any = (
        await session.execute(
            select(
                *[func.count(distinct(case((Trip.started_at >= m, Trip.user_id)))) for m in marks]
            ).where(
                Trip.network_id.in_(networks),
                Trip.started_at >= min(marks),
                Trip.started_at < until,
                Trip.status != TripStatus.CANCELLED,
            )
        )
    ).one()
    return [int(v) for v in row]


async def riders(
    session: AsyncSession, networks: Sequence[int], registered_since: datetime | None = None
) -> int:
    """Users who ever rode on the networks (seed: a user belongs to a network from its first
    trip there), optionally only those registered since a time."""
    stmt = select(func.count()).select_from(User).where(rode_on(networks, User.id))
    if registered_since is not None:
        stmt = stmt.where(User.created_at >= registered_since)
    return int(await session.scalar(stmt) or 0)


# ── from the usage rollup (kickstand.cloud.stats.rollup) ────────────────────────────────
#
# The rollup is keyed by each network's local day: it answers a period asked in that same
# time zone (the service checks it, else it reads ``trips`` as above). It holds finished
# trips; the few running or on-hold ones of the period are read from ``trips`` (the partial
# index of migration 0019) and added by the service.


async def plan_each_time(session: AsyncSession) -> None:
    """PostgreSQL: plan this transaction's statements for their values. asyncpg prepares
    each statement; after five runs PostgreSQL may keep a generic plan, blind to the days
    and masks asked: the summary of a year went from 120 to 300 ms at the sixth call
    (benchmarks/dashboard_queries.py). A custom plan costs a fraction of a millisecond.

    No JIT: these statements run in milliseconds, but a subplan per row of ``users``
    (:func:`rode_on`) is estimated past ``jit_above_cost`` and its compilation took 260 of
    the 300 ms of the overview's new riders (EXPLAIN ANALYZE on the benchmark city).

    No parallel workers: a scan of the year's presence rows (60k) took 44-59 ms with two
    workers and 23-29 ms without on this 2-core machine under load (psql, load 6): their
    start and their gathering cost more than they save, and an API serves other requests
    meanwhile."""
    if not Dialect(session).sqlite:
        await session.execute(
            text(
                "SELECT set_config('plan_cache_mode', 'force_custom_plan', true),"
                " set_config('jit', 'off', true),"
                " set_config('max_parallel_workers_per_gather', '0', true)"
            )
        )


async def network_zones(session: AsyncSession, networks: Sequence[int]) -> set[str]:
    rows = await session.scalars(select(Network.timezone).where(Network.id.in_(networks)))
    return set(rows.all())


def _days(table: Any, networks: Sequence[int], start: date, end: date) -> list[Any]:
    return [table.c.network_id.in_(networks), table.c.local_day >= start, table.c.local_day <= end]


async def rollup_trips_by(
    session: AsyncSession,
    networks: Sequence[int],
    start: date,
    end: date,
    part: Literal["local_day", "hour"],
) -> dict[Any, int]:
    """Finished trips per local day or per local hour of day."""
    key = HOURLY.c[part]
    rows = await session.execute(
        select(key, func.sum(HOURLY.c.trips))
        .where(*_days(HOURLY, networks, start, end))
        .group_by(key)
    )
    return {(bucket_date(k) if part == "local_day" else int(k)): int(n) for k, n in _all(rows)}


@dataclass(frozen=True, slots=True)
class RollupMeasures:
    trips: int
    distance_n: int
    distance_sum: float
    distance_max: float | None
    duration_n: int
    duration_sum: float
    duration_max: float | None


async def rollup_measures(
    session: AsyncSession, networks: Sequence[int], start: date, end: date
) -> RollupMeasures:
    c = HOURLY.c
    row: Any = (
        await session.execute(
            select(
                func.coalesce(func.sum(c.trips), 0),
                func.coalesce(func.sum(c.distance_n), 0),
                func.coalesce(func.sum(c.distance_sum), 0.0),
                func.max(c.distance_max),
                func.coalesce(func.sum(c.duration_n), 0),
                func.coalesce(func.sum(c.duration_sum), 0.0),
                func.max(c.duration_max),
            ).where(*_days(HOURLY, networks, start, end))
        )
    ).one()
    t, dn, ds, dm, sn, ss, sm = row
    return RollupMeasures(
        int(t),
        int(dn),
        float(ds),
        None if dm is None else float(dm),
        int(sn),
        float(ss),
        None if sm is None else float(sm),
    )


async def rollup_histogram(
    session: AsyncSession,
    networks: Sequence[int],
    start: date,
    end: date,
    measure: Literal["distance", "duration"],
) -> dict[tuple[int, bool], int]:
    """Finished trips per (bucket, paid) of the measure's fine histogram."""
    return (await rollup_histograms(session, networks, start, end, [measure]))[measure]


async def rollup_histograms(
    session: AsyncSession,
    networks: Sequence[int],
    start: date,
    end: date,
    measures: Sequence[Literal["distance", "duration"]],
) -> dict[str, dict[tuple[int, bool], int]]:
    """Per measure: finished trips per (bucket, paid) of its fine histogram (one
    statement): the period's whole local months from the monthly rows, its other days from
    the daily ones."""
    first, last = whole_months(start, end)
    c, month = HISTOGRAM.c, HISTOGRAM_MONTH.c
    days = [(start, end)]
    selects: list[Any] = []
    if first <= last:
        days = [(start, first - timedelta(days=1)), (next_month(last), end)]
        selects.append(
            select(month.measure, month.bucket, month.paid, month.trips).where(
                month.network_id.in_(networks),
                month.month >= first,
                month.month <= last,
                month.measure.in_(measures),
            )
        )
    selects += [
        select(c.measure, c.bucket, c.paid, c.trips).where(
            *_days(HISTOGRAM, networks, lo, hi), c.measure.in_(measures)
        )
        for lo, hi in days
        if lo <= hi
    ]
    both = union_all(*selects).subquery()
    rows = await session.execute(
        select(both.c.measure, both.c.bucket, both.c.paid, func.sum(both.c.trips)).group_by(
            both.c.measure, both.c.bucket, both.c.paid
        )
    )
    out: dict[str, dict[tuple[int, bool], int]] = {m: {} for m in measures}
    for m, b, p, n in _all(rows):
        if n:
            out[str(m)][(int(b), bool(p))] = int(n)
    return out


def next_month(day: date) -> date:
    """The first day of the month after ``day``'s."""
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def whole_months(start: date, end: date) -> tuple[date, date]:
    """The first days of the first and the last month wholly within ``start`` … ``end``
    (first > last: none)."""
    first = start if start.day == 1 else next_month(start)
    last = ((end + timedelta(days=1)).replace(day=1) - timedelta(days=1)).replace(day=1)
    return first, last


async def rollup_clusters(
    session: AsyncSession, networks: Sequence[int], start: date, end: date
) -> list[ClusterCounts]:
    """Finished trips started / ended at each cluster of the networks (zero included)."""
    counts = (
        select(
            CLUSTER.c.cluster_id.label("cid"),
            func.sum(CLUSTER.c.started).label("s"),
            func.sum(CLUSTER.c.ended).label("e"),
        )
        .where(*_days(CLUSTER, networks, start, end))
        .group_by(CLUSTER.c.cluster_id)
        .subquery()
    )
    return await _per_cluster(session, networks, counts)


def day_masks(first: date, last: date) -> dict[int, list[int]]:
    """The presence masks (per year) of the local days ``first`` … ``last``."""
    out: dict[int, list[int]] = {}
    for year in range(first.year, last.year + 1):
        jan1 = date(year, 1, 1)
        a = max(first, jan1).toordinal() - jan1.toordinal()
        b = min(last, date(year, 12, 31)).toordinal() - jan1.toordinal()
        masks = [0] * MASKS
        for i in range(MASKS):
            lo, hi = max(a, i * MASK_BITS), min(b, (i + 1) * MASK_BITS - 1)
            if lo <= hi:
                width = hi - lo + 1
                masks[i] = ((1 << width) - 1) << (lo - i * MASK_BITS)
        out[year] = masks
    return out


Kind = Literal["user", "vehicle"]


async def presence_counts(
    session: AsyncSession,
    networks: Sequence[int],
    groups: Sequence[tuple[date, date]],
    extra: dict[Kind, dict[int, set[date]]],
) -> dict[Kind, list[int]]:
    """Distinct riders ("user") / vehicles ("vehicle") of each kind of ``extra`` with a
    finished trip on the networks on a day of each group (``first``, ``last`` inclusive),
    plus those of ``extra`` (subject → its days of running trips) not counted already. One
    scan per kind of the presence rows of one year (a rider-year is one row, whatever the
    number of its trips) when the groups lie within two years of one network."""
    kinds = sorted(extra)
    if not groups or not kinds:
        return {k: [] for k in kinds}
    P = PRESENCE.c
    wanted = [day_masks(first, last) for first, last in groups]
    years = sorted({y for masks in wanted for y in masks})

    def meets(masks: dict[int, list[int]]) -> ColumnElement[bool]:
        return or_(
            *[
                and_(
                    P.year == year,
                    or_(*[P[f"m{i}"].op("&")(m) != 0 for i, m in enumerate(ms) if m]),
                )
                for year, ms in masks.items()
                if any(ms)
            ]
        )

    base = [P.network_id.in_(networks), P.kind.in_(kinds)]
    where = [*base, P.year.in_(years)]
    counts: dict[Kind, list[int]] = {k: [0] * len(groups) for k in kinds}

    # A group within two years is read from one row per subject of one network (its last
    # year's: m and p): there a conditional count is the distinct count, all such groups in
    # one scan per kind (no GROUP BY: it compared every row's kind). A group over more
    # years (or several networks) counts its subjects once each, a statement per group.
    single = [g for g, m in enumerate(wanted) if len(networks) == 1 and len(m) <= 2]
    top = max((max(wanted[g]) for g in single), default=0)

    def row_year(masks: dict[int, list[int]]) -> int:
        # A year's row holds its days (m) and the year before's (p): every group within the
        # last two years reads the last year's rows (one year of rows scanned, not two).
        return top if set(masks) <= {top - 1, top} else max(masks)

    in_single = sorted({row_year(wanted[g]) for g in single})

    def in_one_row(masks: dict[int, list[int]]) -> ColumnElement[Any]:
        row = row_year(masks)
        words = [(P[f"m{i}"], m) for i, m in enumerate(masks.get(row, [])) if m]
        words += [(P[f"p{i}"], m) for i, m in enumerate(masks.get(row - 1, [])) if m]
        of_year = (lambda v: v) if len(in_single) == 1 else (lambda v: case((P.year == row, v)))
        if len(words) == 1 and words[0][1].bit_count() == 1:
            # One day: its bit summed (half the time of a CASE per row over 30 days).
            column, bit = words[0]
            value = column.op(">>")(literal(bit.bit_length() - 1, Integer)).op("&")(1)
            return func.coalesce(func.sum(of_year(value)), 0)
        met = or_(*[column.op("&")(m) != 0 for column, m in words])
        return func.count(of_year(case((met, 1))))

    if single:
        values = [in_one_row(wanted[g]) for g in single]
        for kind in kinds:
            row: Any = (
                await session.execute(
                    select(*values).where(
                        P.network_id.in_(networks), P.kind == kind, P.year.in_(in_single)
                    )
                )
            ).one()
            for g, value in zip(single, row, strict=True):
                counts[kind][g] = int(value)
    for g in (g for g in range(len(groups)) if g not in single):
        met = (
            select(P.kind, P.subject_id)
            .where(*base, P.year.in_(list(wanted[g])), meets(wanted[g]))
            .distinct()
            .subquery()
        )
        rows = await session.execute(select(met.c.kind, func.count()).group_by(met.c.kind))
        for kind, value in _all(rows):
            counts[kind][g] = int(value)
    subjects = {(k, s) for k in kinds for s in extra[k]}
    if not subjects:
        return counts
    known: dict[tuple[str, int], list[tuple[int, list[int]]]] = {}
    for kind in kinds:
        if not extra[kind]:
            continue
        rows = await session.execute(
            select(P.kind, P.subject_id, P.year, *[P[f"m{i}"] for i in range(MASKS)]).where(
                *where, P.kind == kind, P.subject_id.in_(list(extra[kind]))
            )
        )
        for k, subject, year, *ms in _all(rows):
            known.setdefault((str(k), int(subject)), []).append((int(year), [int(m) for m in ms]))
    for g, (first, last) in enumerate(groups):
        for kind, subject in subjects:
            if not any(first <= d <= last for d in extra[kind][subject]):
                continue
            rolled = any(
                (m & w) != 0
                for year, ms in known.get((kind, subject), [])
                for m, w in zip(ms, wanted[g].get(year, []), strict=False)
            )
            counts[kind][g] += 0 if rolled else 1
    return counts


async def network_trip_count(session: AsyncSession, networks: Sequence[int]) -> int:
    """Every trip of the networks, exactly: the finished ones the rollup holds (its hourly
    counts) plus the others from ``trips`` by their partial index (migration 0019)."""
    finished = await session.scalar(
        select(func.coalesce(func.sum(HOURLY.c.trips), 0)).where(HOURLY.c.network_id.in_(networks))
    )
    others = await session.scalar(
        select(func.count()).select_from(Trip).where(*_not_rolled_up(networks))
    )
    return int(finished or 0) + int(others or 0)


def _not_rolled_up(networks: Sequence[int]) -> list[Any]:
    # The partial index's own predicate, literally: PostgreSQL matches a partial index by
    # its text (migration 0019).
    return [Trip.network_id.in_(networks), text(f"({NOT_ROLLED_UP})")]


def _rider_rows(networks: Sequence[int]) -> list[ColumnElement[bool]]:
    return [RIDER.c.network_id.in_(networks), RIDER.c.trips > 0]


def rode_on(networks: Sequence[int], user_id: Any) -> ColumnElement[bool]:
    """``user_id`` rode on the networks: a finished trip there (the rollup's rider rows,
    migration 0027) or another (running, on hold, cancelled: by the partial index of the
    trips the rollup does not hold). Probes of two indexes per user, never a scan of
    trips."""
    return or_(
        exists().where(*_rider_rows(networks), RIDER.c.user_id == user_id),
        exists().where(*_not_rolled_up(networks), Trip.user_id == user_id),
    )


async def riders_of(session: AsyncSession, networks: Sequence[int]) -> int:
    """Users who ever rode on the networks, as :func:`riders` counts them, without reading
    ``users``: the rollup's rider rows (one per network and rider: distinct as they are for
    one network) plus the riders of the trips it does not hold that it has no row of."""
    R = RIDER.c
    rolled = func.count(distinct(R.user_id)) if len(set(networks)) > 1 else func.count()
    n = await session.scalar(select(rolled).where(*_rider_rows(networks)))
    others = await session.scalar(
        select(func.count(distinct(Trip.user_id))).where(
            *_not_rolled_up(networks),
            Trip.user_id.is_not(None),
            ~exists().where(*_rider_rows(networks), R.user_id == Trip.user_id),
        )
    )
    return int(n or 0) + int(others or 0)


@dataclass(frozen=True, slots=True)
class LiveTrip:
    user_id: int | None
    vehicle_id: int
    started_at: datetime
    start_cluster_id: int | None


async def live_trips(
    session: AsyncSession, networks: Sequence[int], since: datetime, until: datetime
) -> list[LiveTrip]:
    """Running and on-hold trips started in [since, until): not in the rollup yet."""
    rows = await session.execute(
        select(Trip.user_id, Trip.vehicle_id, Trip.started_at, Trip.start_cluster_id).where(
            Trip.network_id.in_(networks),
            text(f"({ACTIVE})"),  # the partial index's predicate, literally
            Trip.started_at >= since,
            Trip.started_at < until,
        )
    )
    return [LiveTrip(*r) for r in _all(rows)]


__all__ = [
    "ClusterCounts",
    "Dialect",
    "LiveTrip",
    "Measures",
    "OrganizationFilter",
    "RollupMeasures",
    "Summary",
    "Unit",
    "Window",
    "local_midnight",
]
