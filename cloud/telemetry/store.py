"""The `TelemetryStore` interface, its result types, and the query logic both
backends (InfluxDB, local SQLite) share.

Both backends answer the same four queries with the same results:
- `vehicle_timeline`: positions of a vehicle between two instants (a trip's);
- `battery_history`: battery levels of a vehicle between two instants;
- `station_energy_consumption`: Wh consumed per local day (seed 002 "Get energy
  consumption": `start_date`, `end_date`, `timezone`);
- `heatmap`: position counts in an area over a period, coordinates rounded by zoom
  and dates by month (seed 002 "Get heatmap": `networks`, `lat`, `lng`, `latDeg`,
  `lngDeg`, `date_min`, `date_max`, `zoom`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from types import TracebackType
from typing import Protocol, Self, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kickstand.cloud.telemetry.errors import QueryRangeError
from kickstand.cloud.telemetry.points import TelemetryPoint, datetime_from_ns, ns_from_datetime

MAX_ENERGY_DAYS = 366
# How far back the last meter reading before a day may be to count as its start.
ENERGY_LOOKBACK_NS = 35 * 86_400 * 1_000_000_000
MAX_TIMELINE_LIMIT = 100_000
#: Vehicles named in one statement of ``fleet_positions``.
FLEET_SLICE = 200
# Positions a heatmap may aggregate (they are counted in the API process).
MAX_HEATMAP_POSITIONS = 2_000_000


@dataclass(slots=True)
class WriterStats:
    """Counters of a telemetry writer (a snapshot: `store.stats` returns a copy).

    written:      points acknowledged by the backend
    retried:      points sent again from the spool (after an outage or an overflow)
    spooled:      points put into the on-disk spool (backend down/slow, buffer full)
    quarantined:  points the backend refused as bad (4xx), moved to quarantine
    dropped:      points lost: the spool itself could not be written (disk full...)
    requests:     write requests sent
    failed_requests: write requests that failed (transport error, 5xx, timeout, 4xx)
    buffered:     points in memory now (buffer + in flight)
    spool_pending: points on disk waiting to be sent now
    """

    written: int = 0
    retried: int = 0
    spooled: int = 0
    quarantined: int = 0
    dropped: int = 0
    requests: int = 0
    failed_requests: int = 0
    buffered: int = 0
    spool_pending: int = 0


@dataclass(frozen=True, slots=True)
class PositionSample:
    time_ns: int
    lat: float
    lon: float
    speed: float | None = None
    heading: float | None = None
    trip: str | None = None

    @property
    def time(self) -> datetime:
        return datetime_from_ns(self.time_ns)


@dataclass(frozen=True, slots=True)
class BatterySample:
    time_ns: int
    internal_pct: float | None = None
    vae_pct: float | None = None
    voltage: float | None = None

    @property
    def time(self) -> datetime:
        return datetime_from_ns(self.time_ns)


@dataclass(frozen=True, slots=True)
class TemperatureSample:
    """A station's reading (its cabinet) or one spot's, in °C."""

    time_ns: int
    celsius: float

    @property
    def time(self) -> datetime:
        return datetime_from_ns(self.time_ns)


@dataclass(frozen=True, slots=True)
class DailyEnergy:
    """Energy consumed by a station on one local day (Wh); None when the meter sent
    no reading that day."""

    date: date
    energy_wh: float | None


@dataclass(frozen=True, slots=True)
class HeatmapPoint:
    """Number of positions at a rounded coordinate in one month (`date` is the
    first day of the month, as in seed 002)."""

    lat: float
    lng: float
    date: date
    weight: int


@dataclass(frozen=True, slots=True)
class BoundingBox:
    south: float
    west: float
    north: float
    east: float

    def __post_init__(self) -> None:
        for name in ("south", "west", "north", "east"):
            if not math.isfinite(getattr(self, name)):
                raise QueryRangeError(name, "must be finite")
        if not -90.0 <= self.south <= self.north <= 90.0:
            raise QueryRangeError("lat", f"need -90 <= south <= north <= 90 ({self})")
        if not -180.0 <= self.west <= self.east <= 180.0:
            raise QueryRangeError("lng", f"need -180 <= west <= east <= 180 ({self})")

    @classmethod
    def from_center(cls, lat: float, lng: float, lat_deg: float, lng_deg: float) -> BoundingBox:
        """Seed 002's form: the centre of the area and its height/width in degrees."""
        if lat_deg < 0 or lng_deg < 0:
            raise QueryRangeError("latDeg/lngDeg", "must be >= 0")
        return cls(
            south=max(-90.0, lat - lat_deg / 2),
            west=max(-180.0, lng - lng_deg / 2),
            north=min(90.0, lat + lat_deg / 2),
            east=min(180.0, lng + lng_deg / 2),
        )


