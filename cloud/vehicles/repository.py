"""SQL of the vehicle registry: filtered keyset listings, used serials, busy checks, locks.

Listings take a :class:`~kickstand.cloud.keyset.Keyset` and apply
:func:`~kickstand.cloud.keyset.page_query` on ``vehicles.id`` (the primary key: no other
index needed for the page). A row of a listing is the vehicle with what its public form
needs (network's min battery to rent, its spot's state, its controller's presence).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, ScalarResult, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.keyset import Keyset, page_query
from kickstand.cloud.liveness import PRESENCE_COLUMNS, online_clause
from kickstand.cloud.models import (
    ACTIVE_RENT_STATUSES,
    ACTIVE_TRIP_STATUSES,
    Device,
    Network,
    Rent,
    Spot,
    Trip,
    Vehicle,
    VehicleState,
    VehicleType,
)
from kickstand.cloud.vehicles.models import VehicleDecommission, VehicleExternalLock


@dataclass(frozen=True, slots=True)
class VehicleFilters:
    """Seed 002 "Get vehicles" (``networks``) and the dashboard's narrowing filters."""

    networks: Sequence[int] | None
    vehicle_types: Sequence[VehicleType] = ()
    states: Sequence[VehicleState] = ()
    #: Serial numbers starting with this (case-insensitive).
    serial_number: str | None = None
    battery_min: int | None = None
    battery_max: int | None = None
    in_maintenance: bool | None = None
    #: Controller online (by the one liveness rule) or not; None: either.
    online: bool | None = None
    #: Docked in a spot (True) or free-floating / riding (False).
    docked: bool | None = None


def _listing() -> Select[*tuple[Any, ...]]:
    return (
        select(Vehicle, Network.min_battery_to_rent, Spot.state, *PRESENCE_COLUMNS)
        .join(Network, Network.id == Vehicle.network_id)
        .outerjoin(Spot, Spot.id == Vehicle.spot_id)
        .outerjoin(Device, Device.device_id == Vehicle.device_id)
    )


async def list_vehicles(
    session: AsyncSession, f: VehicleFilters, keyset: Keyset, now: datetime
) -> Sequence[Row[*tuple[Any, ...]]]:
    """One page of the fleet (decommissioned vehicles have their own listing)."""
    q = _listing().where(Vehicle.state != VehicleState.DECOMMISSIONED)
    if f.networks is not None:
        q = q.where(Vehicle.network_id.in_(list(f.networks)))
    if f.vehicle_types:
        q = q.where(Vehicle.vehicle_type.in_(list(f.vehicle_types)))
    if f.states:
        q = q.where(Vehicle.state.in_(list(f.states)))
    if f.serial_number:
        q = q.where(
            func.upper(Vehicle.serial_number).startswith(f.serial_number.upper(), autoescape=True)
        )
    if f.battery_min is not None:
        q = q.where(Vehicle.battery_level >= f.battery_min)
    if f.battery_max is not None:
        q = q.where(Vehicle.battery_level <= f.battery_max)
    if f.in_maintenance is not None:
        q = q.where(Vehicle.in_maintenance.is_(f.in_maintenance))
    if f.docked is not None:
        q = q.where(Vehicle.spot_id.is_not(None) if f.docked else Vehicle.spot_id.is_(None))
    if f.online is not None:
        online = online_clause(session.get_bind().dialect.name, now)
        q = q.where(online if f.online else ~func.coalesce(online, False))
    return (await session.execute(page_query(q, Vehicle.id, keyset))).all()


async def vehicle_row(
    session: AsyncSession, vehicle_id: int, now: datetime
) -> Row[*tuple[Any, ...]] | None:
    """The listing's row of one vehicle (decommissioned ones too)."""
    return (await session.execute(_listing().where(Vehicle.id == vehicle_id))).first()


async def list_decommissioned(
    session: AsyncSession, networks: Sequence[int] | None, keyset: Keyset, now: datetime
) -> Sequence[Row[*tuple[Any, ...]]]:
    """One page of decommissioned vehicles: the listing's row, then the decommission record."""
    q = (
        _listing()
        .add_columns(VehicleDecommission)
        .join(VehicleDecommission, VehicleDecommission.vehicle_id == Vehicle.id)
    )
    if networks is not None:
        q = q.where(Vehicle.network_id.in_(list(networks)))
    return (await session.execute(page_query(q, Vehicle.id, keyset))).all()


async def used_serials(session: AsyncSession, serials: Sequence[str]) -> list[str]:
    """Those of ``serials`` a vehicle carries (decommissioned ones too: a serial is never
    given twice)."""
    rows: ScalarResult[str] = await session.scalars(
        select(Vehicle.serial_number)
        .where(Vehicle.serial_number.in_(sorted(set(serials))))
        .order_by(Vehicle.serial_number)
    )
    return list(rows)


async def serial_taken(session: AsyncSession, serial: str) -> bool:
    found = await session.scalar(select(Vehicle.id).where(Vehicle.serial_number == serial))
    return found is not None


async def active_trip_id(session: AsyncSession, vehicle_id: int) -> int | None:
    return await session.scalar(
        select(Trip.id).where(Trip.vehicle_id == vehicle_id, Trip.status.in_(ACTIVE_TRIP_STATUSES))
    )


async def has_active_rent(session: AsyncSession, vehicle_id: int) -> bool:
    found = await session.scalar(
        select(Rent.id).where(Rent.vehicle_id == vehicle_id, Rent.status.in_(ACTIVE_RENT_STATUSES))
    )
    return found is not None


async def decommission_of(session: AsyncSession, vehicle_id: int) -> VehicleDecommission | None:
    return await session.scalar(
        select(VehicleDecommission).where(VehicleDecommission.vehicle_id == vehicle_id)
    )


async def active_lock(
    session: AsyncSession, vehicle_id: int, *, lock: bool = False
) -> VehicleExternalLock | None:
    q = select(VehicleExternalLock).where(
        VehicleExternalLock.vehicle_id == vehicle_id,
        VehicleExternalLock.decommissioned_at.is_(None),
    )
    return await session.scalar(q.with_for_update() if lock else q)


async def lock_serial_in_use(session: AsyncSession, serial_number: str) -> bool:
    found = await session.scalar(
        select(VehicleExternalLock.id).where(
            VehicleExternalLock.serial_number == serial_number,
            VehicleExternalLock.decommissioned_at.is_(None),
        )
    )
    return found is not None
