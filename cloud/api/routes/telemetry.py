"""Telemetry for operators (seed 002): trip positions, vehicle timeline, battery history,
station energy consumption, heatmap; and a station's temperature history (issue 19: the
console's chart; not in the seed, named in its words).

Mounted by the app factory under ``/v1``: ``/v1/dashboard/…``. Served from the app's
telemetry store (:data:`~kickstand.cloud.api.deps.TelemetryDep`: InfluxDB when
``INFLUX_URL`` is set, else the local store). Operators only (the dashboard's
`AuthenticatedPermissions`), and only on the networks they operate (admins: all).

Ids in paths are the database's; the telemetry is tagged with the vehicle's
``serial_number`` and the station's device id, looked up here. Bad parameters come back
as the validation envelope naming the field; a telemetry backend that cannot answer as
503 ``TELEMETRY_UNAVAILABLE``; one that refuses a query as 502.

Not on keyset pages (CONTRIBUTING "Listings: keyset pages"): these are time series in a
time window with no integer key — positions and battery samples page by time
(``page_size`` + ``next_date_min``), energy and heatmap are aggregates of the window.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Path, Query
from pydantic import AfterValidator, AwareDatetime, BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.alerts.api import NetworksDep
from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import SessionDep, TelemetryDep
from kickstand.cloud.api.errors import (
    invalid,
    not_found,
    telemetry_query_failed,
    telemetry_unavailable,
)
from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.config import Settings
from kickstand.cloud.models import Cluster, Station, Trip, Vehicle
from kickstand.cloud.telemetry import (
    BatterySample,
    BoundingBox,
    PositionSample,
    QueryRangeError,
    SpoolLockedError,
    TelemetryError,
    TelemetryQueryError,
    TelemetryStore,
    TelemetryUnavailableError,
    TemperatureSample,
    WriterClosedError,
    telemetry_store_from_settings,
)

log = logging.getLogger("kickstand.cloud.api.routes.telemetry")

router = APIRouter(prefix="/dashboard", tags=["telemetry"])
# The one operator access check (kickstand.cloud.api.access), one permission per resource.
TripsOperator = Annotated[OperatorContext, Depends(Operator("trips"))]
VehiclesOperator = Annotated[OperatorContext, Depends(Operator("vehicles.manage"))]
StationsOperator = Annotated[OperatorContext, Depends(Operator("stations"))]

#: Positions / battery samples per page (the store's own ceiling is 100 000).
MAX_PAGE_SIZE = 10_000
DEFAULT_PAGE_SIZE = 5_000

TripIdPath = Annotated[Id, Path(description="Identifier of the trip.")]
VehicleIdPath = Annotated[Id, Path(description="Identifier of the vehicle.")]
StationIdPath = Annotated[Id, Path(description="Identifier of the station.")]
PageSize = Annotated[
    int,
    Query(ge=1, le=MAX_PAGE_SIZE, description="At most this many samples; see `next_date_min`."),
]
#: The telemetry store's range: InfluxDB times are int64 nanoseconds since 1970.
EARLIEST = datetime(1678, 1, 1, tzinfo=UTC)
LATEST = datetime(2262, 4, 11, tzinfo=UTC)
_RANGE = f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (the store's range)"


def _in_store_range(value: datetime) -> datetime:
    try:
        inside = EARLIEST <= value <= LATEST
    except OverflowError:  # an offset that pushes year 1 or 9999 out of datetime's range
        inside = False
    if not inside:
        raise ValueError(_RANGE)
    return value


def _date_in_store_range(value: date) -> date:
    if not EARLIEST.date() <= value <= LATEST.date():
        raise ValueError(_RANGE)
    return value


#: A time or a day the store can hold (else 422, not the store's overflow).
StoreTime = Annotated[AwareDatetime, AfterValidator(_in_store_range)]
StoreDate = Annotated[date, AfterValidator(_date_in_store_range)]

DateMin = Annotated[
    StoreTime, Query(description="Start of the period (with a timezone), inclusive.")
]
DateMax = Annotated[
    StoreTime | None,
    Query(description="End of the period (with a timezone), inclusive. Default: now."),
]


# ── the store's lifecycle (entered by the app factory's lifespan) ─────────────────────


@asynccontextmanager
async def telemetry_lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """Open the telemetry store the settings describe as ``app.state.telemetry_store`` and
    close it at shutdown.

    The API only reads, but an InfluxDB store owns a writer and its spool directory, one
    process per directory: a second API process on the same ``VAR_DIR`` gets its own.
    A store that cannot open does not stop the API: the telemetry routes answer 503.
    """
    store: TelemetryStore | None = None
    for name in ("api", f"api-{os.getpid()}"):
        try:
            candidate = telemetry_store_from_settings(settings, name=name)
            await candidate.start()
        except SpoolLockedError:
            continue
        except (TelemetryError, OSError) as exc:
            log.error("event=telemetry_store_unavailable error=%r", exc)
            break
        store = candidate
        break
    app.state.telemetry_store = store
    try:
        yield
    finally:
        app.state.telemetry_store = None
        if store is not None:
            await store.close()


# ── errors and access ─────────────────────────────────────────────────────────────────


@contextmanager
def telemetry_errors(fields: dict[str, str] | None = None) -> Iterator[None]:
    """The telemetry library's errors as API errors. ``fields`` renames the library's
    parameter names (``start/end``, ``limit``…) to the route's query fields."""
    try:
        yield
    except QueryRangeError as exc:
        field = (fields or {}).get(exc.parameter, exc.parameter)
        raise invalid(field, exc.reason) from exc
    except (TelemetryUnavailableError, WriterClosedError) as exc:
        log.warning("event=telemetry_unavailable error=%s", exc)
        raise telemetry_unavailable() from exc
    except TelemetryQueryError as exc:
        log.error("event=telemetry_query_failed status=%s reason=%s", exc.status, exc.reason)
        raise telemetry_query_failed() from exc


