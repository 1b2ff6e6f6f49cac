"""The usage rollup: what the dashboard's figures read instead of scanning a year of trips.

Fed in one seam: :func:`apply_trip`, called by the trip engine's billing of an ended trip
(``kickstand.cloud.trips._bill``), in the transaction that ends it — every end (a dock, a
free-floating lock, a late dock reconciled on the removal, an overdue hold) and every
re-bill of a finished trip (``stop_billing``) goes through it. Each trip's share is kept
in :class:`~kickstand.cloud.stats.models.TripRollupLedger` (one row per trip): applying a
trip again replaces its share (nothing when unchanged), so a retried end never counts twice
and a re-billed trip moves from "paid" to "free" instead of counting in both.

Tables (:mod:`kickstand.cloud.stats.models`), all keyed by the **network's** local day of
the trip's start (its ``timezone``):

- hourly: trips, distance and duration count / sum / max per local hour and paid or free;
- histogram: trips per 100 m of distance and per minute of duration (and paid or free):
  the distribution ranges (their edges are multiples of both) and the medians —
  bucket-accurate, the middle of the bucket holding the median;
- histogram month: the same per local month (migration 0027): a long period reads its whole
  months there and only its edge days from the daily rows;
- cluster: trips started and ended at each cluster;
- presence: the days of a year each rider and vehicle rode (bit masks), and those of the
  year before (so one row per subject answers a period within two years: a conditional
  count is the distinct count), for the distinct riders / vehicles of any set of days;
- rider: finished trips per network and rider (migration 0027): the network's riders
  (overview users, usage-stats organizations) from one index.

Periods are whole local days (``start_date`` … ``end_date``), so a period asked in the
network's zone is a set of whole rollup days: no partial edge. A period asked in another
zone, or with an ``organizations`` filter (membership as it is now, per rider), is read from
``trips`` (:mod:`kickstand.cloud.stats.service`). A network whose ``timezone`` changes needs
:func:`rebuild` (its days move).

Trips not finished yet (running, on hold) are not in the rollup: the figures add them from
``trips`` (a partial index holds them, migration 0019). :func:`rebuild` recomputes every
table from ``trips`` set-based (migration 0019's backfill, also the tests' and the
benchmark's way to load trips written directly).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Date,
    Float,
    Integer,
    Numeric,
    Table,
    and_,
    case,
    cast,
    delete,
    exists,
    extract,
    func,
    insert,
    inspect,
    literal,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.api.geo import EARTH_RADIUS_M
from kickstand.cloud.models import Network, Trip, TripStatus, table_of
from kickstand.cloud.stats.models import (
    DISTANCE_BUCKET_M,
    DURATION_BUCKET_S,
    MASK_BITS,
    MASKS,
    TripRollupLedger,
)
from kickstand.cloud.stats.repository import (
    CLUSTER,
    HISTOGRAM,
    HISTOGRAM_MONTH,
    HOURLY,
    PRESENCE,
    RIDER,
    paid,
    utc_offsets,
)
from kickstand.cloud.stats.repository import distance_m as sql_distance

LEDGER = table_of(TripRollupLedger)
TABLES = (LEDGER, HOURLY, HISTOGRAM, CLUSTER, PRESENCE, RIDER, HISTOGRAM_MONTH)
MASK_ALL = (1 << MASK_BITS) - 1
_BY_DAY = {HOURLY.name, HISTOGRAM.name, CLUSTER.name, PRESENCE.name}
RESOLUTION = {"distance": DISTANCE_BUCKET_M, "duration": DURATION_BUCKET_S}


def network_zone(name: str | None) -> ZoneInfo:
    """A network's zone (UTC if its name is not one zoneinfo knows)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """The straight-line distance as :func:`kickstand.cloud.stats.repository.distance_m`
    computes it in SQL (same terms, same order: the backfill and the seam agree)."""
    a = (
        math.sin(math.radians(lat2 - lat1) / 2) ** 2
        + math.cos(math.radians(lat1))
        * math.cos(math.radians(lat2))
        * math.sin(math.radians(lng2 - lng1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(a, 1.0)))


def bucket_of(value: float, measure: str) -> int:
    return math.floor(value / RESOLUTION[measure])


def day_bit(day: date) -> tuple[int, int, int]:
    """(year, mask index, bit) of a local day in the presence masks."""
    d = day.toordinal() - date(day.year, 1, 1).toordinal()
    return day.year, d // MASK_BITS, 1 << (d % MASK_BITS)


@dataclass(frozen=True, slots=True)
class Entry:
    """One finished trip's share (a ledger row)."""

    network_id: int
    local_day: date
    hour: int
    paid: bool
    user_id: int | None
    vehicle_id: int
    start_cluster_id: int | None
    end_cluster_id: int | None
    distance_m: float | None
    duration_s: float | None