@runtime_checkable
class TelemetryStore(Protocol):
    """Where telemetry goes and is read back: InfluxDB or the local SQLite store."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def write(self, point: TelemetryPoint) -> None:
        """Queue a point; never blocks, never waits for the backend."""
        ...

    async def flush(self) -> None:
        """Hand every point written so far to the backend (or to the spool)."""
        ...

    @property
    def stats(self) -> WriterStats: ...

    async def vehicle_timeline(
        self,
        vehicle: str,
        start: datetime,
        end: datetime,
        *,
        trip: str | None = None,
        limit: int = 10_000,
    ) -> list[PositionSample]: ...

    async def fleet_positions(
        self, vehicles: Sequence[str], start: datetime, end: datetime
    ) -> dict[str, list[PositionSample]]:
        """The positions of several vehicles (serial numbers) in [start, end), oldest first
        per vehicle; at most ``MAX_TIMELINE_LIMIT`` in all (the earliest), read in slices of
        ``FLEET_SLICE`` vehicles (one bounded statement each, not one per vehicle)."""
        ...

    async def battery_history(
        self, vehicle: str, start: datetime, end: datetime, *, limit: int = 10_000
    ) -> list[BatterySample]: ...

    async def temperature_history(
        self,
        station: str,
        start: datetime,
        end: datetime,
        *,
        spot: str | None = None,
        limit: int = 10_000,
    ) -> list[TemperatureSample]:
        """One series, oldest first: the station's own (``spot`` None) or one spot's."""
        ...

    async def station_energy_consumption(
        self, station: str, start_date: date, end_date: date, timezone: str
    ) -> list[DailyEnergy]: ...

    async def heatmap(
        self,
        networks: Sequence[str | int],
        area: BoundingBox,
        date_min: datetime,
        date_max: datetime,
        zoom: int,
        *,
        max_positions: int = MAX_HEATMAP_POSITIONS,
    ) -> list[HeatmapPoint]: ...


# ---------------------------------------------------------------- shared logic


def time_range_ns(start: datetime, end: datetime) -> tuple[int, int]:
    try:
        start_ns, end_ns = ns_from_datetime(start), ns_from_datetime(end)
    except ValueError as exc:
        raise QueryRangeError("start/end", str(exc)) from exc
    if end_ns < start_ns:
        raise QueryRangeError("end", f"{end.isoformat()} is before {start.isoformat()}")
    return start_ns, end_ns


def fleet_slices(vehicles: Sequence[str]) -> list[list[str]]:
    """``fleet_positions``' vehicles, each once, in slices of ``FLEET_SLICE``."""
    unique = sorted(set(vehicles))
    return [unique[i : i + FLEET_SLICE] for i in range(0, len(unique), FLEET_SLICE)]


async def read_fleet(
    vehicles: Sequence[str],
    read_slice: Callable[[list[str], int], Awaitable[Iterable[tuple[str, PositionSample]]]],
) -> dict[str, list[PositionSample]]:
    """``fleet_positions`` over a store's statement for one slice of vehicles
    (``read_slice(names, at_most)``: (vehicle, sample) rows, earliest first)."""
    out: dict[str, list[PositionSample]] = {}
    left = MAX_TIMELINE_LIMIT
    for names in fleet_slices(vehicles):
        if left <= 0:
            break
        for vehicle, sample in list(await read_slice(names, left))[:left]:
            out.setdefault(vehicle, []).append(sample)
            left -= 1
    for samples in out.values():
        samples.sort(key=lambda p: p.time_ns)
    return out


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_TIMELINE_LIMIT:
        raise QueryRangeError("limit", f"must be within 1..{MAX_TIMELINE_LIMIT}")
    return limit


@dataclass(frozen=True, slots=True)
class EnergyPlan:
    """The local days of an energy query and their boundaries (local midnights)."""

    days: list[date]
    boundaries_ns: list[int]  # len(days) + 1