async def _vehicle(session: AsyncSession, operator: OperatorContext, vehicle_id: int) -> Vehicle:
    vehicle = await session.get(Vehicle, vehicle_id)
    if vehicle is None:
        raise not_found("vehicle", vehicle_id)
    operator.check([vehicle.network_id])
    return vehicle


async def _release(session: AsyncSession) -> None:
    # End the read transaction before waiting on the telemetry store (on SQLite it holds
    # the database lock); loaded objects stay usable (expire_on_commit=False).
    await session.commit()


def _period(date_min: datetime, date_max: datetime | None) -> tuple[datetime, datetime]:
    end = date_max if date_max is not None else datetime.now(UTC)
    if end < date_min:
        raise invalid("date_max", "must not be before date_min")
    return date_min, end


# ── schemas ───────────────────────────────────────────────────────────────────────────


class PositionPublic(BaseModel):
    date: datetime
    latitude: float
    longitude: float
    #: km/h
    speed: float | None
    #: degrees from north
    heading: float | None


class PositionsPage(BaseModel):
    code: int = 0
    data: list[PositionPublic]
    #: Ask again with ``date_min`` = this to get the samples after this page (None: last page).
    next_date_min: datetime | None


class BatteryPublic(BaseModel):
    date: datetime
    #: The controller's internal battery (lock box), percent.
    battery_level: float | None
    #: The e-assist battery (VAE), percent, and its pack voltage (V).
    assist_battery_level: float | None
    assist_battery_voltage: float | None


class BatteryPage(BaseModel):
    code: int = 0
    data: list[BatteryPublic]
    next_date_min: datetime | None


class TripPositions(BaseModel):
    trip_id: int
    vehicle_id: int
    serial_number: str
    started_at: datetime
    ended_at: datetime | None
    positions: list[PositionPublic]


class TripPositionsEnvelope(BaseModel):
    code: int = 0
    data: TripPositions
    next_date_min: datetime | None


class TemperaturePublic(BaseModel):
    date: datetime
    #: °C
    temperature: float


class TemperaturePage(BaseModel):
    code: int = 0
    data: list[TemperaturePublic]
    next_date_min: datetime | None


class DailyEnergyPublic(BaseModel):
    #: The local day (in the requested timezone).
    date: date
    #: Wh consumed that day; None when the meter sent no reading that day.
    energy_wh: float | None


class EnergyEnvelope(BaseModel):
    code: int = 0
    data: list[DailyEnergyPublic]


class HeatmapPointPublic(BaseModel):
    lat: float
    lng: float
    #: First day of the month the positions were made in.
    date: date
    weight: int


class HeatmapEnvelope(BaseModel):
    code: int = 0
    data: list[HeatmapPointPublic]


def _position(sample: PositionSample) -> PositionPublic:
    return PositionPublic(
        date=sample.time,
        latitude=sample.lat,
        longitude=sample.lon,
        speed=sample.speed,
        heading=sample.heading,
    )