def entry_of(trip: Trip, zone: ZoneInfo) -> Entry:
    local = trip.started_at.astimezone(zone)
    distance = None
    if None not in (
        trip.start_latitude,
        trip.start_longitude,
        trip.end_latitude,
        trip.end_longitude,
    ):
        distance = distance_m(
            float(trip.start_latitude or 0),
            float(trip.start_longitude or 0),
            float(trip.end_latitude or 0),
            float(trip.end_longitude or 0),
        )
    # To the millisecond, as the backfill (SQLite's julianday is a float of days).
    duration = (
        round((trip.ended_at - trip.started_at).total_seconds(), 3)
        if trip.ended_at is not None
        else None
    )
    return Entry(
        network_id=trip.network_id,
        local_day=local.date(),
        hour=local.hour,
        paid=trip.cost is not None and trip.cost > 0,
        user_id=trip.user_id,
        vehicle_id=trip.vehicle_id,
        start_cluster_id=trip.start_cluster_id,
        end_cluster_id=trip.end_cluster_id,
        distance_m=distance,
        duration_s=duration,
    )


def _ledger_entry(row: Any) -> Entry:
    day = row.local_day if isinstance(row.local_day, date) else date.fromisoformat(row.local_day)
    return Entry(
        network_id=row.network_id,
        local_day=day,
        hour=int(row.hour),
        paid=bool(row.paid),
        user_id=row.user_id,
        vehicle_id=row.vehicle_id,
        start_cluster_id=row.start_cluster_id,
        end_cluster_id=row.end_cluster_id,
        distance_m=row.distance_m,
        duration_s=row.duration_s,
    )


# ── the seam ────────────────────────────────────────────────────────────────────────────


async def apply_trip(session: AsyncSession, trip: Trip) -> None:
    """Make the rollup hold ``trip`` as it is now (finished: its share; else none).

    Idempotent: the trip's previous share (the ledger) is taken out first, nothing is done
    when it is unchanged. Call it in the transaction that changes the trip (its row is
    locked by the engine then: two applications of one trip never interleave)."""
    new: Entry | None = None
    if trip.status == TripStatus.FINISHED and trip.ended_at is not None:
        network = await session.get(Network, trip.network_id)
        new = entry_of(trip, network_zone(network.timezone if network else None))
    found = (await session.execute(select(LEDGER).where(LEDGER.c.trip_id == trip.id))).one_or_none()
    old = _ledger_entry(found) if found is not None else None
    if old == new:
        return
    upsert = _Upsert(session)
    if old is not None:
        await session.execute(delete(LEDGER).where(LEDGER.c.trip_id == trip.id))
        await _take_out(session, upsert, old)
    if new is not None:
        await session.execute(insert(LEDGER).values(trip_id=trip.id, **_values(new)))
        await _put_in(session, upsert, new)


def _values(e: Entry) -> dict[str, Any]:
    return dict(zip(LEDGER.c.keys()[1:], astuple(e), strict=True))


