"""The rules of the dashboard's figures: which days a period covers in the request's time
zone, how usage is grouped, the distance and duration ranges, what "today" is. The SQL is
in :mod:`kickstand.cloud.stats.repository`; scope (the operator's networks) is checked by
the access dependency on the ``networks`` query before anything here runs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.access import repository as access
from kickstand.cloud.errors import InvalidInputError
from kickstand.cloud.keyset import Keyset, cut
from kickstand.cloud.liveness import online_of
from kickstand.cloud.models import (
    SpotState,
    TripStatus,
    VehicleState,
    VehicleType,
)
from kickstand.cloud.rentable import refusal
from kickstand.cloud.stats import repository
from kickstand.cloud.stats.models import DISTANCE_BUCKET_M, DURATION_BUCKET_S
from kickstand.cloud.stats.repository import Measures as Measures_
from kickstand.cloud.stats.repository import OrganizationFilter, Unit, Window, local_midnight
from kickstand.cloud.stats.schemas import (
    DowCount,
    HourCount,
    MapStation,
    MapStationState,
    Measures,
    RangeCount,
    StationCount,
    StationsInfo,
    TripsInfo,
    UsageOrganization,
    UsagePoint,
    UsageSummary,
    UsersInfo,
    VehiclesInfo,
)

#: Distance ranges (meters) and duration ranges (seconds): [0, e0), [e0, e1), …, [last, ∞).
DISTANCE_EDGES_M: tuple[float, ...] = (500, 1000, 2000, 3000, 5000, 10000)
DURATION_EDGES_S: tuple[float, ...] = (300, 600, 900, 1200, 1800, 2700, 3600, 7200)
#: Dates a period may name, and its longest span (quarters over ten years).
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(2199, 12, 31)
MAX_PERIOD_DAYS = 3660
#: The rollup's fine histograms: the medians are the middle of a bucket this wide.
RESOLUTION: dict[str, float] = {"distance": DISTANCE_BUCKET_M, "duration": DURATION_BUCKET_S}


def zone(name: str) -> ZoneInfo:
    """The request's ``timezone`` (an IANA name, as the seed's Timezone enum)."""
    try:
        if "/" not in name and name != "UTC":
            raise ZoneInfoNotFoundError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInputError(
            f"unknown time zone {name!r} (an IANA name, e.g. Europe/Paris)", field="timezone"
        ) from exc


def window(start: date, end: date, timezone: str) -> Window:
    if not FIRST_DAY <= start <= LAST_DAY:
        raise InvalidInputError(f"a date within {FIRST_DAY}..{LAST_DAY}", field="start_date")
    if not FIRST_DAY <= end <= LAST_DAY:
        raise InvalidInputError(f"a date within {FIRST_DAY}..{LAST_DAY}", field="end_date")
    if end < start:
        raise InvalidInputError("end_date is before start_date", field="end_date")
    if (end - start).days + 1 > MAX_PERIOD_DAYS:
        raise InvalidInputError(f"at most {MAX_PERIOD_DAYS} days", field="end_date")
    return Window(start, end, zone(timezone))


def organization_filter(raw: str | None) -> OrganizationFilter:
    """Seed ``organizations``: ids (``1,5,7``), ``null`` (riders in no organization), both
    mixed, or absent (every trip)."""
    if raw is None:
        return OrganizationFilter()
    ids: set[int] = set()
    without = False
    for part in raw.replace(" ", "").split(","):
        if part == "null":
            without = True
        elif part.isdigit() and 1 <= int(part) <= 2**31 - 1:
            ids.add(int(part))
        elif part:
            raise InvalidInputError("organization ids (1,5,7) and/or null", field="organizations")
    if not ids and not without:
        raise InvalidInputError("organization ids (1,5,7) and/or null", field="organizations")
    return OrganizationFilter(frozenset(ids), without)


def unit_for(period: Window) -> Unit:
    days = (period.end - period.start).days + 1
    if days <= 31:
        return "day"
    if days <= 183:
        return "week"
    if days <= 731:
        return "month"
    return "quarter"


def _bucket_starts(period: Window, unit: Unit) -> list[date]:
    """Every group's first day from the one holding ``start`` to the one holding ``end``."""

    def following(day: date) -> date:
        if unit == "day":
            return day + timedelta(days=1)
        if unit == "week":
            return day + timedelta(days=7)
        months = 1 if unit == "month" else 3
        year, month = divmod(day.month - 1 + months, 12)
        return date(day.year + year, month + 1, 1)

    out, day = [], _first_of(period.start, unit)
    while day <= period.end:
        out.append(day)
        day = following(day)
    return out