def _battery(sample: BatterySample) -> BatteryPublic:
    return BatteryPublic(
        date=sample.time,
        battery_level=sample.internal_pct,
        assist_battery_level=sample.vae_pct,
        assist_battery_voltage=sample.voltage,
    )


_PERIOD_FIELDS = {"start/end": "date_min", "end": "date_max", "limit": "page_size"}


async def _positions(
    store: TelemetryStore, serial: str, start: datetime, end: datetime, page_size: int
) -> tuple[list[PositionPublic], datetime | None]:
    with telemetry_errors(_PERIOD_FIELDS):
        samples = await store.vehicle_timeline(serial, start, end, limit=page_size + 1)
    return [_position(s) for s in samples[:page_size]], _next(samples, page_size)


def _next(
    samples: list[PositionSample] | list[BatterySample] | list[TemperatureSample], page_size: int
) -> datetime | None:
    if len(samples) <= page_size:
        return None
    # The next page starts right after the last sample of this one (microsecond precision
    # in the API; the store keeps one sample per series and instant).
    return samples[page_size - 1].time + timedelta(microseconds=1)


# ── routes ────────────────────────────────────────────────────────────────────────────


@router.get(
    "/trips/{trip_id}/positions",
    response_model=TripPositionsEnvelope,
    summary="Get trip positions (the vehicle's timeline between the trip's start and end)",
)
async def get_trip_positions(
    operator: TripsOperator,
    session: SessionDep,
    store: TelemetryDep,
    trip_id: TripIdPath,
    page_size: PageSize = DEFAULT_PAGE_SIZE,
    date_min: Annotated[
        StoreTime | None,
        Query(description="Resume from here (a previous page's `next_date_min`)."),
    ] = None,
) -> TripPositionsEnvelope:
    trip = await session.get(Trip, trip_id)
    if trip is None:
        raise not_found("trip", trip_id)
    operator.check([trip.network_id])
    vehicle = await session.get_one(Vehicle, trip.vehicle_id)
    await _release(session)
    end = trip.ended_at or datetime.now(UTC)
    start = trip.started_at
    if date_min is not None:
        if date_min > end:
            raise invalid("date_min", "is after the end of the trip")
        start = max(start, date_min)
    positions, next_date_min = await _positions(store, vehicle.serial_number, start, end, page_size)
    return TripPositionsEnvelope(
        data=TripPositions(
            trip_id=trip.id,
            vehicle_id=vehicle.id,
            serial_number=vehicle.serial_number,
            started_at=trip.started_at,
            ended_at=trip.ended_at,
            positions=positions,
        ),
        next_date_min=next_date_min,
    )


@router.get(
    "/vehicles/{vehicle_id}/timeline",
    response_model=PositionsPage,
    summary="Get vehicle timeline (positions in a period, oldest first)",
)
async def get_vehicle_timeline(
    operator: VehiclesOperator,
    session: SessionDep,
    store: TelemetryDep,
    vehicle_id: VehicleIdPath,
    date_min: DateMin,
    date_max: DateMax = None,
    page_size: PageSize = DEFAULT_PAGE_SIZE,
) -> PositionsPage:
    vehicle = await _vehicle(session, operator, vehicle_id)
    await _release(session)
    start, end = _period(date_min, date_max)
    positions, next_date_min = await _positions(store, vehicle.serial_number, start, end, page_size)
    return PositionsPage(data=positions, next_date_min=next_date_min)


@router.get(
    "/vehicles/{vehicle_id}/battery-history",
    response_model=BatteryPage,
    summary="Get vehicle battery history (oldest first)",
)
async def get_vehicle_battery_history(
    operator: VehiclesOperator,
    session: SessionDep,
    store: TelemetryDep,
    vehicle_id: VehicleIdPath,
    date_min: DateMin,
    date_max: DateMax = None,
    page_size: PageSize = DEFAULT_PAGE_SIZE,
) -> BatteryPage:
    vehicle = await _vehicle(session, operator, vehicle_id)
    await _release(session)
    start, end = _period(date_min, date_max)
    with telemetry_errors(_PERIOD_FIELDS):
        samples = await store.battery_history(
            vehicle.serial_number, start, end, limit=page_size + 1
        )
    return BatteryPage(
        data=[_battery(s) for s in samples[:page_size]], next_date_min=_next(samples, page_size)
    )