class _Upsert:
    """INSERT … ON CONFLICT (primary key) DO UPDATE of the dialect in use."""

    def __init__(self, session: AsyncSession) -> None:
        self.sqlite = session.get_bind().dialect.name == "sqlite"

    def __call__(
        self, table: Table, values: dict[str, Any], add: Sequence[str], **set_: Any
    ) -> Any:
        stmt = (sqlite.insert if self.sqlite else postgresql.insert)(table).values(**values)
        return stmt.on_conflict_do_update(
            index_elements=[c.name for c in table.primary_key.columns],
            set_={**{n: table.c[n] + stmt.excluded[n] for n in add}, **set_},
        )


def _greatest(current: Any, new: float | None) -> Any:
    if new is None:
        return current
    return case((current.is_(None), new), (current < new, new), else_=current)


_ADDED = ("trips", "distance_n", "distance_sum", "duration_n", "duration_sum")


async def _counts(session: AsyncSession, upsert: _Upsert, e: Entry, sign: int) -> None:
    """Hourly, histogram (day and month), cluster and rider counts of ``e``, added (1) or
    taken out (-1)."""
    day = {"network_id": e.network_id, "local_day": e.local_day}
    # One order of rows for every transaction (hourly, histogram, cluster, rider, presence): two
    # trips ending at once wait for each other instead of deadlocking.
    maxes: dict[str, Any] = {}
    if sign > 0:
        maxes = {
            "distance_max": _greatest(HOURLY.c.distance_max, e.distance_m),
            "duration_max": _greatest(HOURLY.c.duration_max, e.duration_s),
        }
    values = {
        **day,
        "hour": e.hour,
        "paid": e.paid,
        "trips": sign,
        "distance_n": sign * int(e.distance_m is not None),
        "distance_sum": sign * (e.distance_m or 0.0),
        "distance_max": e.distance_m if sign > 0 else None,
        "duration_n": sign * int(e.duration_s is not None),
        "duration_sum": sign * (e.duration_s or 0.0),
        "duration_max": e.duration_s if sign > 0 else None,
    }
    await session.execute(upsert(HOURLY, values, _ADDED, **maxes))
    if sign < 0:
        await _recompute_maxes(session, e)
    for measure, value in (("distance", e.distance_m), ("duration", e.duration_s)):
        if value is None:
            continue
        bucket = {"measure": measure, "bucket": bucket_of(value, measure), "paid": e.paid}
        await session.execute(upsert(HISTOGRAM, {**day, **bucket, "trips": sign}, ("trips",)))
        month = {"network_id": e.network_id, "month": e.local_day.replace(day=1)}
        await session.execute(
            upsert(HISTOGRAM_MONTH, {**month, **bucket, "trips": sign}, ("trips",))
        )
    ends: dict[int, list[int]] = {}
    if e.start_cluster_id is not None:
        ends.setdefault(e.start_cluster_id, [0, 0])[0] += sign
    if e.end_cluster_id is not None:
        ends.setdefault(e.end_cluster_id, [0, 0])[1] += sign
    for cluster_id, (started, ended) in sorted(ends.items()):
        values = {**day, "cluster_id": cluster_id, "started": started, "ended": ended}
        await session.execute(upsert(CLUSTER, values, ("started", "ended")))
    if e.user_id is not None:
        rider = {"network_id": e.network_id, "user_id": e.user_id, "trips": sign}
        await session.execute(upsert(RIDER, rider, ("trips",)))


async def _recompute_maxes(session: AsyncSession, e: Entry) -> None:
    """A share taken out: its hour's maxima from the trips left in the ledger."""
    cell = and_(
        LEDGER.c.network_id == e.network_id,
        LEDGER.c.local_day == e.local_day,
        LEDGER.c.hour == e.hour,
        LEDGER.c.paid == e.paid,
    )
    await session.execute(
        HOURLY.update()
        .where(
            HOURLY.c.network_id == e.network_id,
            HOURLY.c.local_day == e.local_day,
            HOURLY.c.hour == e.hour,
            HOURLY.c.paid == e.paid,
        )
        .values(
            distance_max=select(func.max(LEDGER.c.distance_m)).where(cell).scalar_subquery(),
            duration_max=select(func.max(LEDGER.c.duration_s)).where(cell).scalar_subquery(),
        )
    )


