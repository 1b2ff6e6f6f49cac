"""What the public feeds read (GBFS and MDS alike): networks, stations with their spots and
device presence, vehicles with their rotation key, maintenances, regions.

Each read is one statement per feed build (the feeds are cached: ``cloud/feeds/cache.py``).
The large reads (stations, spots, vehicles) turn their rows into objects in a worker
thread (:func:`_read`): a 10,000-vehicle build held the API's event loop for its whole
conversion, every other request of the process waiting behind it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import String, and_, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.liveness import PRESENCE_COLUMNS, Presence, presence_of
from kickstand.cloud.models import (
    ACTIVE_RENT_STATUSES,
    ACTIVE_TRIP_STATUSES,
    Cluster,
    Device,
    Network,
    Rent,
    Spot,
    SpotState,
    Station,
    Trip,
    Vehicle,
    VehicleState,
    VehicleType,
)
from kickstand.cloud.operations.models import (
    OUT_OF_SERVICE,
    Maintenance,
    MaintenanceTarget,
)

#: Vehicles read per statement (see :func:`vehicles`).
VEHICLES_PER_READ = 2000
#: Vehicles no feed shows: gone from the fleet.
GONE = (VehicleState.DECOMMISSIONED, VehicleState.LOST_OR_STOLEN)


#: Enum columns are read as their strings and mapped here: SQLAlchemy's Enum result
#: processing cost ~20 µs a value, 0.7 s of a 10,000-vehicle feed build.
SPOT_STATES = {s.value: s for s in SpotState}
VEHICLE_STATES = {s.value: s for s in VehicleState}
VEHICLE_TYPES = {t.value: t for t in VehicleType}


def _raw(column: Any) -> Any:
    return type_coerce(column, String).label(f"{column.table.name}_{column.key}")


def _values(row: Any) -> Any:
    """A result row as a plain tuple (the dataclasses below take its columns in order)."""
    return tuple(row)


T = TypeVar("T")


async def _read(session: AsyncSession, stmt: Any, convert: Callable[[Any], T]) -> list[T]:
    """The statement's rows, each through ``convert``. The rows are fetched on the event
    loop (a Core result: buffered as the driver's records, processed when iterated); the
    iteration and the objects are made in a worker thread, beside the loop."""
    connection = await session.connection()
    result = await connection.execute(stmt)
    return await asyncio.to_thread(lambda: [convert(r) for r in result])


async def published_networks(session: AsyncSession) -> Sequence[Network]:
    """Networks a public feed shows: public and not closed."""
    stmt = select(Network).where(Network.is_public.is_(True), Network.closed_at.is_(None))
    return (await session.scalars(stmt.order_by(Network.id))).all()


async def published_network(session: AsyncSession, network_id: int) -> Network | None:
    network = await session.get(Network, network_id)
    if network is None or not network.is_public or network.closed_at is not None:
        return None
    return network


@dataclass(frozen=True, slots=True)
class StationRow:
    id: int
    name: str
    device_id: str
    cluster_id: int
    cluster_name: str
    latitude: float
    longitude: float
    address: str | None
    presence: Presence


_STATIONS = (
    select(
        Station.id,
        Station.name,
        Station.device_id,
        Cluster.id,
        Cluster.name,
        Cluster.latitude,
        Cluster.longitude,
        Cluster.location,
        *PRESENCE_COLUMNS,
    )
    .join(Cluster, Cluster.id == Station.cluster_id)
    .outerjoin(Device, Device.device_id == Station.device_id)
    .where(Station.decommissioned_at.is_(None), Cluster.decommissioned_at.is_(None))
)


async def stations(session: AsyncSession, network_id: int) -> list[StationRow]:
    """The network's stations in service (decommissioned ones and clusters are gone)."""
    stmt = _STATIONS.where(Cluster.network_id == network_id).order_by(Station.id)
    return await _read(session, stmt, lambda r: _station_row(_values(r)))


def _station_row(r: Any) -> StationRow:
    return StationRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], presence_of(r[8:]))


@dataclass(frozen=True, slots=True)
class SpotRow:
    station_id: int
    spot_id: int
    state: SpotState
    vehicle_id: int | None


async def spots(session: AsyncSession, network_id: int) -> list[SpotRow]:
    stmt = (
        select(Spot.station_id, Spot.id, _raw(Spot.state), Vehicle.id)
        .join(Station, Station.id == Spot.station_id)
        .join(Cluster, Cluster.id == Station.cluster_id)
        .outerjoin(Vehicle, Vehicle.spot_id == Spot.id)
        .where(
            Cluster.network_id == network_id,
            Station.decommissioned_at.is_(None),
            Cluster.decommissioned_at.is_(None),
        )
        .order_by(Spot.station_id, Spot.displayed_number)
    )
    return await _read(session, stmt, lambda r: SpotRow(r[0], r[1], SPOT_STATES[r[2]], r[3]))