async def _station_device(
    session: AsyncSession, operator: OperatorContext, station_id: int
) -> tuple[str, int]:
    """The station's device id (its telemetry's tag) and network, checked."""
    found = (
        await session.execute(
            select(Station.device_id, Cluster.network_id)
            .join(Cluster, Cluster.id == Station.cluster_id)
            .where(Station.id == station_id)
        )
    ).first()
    if found is None:
        raise not_found("station", station_id)
    device_id, network_id = found
    operator.check([network_id])
    await _release(session)
    return device_id, network_id


@router.get(
    "/stations/{station_id}/temperature-history",
    response_model=TemperaturePage,
    summary="Get station temperature history (its cabinet, or one spot; oldest first)",
)
async def get_station_temperature_history(
    operator: StationsOperator,
    session: SessionDep,
    store: TelemetryDep,
    station_id: StationIdPath,
    date_min: DateMin,
    date_max: DateMax = None,
    spot: Annotated[
        int,
        Query(
            ge=0,
            le=255,
            description="The spot's displayed number; 0 (default): the station's own sensor.",
        ),
    ] = 0,
    page_size: PageSize = DEFAULT_PAGE_SIZE,
) -> TemperaturePage:
    device_id, _ = await _station_device(session, operator, station_id)
    start, end = _period(date_min, date_max)
    with telemetry_errors(_PERIOD_FIELDS):
        samples = await store.temperature_history(
            device_id, start, end, spot=str(spot) if spot else None, limit=page_size + 1
        )
    return TemperaturePage(
        data=[TemperaturePublic(date=s.time, temperature=s.celsius) for s in samples[:page_size]],
        next_date_min=_next(samples, page_size),
    )


@router.get(
    "/stations/{station_id}/energy-consumption",
    response_model=EnergyEnvelope,
    summary="Get energy consumption (Wh per local day of the period)",
)
async def get_energy_consumption(
    operator: StationsOperator,
    session: SessionDep,
    store: TelemetryDep,
    station_id: StationIdPath,
    start_date: Annotated[StoreDate, Query(description="The start date of the period.")],
    end_date: Annotated[
        StoreDate,
        Query(description="The end date of the period. Should be after the start_date."),
    ],
    timezone: Annotated[
        Text,
        Query(
            min_length=1,
            max_length=64,
            description="The timezone of the user making the request (IANA name).",
            examples=["Europe/Paris"],
        ),
    ],
) -> EnergyEnvelope:
    device_id, _ = await _station_device(session, operator, station_id)
    if end_date < start_date:
        raise invalid("end_date", "must not be before start_date")
    with telemetry_errors():
        days = await store.station_energy_consumption(device_id, start_date, end_date, timezone)
    return EnergyEnvelope(
        data=[DailyEnergyPublic(date=d.date, energy_wh=d.energy_wh) for d in days]
    )


@router.get("/heatmap", response_model=HeatmapEnvelope, summary="Get heatmap")
async def get_heatmap(
    _operator: TripsOperator,
    store: TelemetryDep,
    networks: NetworksDep,
    lat: Annotated[
        float, Query(ge=-90, le=90, description="The latitude of the center of the area.")
    ],
    lng: Annotated[
        float, Query(ge=-180, le=180, description="The longitude of the center of the area.")
    ],
    lat_deg: Annotated[
        float,
        Query(alias="latDeg", ge=0, le=90, description="Height of the area, in degrees."),
    ],
    lng_deg: Annotated[
        float,
        Query(alias="lngDeg", ge=0, le=180, description="Width of the area, in degrees."),
    ],
    date_min: Annotated[
        StoreTime,
        Query(description="The minimum start date of points to show (rounded by month)."),
    ],
    date_max: Annotated[
        StoreTime,
        Query(description="The maximum start date of points to show (rounded by month)."),
    ],
    zoom: Annotated[
        int,
        Query(ge=0, le=2, description="Points precision: 0 -> x.xxx, 1 -> x.xxx(0|5), 2 -> x.xxxx"),
    ],
) -> HeatmapEnvelope:
    if date_max < date_min:
        raise invalid("date_max", "must not be before date_min")
    fields = {
        "lat": "lat",
        "lng": "lng",
        "latDeg/lngDeg": "latDeg",
        "start/end": "date_min",
        "date_min/date_max": "date_max",
    }
    with telemetry_errors(fields):
        area = BoundingBox.from_center(lat, lng, lat_deg, lng_deg)
        points = await store.heatmap(networks, area, date_min, date_max, zoom)
    data = [HeatmapPointPublic(lat=p.lat, lng=p.lng, date=p.date, weight=p.weight) for p in points]
    return HeatmapEnvelope(data=data)


__all__ = ["router", "telemetry_errors", "telemetry_lifespan"]