def _presence_key(
    e: Entry, kind: str, subject: int, *, next_year: bool = False
) -> tuple[ColumnElement[bool], ...]:
    year, _, _ = day_bit(e.local_day)
    return (
        PRESENCE.c.network_id == e.network_id,
        PRESENCE.c.kind == kind,
        PRESENCE.c.year == year + (1 if next_year else 0),
        PRESENCE.c.subject_id == subject,
    )


def _subjects(e: Entry) -> list[tuple[str, int]]:
    return [(k, s) for k, s in (("user", e.user_id), ("vehicle", e.vehicle_id)) if s is not None]


async def _put_in(session: AsyncSession, upsert: _Upsert, e: Entry) -> None:
    await _counts(session, upsert, e, 1)
    year, index, bit = day_bit(e.local_day)
    for kind, subject in _subjects(e):
        # The day in its year's row (m) and in the next year's row (p, "the year before").
        for row_year, prefix in ((year, "m"), (year + 1, "p")):
            column = PRESENCE.c[f"{prefix}{index}"]
            masks = {f"{x}{i}": 0 for x in "mp" for i in range(MASKS)} | {column.name: bit}
            key = {"network_id": e.network_id, "kind": kind, "year": row_year}
            await session.execute(
                upsert(
                    PRESENCE,
                    {**key, "subject_id": subject, **masks},
                    (),
                    **{column.name: column.op("|")(bit)},
                )
            )


async def _take_out(session: AsyncSession, upsert: _Upsert, e: Entry) -> None:
    """Take ``e`` out (its ledger row already gone). A rider's / vehicle's day stays marked
    while another of its trips that day is still in the ledger."""
    await _counts(session, upsert, e, -1)
    _, index, bit = day_bit(e.local_day)
    column = PRESENCE.c[f"m{index}"]
    for kind, subject in _subjects(e):
        who = LEDGER.c.user_id if kind == "user" else LEDGER.c.vehicle_id
        still = await session.scalar(
            select(
                exists().where(
                    LEDGER.c.network_id == e.network_id,
                    LEDGER.c.local_day == e.local_day,
                    who == subject,
                )
            )
        )
        if not still:
            await session.execute(
                PRESENCE.update()
                .where(*_presence_key(e, kind, subject))
                .values({column.name: column.op("&")(MASK_ALL ^ bit)})
            )
            before = PRESENCE.c[f"p{index}"]
            await session.execute(
                PRESENCE.update()
                .where(*_presence_key(e, kind, subject, next_year=True))
                .values({before.name: before.op("&")(MASK_ALL ^ bit)})
            )


# ── the backfill ────────────────────────────────────────────────────────────────────────


def _local(dialect: str, column: Any, zone_column: Any, zone: ZoneInfo | None, span: Any) -> Any:
    """``column`` (UTC) as a local timestamp: PostgreSQL ``timezone(network's zone, t)``;
    SQLite by the zone's offsets over ``span`` (one CASE branch per transition)."""
    if dialect != "sqlite":
        return func.timezone(zone_column, column)
    assert zone is not None
    since, until = span
    segments = utc_offsets(zone, since, until)
    whens = [
        (column < nxt_at, f"{offset:+d} seconds") for (_, offset), (nxt_at, _) in pairwise(segments)
    ]
    if not whens:
        return func.datetime(column, f"{segments[0][1]:+d} seconds")
    return func.datetime(column, case(*whens, else_=f"{segments[-1][1]:+d} seconds"))