def energy_plan(start_date: date, end_date: date, timezone: str) -> EnergyPlan:
    """Days from start_date to end_date inclusive, each bounded by local midnights
    (23 or 25 hours long on DST changes)."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise QueryRangeError("timezone", f"unknown timezone {timezone!r}") from exc
    if end_date < start_date:
        raise QueryRangeError("end_date", f"{end_date} is before {start_date}")
    count = (end_date - start_date).days + 1
    if count > MAX_ENERGY_DAYS:
        raise QueryRangeError("end_date", f"at most {MAX_ENERGY_DAYS} days per query")
    days = [start_date + timedelta(days=i) for i in range(count)]
    boundaries = [
        ns_from_datetime(datetime.combine(d, time(0), tzinfo=zone))
        for d in [*days, end_date + timedelta(days=1)]
    ]
    return EnergyPlan(days, boundaries)


def daily_consumption(
    plan: EnergyPlan, last_before: Sequence[float | None], first_after: Sequence[float | None]
) -> list[DailyEnergy]:
    """Wh per day from the meter counter around each boundary.

    `last_before[i]`: last counter reading before boundary i (within the lookback);
    `first_after[i]`: first reading in [boundary i, boundary i+1) (len = days).
    A day without any reading is None (what it used shows up on the next day with
    readings). Otherwise its start value is the last reading before its midnight,
    or else its first reading (a station commissioned that day); its end value is
    its last reading. A counter that went backwards (meter reset or replaced)
    counts from zero.
    """
    result: list[DailyEnergy] = []
    for i, day in enumerate(plan.days):
        first, end = first_after[i], last_before[i + 1]
        if first is None or end is None:
            result.append(DailyEnergy(day, None))
            continue
        before = last_before[i]
        begin = before if before is not None else first
        used = end - begin
        result.append(DailyEnergy(day, round(end if used < 0 else used, 6)))
    return result


def month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def next_month(moment: datetime) -> datetime:
    if moment.month == 12:
        return moment.replace(year=moment.year + 1, month=1)
    return moment.replace(month=moment.month + 1)


def heatmap_period_ns(date_min: datetime, date_max: datetime) -> tuple[int, int]:
    """[first instant of date_min's month, first instant after date_max's month)."""
    time_range_ns(date_min, date_max)  # validates: aware, in order
    return (
        ns_from_datetime(month_start(date_min)),
        ns_from_datetime(next_month(month_start(date_max))),
    )


def _rounder(zoom: int) -> tuple[float, int]:
    # Seed 002: 0 -> x.xxx, 1 -> x.xxx(0|5), 2 -> x.xxxx
    if zoom == 0:
        return 1_000.0, 3
    if zoom == 1:
        return 2_000.0, 4
    if zoom == 2:
        return 10_000.0, 4
    raise QueryRangeError("zoom", f"must be 0, 1 or 2, got {zoom!r}")


def check_zoom(zoom: int) -> int:
    _rounder(zoom)
    return zoom


def check_networks(networks: Sequence[str | int]) -> list[str]:
    if isinstance(networks, str | int) or not networks:
        raise QueryRangeError("networks", "give at least one network id (a list)")
    return [str(n) for n in networks]


def aggregate_heatmap(
    rows: Iterable[tuple[int, float, float]], zoom: int, *, limit: int = MAX_HEATMAP_POSITIONS
) -> list[HeatmapPoint]:
    """Count (time_ns, lat, lon) rows per rounded coordinate and month; more than
    `limit` rows is refused (ask for a smaller area or period)."""
    scale, digits = _rounder(zoom)
    counts: Counter[tuple[float, float, date]] = Counter()
    for seen, (time_ns, lat, lon) in enumerate(rows, start=1):
        if seen > limit:
            raise QueryRangeError(
                "date_min/date_max", f"more than {limit} positions: narrow the area or period"
            )
        moment = datetime_from_ns(time_ns)
        key = (
            round(round(lat * scale) / scale, digits),
            round(round(lon * scale) / scale, digits),
            date(moment.year, moment.month, 1),
        )
        counts[key] += 1
    return [
        HeatmapPoint(lat=lat, lng=lng, date=month, weight=weight)
        for (lat, lng, month), weight in sorted(counts.items(), key=lambda kv: (kv[0][2], kv[0]))
    ]


__all__ = [
    "BatterySample",
    "BoundingBox",
    "DailyEnergy",
    "HeatmapPoint",
    "PositionSample",
    "TelemetryStore",
    "WriterStats",
]