@dataclass(frozen=True, slots=True)
class VehicleRow:
    id: int
    serial_number: str
    vehicle_type: VehicleType
    state: VehicleState
    in_maintenance: bool
    battery_level: int | None
    assist_battery_level: int | None
    latitude: float | None
    longitude: float | None
    position_at: datetime | None
    spot_id: int | None
    station_id: int | None
    spot_state: SpotState | None
    #: The vehicle's latest trip (any status): its public ids change with it.
    last_trip_id: int | None
    on_trip: bool
    reserved: bool
    device_id: str | None
    presence: Presence


_VEHICLES = (
    select(
        Vehicle.id,
        Vehicle.serial_number,
        _raw(Vehicle.vehicle_type),
        _raw(Vehicle.state),
        Vehicle.in_maintenance,
        Vehicle.battery_level,
        Vehicle.assist_battery_level,
        Vehicle.latitude,
        Vehicle.longitude,
        Vehicle.position_at,
        Vehicle.spot_id,
        Spot.station_id,
        _raw(Spot.state),
        select(func.max(Trip.id)).where(Trip.vehicle_id == Vehicle.id).scalar_subquery(),
        select(Trip.id)
        .where(Trip.vehicle_id == Vehicle.id, Trip.status.in_(ACTIVE_TRIP_STATUSES))
        .exists(),
        select(Rent.id)
        .where(Rent.vehicle_id == Vehicle.id, Rent.status.in_(ACTIVE_RENT_STATUSES))
        .exists(),
        Vehicle.device_id,
        *PRESENCE_COLUMNS,
    )
    .outerjoin(Spot, Spot.id == Vehicle.spot_id)
    .outerjoin(Device, Device.device_id == Vehicle.device_id)
)


async def vehicles(
    session: AsyncSession, network_id: int, *, with_gone: bool = False
) -> list[VehicleRow]:
    """The network's vehicles (``with_gone``: decommissioned and lost ones too)."""
    stmt = _VEHICLES.where(Vehicle.network_id == network_id)
    if not with_gone:
        stmt = stmt.where(Vehicle.state.not_in(GONE))
    rows: list[VehicleRow] = []
    while True:
        # In slices: the driver decodes a whole answer in one event-loop callback (10,000
        # vehicles in one: ~160 ms during which no other request of the process moved).
        after = stmt.where(Vehicle.id > rows[-1].id) if rows else stmt
        read = await _read(
            session,
            after.order_by(Vehicle.id).limit(VEHICLES_PER_READ),
            lambda r: _vehicle_row(_values(r)),
        )
        rows += read
        if len(read) < VEHICLES_PER_READ:
            return rows


def _vehicle_row(r: Any) -> VehicleRow:
    # The statement's columns are the dataclass's fields in order, then the presence.
    make: Any = VehicleRow
    row: VehicleRow = make(
        r[0],
        r[1],
        VEHICLE_TYPES[r[2]],
        VEHICLE_STATES[r[3]],
        *r[4:12],
        SPOT_STATES[r[12]] if r[12] is not None else None,
        *r[13:17],
        presence=presence_of(r[17:]),
    )
    return row


@dataclass(frozen=True, slots=True)
class StationMaintenance:
    id: int
    station_id: int
    started_at: datetime
    comment: str | None


async def station_maintenances(session: AsyncSession, network_id: int) -> list[StationMaintenance]:
    """Open maintenances that take a whole station out of service."""
    stmt = (
        select(Maintenance.id, Maintenance.station_id, Maintenance.started_at, Maintenance.comment)
        .where(
            Maintenance.network_id == network_id,
            Maintenance.stopped_at.is_(None),
            Maintenance.target_type == MaintenanceTarget.STATION,
            Maintenance.severity.in_(OUT_OF_SERVICE),
            Maintenance.station_id.is_not(None),
        )
        .order_by(Maintenance.id)
    )
    return [StationMaintenance(*_values(r)) for r in await session.execute(stmt)]


async def regions(session: AsyncSession, network_id: int) -> list[tuple[int, str]]:
    """The network's clusters in service: GBFS regions (docs/feeds.md)."""
    stmt = (
        select(Cluster.id, Cluster.name)
        .where(and_(Cluster.network_id == network_id, Cluster.decommissioned_at.is_(None)))
        .order_by(Cluster.id)
    )
    return [(r[0], r[1]) for r in await session.execute(stmt)]


__all__ = [
    "GONE",
    "SpotRow",
    "StationMaintenance",
    "StationRow",
    "VehicleRow",
    "published_network",
    "published_networks",
    "regions",
    "spots",
    "station_maintenances",
    "stations",
    "vehicles",
]