def _ledger_select(dialect: str, zone: ZoneInfo | None, span: Any) -> Any:
    local = _local(dialect, Trip.started_at, Network.timezone, zone, span)
    if dialect == "sqlite":
        day: Any = func.date(local)
        hour: Any = cast(func.strftime("%H", local), Integer)
        duration: Any = func.round(
            (func.julianday(Trip.ended_at) - func.julianday(Trip.started_at)) * 86400.0, 3
        )
    else:
        day = cast(local, Date)
        hour = cast(extract("hour", local), Integer)
        duration = func.round(cast(extract("epoch", Trip.ended_at - Trip.started_at), Numeric), 3)
    return (
        select(
            Trip.id,
            Trip.network_id,
            day,
            hour,
            case((paid(), True), else_=False),
            Trip.user_id,
            Trip.vehicle_id,
            Trip.start_cluster_id,
            Trip.end_cluster_id,
            sql_distance(),
            cast(duration, Float),
        )
        .join(Network, Network.id == Trip.network_id)
        .where(Trip.status == TripStatus.FINISHED, Trip.ended_at.is_not(None))
    )


def rebuild(conn: Connection, tables: Sequence[Table] = TABLES) -> None:
    """The rollup's ``tables`` recomputed, set-based (INSERT … SELECT): the ledger from
    ``trips`` first, then each aggregate from the ledger. Run it through
    ``AsyncConnection.run_sync`` from async code.

    A table that does not exist is skipped: migration 0019's backfill runs this at its own
    revision, before the tables of later ones, which fill theirs from the ledger
    (migration 0027: ``rebuild(conn, [RIDER, HISTOGRAM_MONTH])``, from the ledger and the
    daily histogram)."""
    present = set(inspect(conn).get_table_names())
    wanted = {t.name for t in tables}
    if wanted & _BY_DAY:
        wanted |= _BY_DAY  # rebuilt together (_rebuild_days)
    wanted &= present
    for table in TABLES:
        if table.name in wanted:
            conn.execute(delete(table))
    if LEDGER.name in wanted:
        _rebuild_ledger(conn)
    L = LEDGER.c
    if RIDER.name in wanted:
        riders = (
            select(L.network_id, L.user_id, func.count())
            .where(L.user_id.is_not(None))
            .group_by(L.network_id, L.user_id)
        )
        conn.execute(insert(RIDER).from_select(list(RIDER.c.keys()), riders))
    if wanted & _BY_DAY:
        _rebuild_days(conn)
    if HISTOGRAM_MONTH.name in wanted:
        H = HISTOGRAM.c
        if conn.dialect.name == "sqlite":
            month: Any = func.strftime("%Y-%m-01", H.local_day)
        else:
            month = cast(func.date_trunc("month", H.local_day), Date)
        months = select(
            H.network_id, month, H.measure, H.bucket, H.paid, func.sum(H.trips)
        ).group_by(H.network_id, month, H.measure, H.bucket, H.paid)
        conn.execute(insert(HISTOGRAM_MONTH).from_select(list(HISTOGRAM_MONTH.c.keys()), months))


def _rebuild_ledger(conn: Connection) -> None:
    dialect = conn.dialect.name
    columns = list(LEDGER.c.keys())
    if dialect == "sqlite":
        spans = conn.execute(
            select(Trip.network_id, Network.timezone, func.min(Trip.started_at))
            .join(Network, Network.id == Trip.network_id)
            .where(Trip.status == TripStatus.FINISHED, Trip.ended_at.is_not(None))
            .group_by(Trip.network_id, Network.timezone)
        ).all()
        for network_id, zone_name, first in spans:
            since = _aware(first)
            until = datetime.now(UTC) + timedelta(days=400)
            stmt = _ledger_select(dialect, network_zone(zone_name), (since, until))
            conn.execute(
                insert(LEDGER).from_select(columns, stmt.where(Trip.network_id == network_id))
            )
    else:
        conn.execute(insert(LEDGER).from_select(columns, _ledger_select(dialect, None, None)))