def _first_of(day: date, unit: Unit) -> date:
    if unit == "day":
        return day
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)


# ── the usage rollup or trips ───────────────────────────────────────────────────────────
#
# The figures of a period read the usage rollup (kickstand.cloud.stats.rollup) when it can
# answer exactly: the period's time zone is every asked network's own (the rollup's days are
# the network's local days) and no ``organizations`` filter (membership is read as it is
# now, per rider; the rollup does not keep riders). Otherwise they read ``trips`` (the
# statements above: exact, slower on a long period). Running and on-hold trips are not in
# the rollup: they are read from ``trips`` and added.


async def _rollup_answers(
    session: AsyncSession, networks: Sequence[int], period: Window, orgs: OrganizationFilter
) -> bool:
    if orgs.active:
        return False
    if await repository.network_zones(session, networks) != {period.zone.key}:
        return False
    await repository.plan_each_time(session)
    return True


def _local_day(at: datetime, tz: ZoneInfo) -> date:
    return at.astimezone(tz).date()


def _live_subjects(
    live: Sequence[repository.LiveTrip], tz: ZoneInfo, kind: str
) -> dict[int, set[date]]:
    out: dict[int, set[date]] = {}
    for t in live:
        subject = t.user_id if kind == "user" else t.vehicle_id
        if subject is not None:
            out.setdefault(subject, set()).add(_local_day(t.started_at, tz))
    return out