def _rebuild_days(conn: Connection) -> None:
    """The tables keyed by local day, from the ledger."""
    L = LEDGER.c
    hourly = select(
        L.network_id,
        L.local_day,
        L.hour,
        L.paid,
        func.count(),
        func.count(L.distance_m),
        func.coalesce(func.sum(L.distance_m), 0.0),
        func.max(L.distance_m),
        func.count(L.duration_s),
        func.coalesce(func.sum(L.duration_s), 0.0),
        func.max(L.duration_s),
    ).group_by(L.network_id, L.local_day, L.hour, L.paid)
    conn.execute(insert(HOURLY).from_select(list(HOURLY.c.keys()), hourly))
    for measure, value in (("distance", L.distance_m), ("duration", L.duration_s)):
        bucket = cast(func.floor(value / RESOLUTION[measure]), Integer)
        hist = (
            select(L.network_id, L.local_day, literal(measure), bucket, L.paid, func.count())
            .where(value.is_not(None))
            .group_by(L.network_id, L.local_day, bucket, L.paid)
        )
        conn.execute(insert(HISTOGRAM).from_select(list(HISTOGRAM.c.keys()), hist))
    ends = union_all(
        select(
            L.network_id,
            L.local_day,
            L.start_cluster_id.label("cid"),
            literal(1).label("s"),
            literal(0).label("e"),
        ).where(L.start_cluster_id.is_not(None)),
        select(L.network_id, L.local_day, L.end_cluster_id, literal(0), literal(1)).where(
            L.end_cluster_id.is_not(None)
        ),
    ).subquery()
    clusters = select(
        ends.c.network_id, ends.c.local_day, ends.c.cid, func.sum(ends.c.s), func.sum(ends.c.e)
    ).group_by(ends.c.network_id, ends.c.local_day, ends.c.cid)
    conn.execute(insert(CLUSTER).from_select(list(CLUSTER.c.keys()), clusters))
    for kind, who in (("user", L.user_id), ("vehicle", L.vehicle_id)):
        days = (
            select(L.network_id, who.label("subject"), L.local_day)
            .where(who.is_not(None))
            .distinct()
            .subquery()
        )
        year = cast(extract("year", days.c.local_day), Integer)
        doy = cast(extract("doy", days.c.local_day), Integer) - 1
        bit = literal_column("CAST(1 AS BIGINT)").op("<<")(doy % MASK_BITS)
        zero: Any = literal_column("0")
        # Each (subject, day) once: the sum of its days' bits is their OR.
        masks = [
            cast(func.sum(case((doy // MASK_BITS == i, bit), else_=zero)), BigInteger)
            for i in range(MASKS)
        ]
        own = (
            select(
                days.c.network_id.label("network_id"),
                year.label("year"),
                days.c.subject.label("subject"),
                *[m.label(f"m{i}") for i, m in enumerate(masks)],
            )
            .group_by(days.c.network_id, year, days.c.subject)
            .subquery()
        )
        zero_p: list[Any] = [
            literal_column("CAST(0 AS BIGINT)").label(f"p{i}") for i in range(MASKS)
        ]
        zeros: list[Any] = [literal_column("CAST(0 AS BIGINT)")] * MASKS
        own_masks = [own.c[f"m{i}"] for i in range(MASKS)]
        # Each subject-year's row: its own days (m) and the year before's (p, from the
        # previous year's own row): disjoint sources, so the sums are the masks.
        both = union_all(
            select(own.c.network_id, own.c.year, own.c.subject, *own_masks, *zero_p),
            select(own.c.network_id, own.c.year + 1, own.c.subject, *zeros, *own_masks),
        ).subquery()
        presence = select(
            both.c.network_id,
            literal(kind),
            both.c.year,
            both.c.subject,
            *[cast(func.sum(both.c[f"{x}{i}"]), BigInteger) for x in "mp" for i in range(MASKS)],
        ).group_by(both.c.network_id, both.c.year, both.c.subject)
        conn.execute(insert(PRESENCE).from_select(list(PRESENCE.c.keys()), presence))


def _aware(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def drop(conn: Connection) -> None:
    for table in reversed(TABLES):
        table.drop(conn, checkfirst=True)


__all__ = ["Entry", "apply_trip", "entry_of", "rebuild"]