def median_of(histogram: Counter[int], resolution: float) -> float | None:
    """The median of a fine histogram, bucket-accurate: the middle of the bucket holding the
    middle value (the mean of two such for an even count)."""
    n = sum(histogram.values())
    if n == 0:
        return None
    ranks = [(n - 1) // 2, n // 2]
    found: list[float] = []
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        while ranks and ranks[0] < seen:
            ranks.pop(0)
            found.append((bucket + 0.5) * resolution)
    return sum(found) / len(found)


# ── usage stats ─────────────────────────────────────────────────────────────────────────


async def usage(
    session: AsyncSession, networks: Sequence[int], period: Window, orgs: OrganizationFilter
) -> list[UsagePoint]:
    unit = unit_for(period)
    if await _rollup_answers(session, networks, period, orgs):
        found = await _usage_from_rollup(session, networks, period, unit)
    else:
        where = repository.trips_where(networks, period, orgs)
        found = {
            b: (n, u) for b, n, u in await repository.usage_by_bucket(session, where, period, unit)
        }
    return [
        UsagePoint(
            period=unit, date=day, trips=found.get(day, (0, 0))[0], users=found.get(day, (0, 0))[1]
        )
        for day in _bucket_starts(period, unit)
    ]


async def _usage_from_rollup(
    session: AsyncSession, networks: Sequence[int], period: Window, unit: Unit
) -> dict[date, tuple[int, int]]:
    trips: Counter[date] = Counter()
    by_day = await repository.rollup_trips_by(
        session, networks, period.start, period.end, "local_day"
    )
    for day, n in by_day.items():
        trips[_first_of(day, unit)] += n
    live = await repository.live_trips(session, networks, period.since, period.until)
    for t in live:
        trips[_first_of(_local_day(t.started_at, period.zone), unit)] += 1
    starts = _bucket_starts(period, unit)
    groups = [
        (max(first, period.start), min(nxt - timedelta(days=1), period.end))
        for first, nxt in zip(starts, [*starts[1:], date.max], strict=True)
    ]
    users = (
        await repository.presence_counts(
            session, networks, groups, {"user": _live_subjects(live, period.zone, "user")}
        )
    )["user"]
    return {first: (trips[first], u) for first, u in zip(starts, users, strict=True)}


def _measures(m: repository.Measures) -> Measures:
    return Measures(count=m.count, total=m.total, average=m.average, median=m.median, max=m.max)


async def summary(
    session: AsyncSession, networks: Sequence[int], period: Window, orgs: OrganizationFilter
) -> UsageSummary:
    if await _rollup_answers(session, networks, period, orgs):
        s = await _summary_from_rollup(session, networks, period)
    else:
        s = await repository.summary(session, repository.trips_where(networks, period, orgs))
    return UsageSummary(
        trips=s.trips,
        users=s.users,
        vehicles=s.vehicles,
        distance=_measures(s.distance),
        duration=_measures(s.duration),
    )


async def _summary_from_rollup(
    session: AsyncSession, networks: Sequence[int], period: Window
) -> repository.Summary:
    first, last = period.start, period.end
    m = await repository.rollup_measures(session, networks, first, last)
    live = await repository.live_trips(session, networks, period.since, period.until)
    counted = await repository.presence_counts(
        session,
        networks,
        [(first, last)],
        {
            "user": _live_subjects(live, period.zone, "user"),
            "vehicle": _live_subjects(live, period.zone, "vehicle"),
        },
    )
    names: tuple[Literal["distance", "duration"], ...] = ("distance", "duration")
    medians = []
    histograms = await repository.rollup_histograms(session, networks, first, last, names)
    for measure in names:
        merged: Counter[int] = Counter()
        for (bucket, _), n in histograms[measure].items():
            merged[bucket] += n
        medians.append(median_of(merged, RESOLUTION[measure]))

    def measures(n: int, total: float, top: float | None, median: float | None) -> Measures_:
        return Measures_(n, total, total / n if n else None, median, top)

    # Running trips count as trips; they have no end, so no distance nor duration yet.
    return repository.Summary(
        trips=m.trips + len(live),
        users=counted["user"][0],
        vehicles=counted["vehicle"][0],
        distance=measures(m.distance_n, m.distance_sum, m.distance_max, medians[0]),
        duration=measures(m.duration_n, m.duration_sum, m.duration_max, medians[1]),
    )


async def by_dow(
    session: AsyncSession, networks: Sequence[int], period: Window, orgs: OrganizationFilter
) -> list[DowCount]:
    if await _rollup_answers(session, networks, period, orgs):
        counts: Counter[int] = Counter()
        by_day = await repository.rollup_trips_by(
            session, networks, period.start, period.end, "local_day"
        )
        for day, n in by_day.items():
            counts[_dow(day)] += n
        for t in await repository.live_trips(session, networks, period.since, period.until):
            counts[_dow(_local_day(t.started_at, period.zone))] += 1
    else:
        where = repository.trips_where(networks, period, orgs)
        counts = Counter(await repository.count_by(session, where, period, "dow"))
    return [DowCount(dow=d, trips=counts.get(d, 0)) for d in range(7)]


def _dow(day: date) -> int:
    """0 Sunday … 6 Saturday (as ``extract('dow')`` and the pricing rules)."""
    return (day.weekday() + 1) % 7


async def by_hour(
    session: AsyncSession, networks: Sequence[int], period: Window, orgs: OrganizationFilter
) -> list[HourCount]:
    if await _rollup_answers(session, networks, period, orgs):
        counts: Counter[int] = Counter(
            await repository.rollup_trips_by(session, networks, period.start, period.end, "hour")
        )
        for t in await repository.live_trips(session, networks, period.since, period.until):
            counts[t.started_at.astimezone(period.zone).hour] += 1
    else:
        where = repository.trips_where(networks, period, orgs)
        counts = Counter(await repository.count_by(session, where, period, "hour"))
    return [HourCount(hour=h, trips=counts.get(h, 0)) for h in range(24)]


async def distribution(
    session: AsyncSession,
    networks: Sequence[int],
    period: Window,
    orgs: OrganizationFilter,
    measure: str,
) -> list[RangeCount]:
    """Finished trips per range of distance ("distance") or duration, paid and free."""
    edges = DISTANCE_EDGES_M if measure == "distance" else DURATION_EDGES_S
    name: Literal["distance", "duration"] = "distance" if measure == "distance" else "duration"
    if await _rollup_answers(session, networks, period, orgs):
        # The ranges' edges are whole buckets of the fine histogram: exact.
        counts: Counter[tuple[int, bool]] = Counter()
        for (bucket, is_paid), n in (
            await repository.rollup_histogram(session, networks, period.start, period.end, name)
        ).items():
            low = bucket * RESOLUTION[name]
            counts[(sum(1 for e in edges if e <= low), is_paid)] += n
    else:
        where = repository.trips_where(networks, period, orgs)
        counts = Counter(await repository.distribution(session, where, name, edges))
    bounds = [0.0, *edges]
    return [
        RangeCount(
            min=low,
            max=edges[i] if i < len(edges) else None,
            payment_mode="paid" if is_paid else "free",
            trips=counts.get((i, is_paid), 0),
        )
        for i, low in enumerate(bounds)
        for is_paid in (True, False)
    ]


async def stations(
    session: AsyncSession, networks: Sequence[int], period: Window, orgs: OrganizationFilter
) -> list[StationCount]:
    live: Counter[int | None] = Counter()
    if await _rollup_answers(session, networks, period, orgs):
        rows = await repository.rollup_clusters(session, networks, period.start, period.end)
        live.update(
            t.start_cluster_id
            for t in await repository.live_trips(session, networks, period.since, period.until)
        )
    else:
        where = repository.trips_where(networks, period, orgs)
        rows = await repository.station_distribution(session, networks, where)
    return [
        StationCount(
            cluster_id=r.id,
            network_id=r.network_id,
            name=r.name,
            latitude=r.latitude,
            longitude=r.longitude,
            started=int(r.started) + live[r.id],
            ended=int(r.ended),
        )
        for r in rows
    ]


async def organizations(session: AsyncSession, networks: Sequence[int]) -> list[UsageOrganization]:
    """Organizations with members who rode on the networks, among those the networks reach
    (the one scope rule of organizations): another network's are not named."""
    await repository.plan_each_time(session)
    rows = await repository.organizations_of(session, networks)
    reach = frozenset(networks)
    return [
        UsageOrganization(id=i, name=n, users=u)
        for i, n, u in rows
        if await access.organization_in_scope(session, i, reach) is not None
    ]


# ── overview ────────────────────────────────────────────────────────────────────────────


async def stations_info(
    session: AsyncSession, networks: Sequence[int], now: datetime
) -> StationsInfo:
    """The networks' totals (no per-cluster figures: 1,000 of them cost more than the SQL)."""
    spot_rows = await repository.spots_by_cluster(session, networks)
    presence = await repository.station_presence(session, networks)
    by_state: Counter[str] = Counter()
    occupied = free = 0
    for _, state, has_vehicle, n in spot_rows:
        by_state[state] += n
        occupied += n if has_vehicle else 0
        free += n if _free(state, has_vehicle) else 0
    stations_n = len(presence)
    online = sum(online_of(p, now) for _, p in presence)
    return StationsInfo(
        clusters=await repository.count_clusters(session, networks),
        stations=stations_n,
        stations_online=online,
        stations_offline=stations_n - online,
        spots=sum(by_state.values()),
        spots_active=by_state[SpotState.ACTIVE.value],
        spots_maintenance=by_state[SpotState.MAINTENANCE.value],
        spots_out_of_order=by_state[SpotState.OUT_OF_ORDER.value],
        spots_occupied=occupied,
        spots_free=free,
    )


def _free(spot_state: str, has_vehicle: bool) -> bool:
    """A spot a rider can return a vehicle to: active and empty."""
    return spot_state == SpotState.ACTIVE.value and not has_vehicle


async def map_info(
    session: AsyncSession, networks: Sequence[int], now: datetime
) -> list[MapStation]:
    """Per cluster."""
    clusters = await repository.cluster_rows(session, networks)
    stations: Counter[int] = Counter()
    online: Counter[int] = Counter()
    for cluster_id, presence in await repository.station_presence(session, networks):
        stations[cluster_id] += 1
        online[cluster_id] += online_of(presence, now)
    spots: Counter[int] = Counter()
    active: Counter[int] = Counter()
    free: Counter[int] = Counter()
    vehicles: Counter[int] = Counter()
    for cluster_id, state, has_vehicle, n in await repository.spots_by_cluster(session, networks):
        spots[cluster_id] += n
        active[cluster_id] += n if state == SpotState.ACTIVE.value else 0
        free[cluster_id] += n if _free(state, has_vehicle) else 0
        vehicles[cluster_id] += n if has_vehicle else 0
    return [
        MapStation(
            cluster_id=c.id,
            network_id=c.network_id,
            name=c.name,
            latitude=c.latitude,
            longitude=c.longitude,
            stations=stations[c.id],
            stations_online=online[c.id],
            spots=spots[c.id],
            spots_active=active[c.id],
            spots_free=free[c.id],
            vehicles=vehicles[c.id],
        )
        for c in clusters
    ]


async def map_stations(
    session: AsyncSession, networks: Sequence[int], keyset: Keyset, now: datetime
) -> tuple[list[MapStationState], int | None]:
    """A keyset page of the networks' stations with what the map draws, and the next key:
    three statements whatever the page's size (the stations, their spots, their alerts)."""
    rows = await repository.map_station_rows(session, networks, keyset)
    page, next_key = cut(rows, keyset, key=lambda r: int(r[0]))
    if not page:
        return [], None
    ids = [int(r[0]) for r in page]
    of_page = repository.StationPage(networks, min(ids), max(ids))
    spots = await repository.spots_of_stations(session, of_page)
    alerts = await repository.open_alerts_of_stations(session, of_page)
    answer = []
    for r in page:
        n, active, free, docked = spots.get(int(r[0]), (0, 0, 0, 0))
        station = dict(zip(_MAP_ROW, r[: len(_MAP_ROW)], strict=True))
        answer.append(
            MapStationState(
                **station,
                online=online_of(r[len(_MAP_ROW) :], now),
                maintenance=active < n,
                open_alerts=alerts.get(int(r[0]), 0),
                spots=n,
                spots_active=active,
                spots_free=free,
                vehicles_available=docked,
            )
        )
    return answer, next_key


#: The columns of :func:`repository.map_station_rows` before the presence columns.
_MAP_ROW = (
    "station_id", "name", "device_id", "cluster_id", "cluster_name", "network_id",
    "latitude", "longitude",
)  # fmt: skip


async def vehicles_info(session: AsyncSession, networks: Sequence[int]) -> VehiclesInfo:
    by_state: Counter[str] = Counter({s.value: 0 for s in VehicleState})
    by_type: Counter[str] = Counter({t.value: 0 for t in VehicleType})
    in_maintenance = docked = rentable = low_battery = 0
    for state, kind, maintenance, spot_state, low, n in await repository.vehicle_groups(
        session, networks
    ):
        by_state[state] += n
        by_type[kind] += n
        in_maintenance += n if maintenance else 0
        docked += n if spot_state is not None else 0
        vehicle_type = VehicleType(kind)
        low_battery += n if low and vehicle_type != VehicleType.BIKE else 0
        # The group holds what the rule reads; "low" stands for a level under the minimum.
        why = refusal(
            state=VehicleState(state),
            in_maintenance=maintenance,
            vehicle_type=vehicle_type,
            battery_level=0 if low else None,
            spot_state=None if spot_state is None else SpotState(spot_state),
            min_battery_to_rent=1,
        )
        rentable += n if why is None else 0
    total = sum(by_state.values())
    return VehiclesInfo(
        total=total,
        by_state=dict(by_state),
        by_type=dict(by_type),
        in_maintenance=in_maintenance,
        docked=docked,
        undocked=total - docked,
        rentable=rentable,
        low_battery=low_battery,
    )


def _days_ago(now: datetime, tz: ZoneInfo, days: int) -> datetime:
    return local_midnight(now.astimezone(tz).date() - timedelta(days=days), tz)


async def trips_info(
    session: AsyncSession, networks: Sequence[int], timezone: str, now: datetime
) -> TripsInfo:
    tz = zone(timezone)
    active = await repository.active_trips(session, networks)
    until = _days_ago(now, tz, -1)
    local_today = now.astimezone(tz).date()
    last_30 = Window(local_today - timedelta(days=29), local_today, tz)
    if await _rollup_answers(session, networks, last_30, OrganizationFilter()):
        per_day: Counter[date] = Counter(
            await repository.rollup_trips_by(
                session, networks, last_30.start, last_30.end, "local_day"
            )
        )
        for t in await repository.live_trips(session, networks, last_30.since, last_30.until):
            per_day[_local_day(t.started_at, tz)] += 1
        today, since_yesterday, week, month = (
            sum(n for day, n in per_day.items() if day >= local_today - timedelta(days=d))
            for d in (0, 1, 6, 29)
        )
    else:
        today, since_yesterday, week, month = await repository.trips_since(
            session, networks, [_days_ago(now, tz, d) for d in (0, 1, 6, 29)], until
        )
    return TripsInfo(
        running=active.get(TripStatus.RUNNING.value, 0),
        on_hold=active.get(TripStatus.ON_HOLD.value, 0),
        today=today,
        yesterday=since_yesterday - today,
        last_7_days=week,
        last_30_days=month,
    )


async def users_info(
    session: AsyncSession, networks: Sequence[int], timezone: str, now: datetime
) -> UsersInfo:
    tz = zone(timezone)
    until = _days_ago(now, tz, -1)
    month = _days_ago(now, tz, 29)
    local_today = now.astimezone(tz).date()
    period = Window(local_today - timedelta(days=29), local_today, tz)
    if await _rollup_answers(session, networks, period, OrganizationFilter()):
        live = await repository.live_trips(session, networks, period.since, period.until)
        today, week, last_30 = (
            await repository.presence_counts(
                session,
                networks,
                [(local_today - timedelta(days=d), local_today) for d in (0, 6, 29)],
                {"user": _live_subjects(live, tz, "user")},
            )
        )["user"]
    else:
        today, week, last_30 = await repository.riders_since(
            session, networks, [_days_ago(now, tz, d) for d in (0, 6, 29)], until
        )
    await repository.plan_each_time(session)  # the trips path too: riders read the rollup
    return UsersInfo(
        total=await repository.riders_of(session, networks),
        new_last_30_days=await repository.riders(session, networks, registered_since=month),
        active_today=today,
        active_last_7_days=week,
        active_last_30_days=last_30,
    )


__all__ = [
    "DISTANCE_EDGES_M",
    "DURATION_EDGES_S",
    "organization_filter",
    "window",
    "zone",
]
