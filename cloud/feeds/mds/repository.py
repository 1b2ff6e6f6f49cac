"""What the MDS provider API reads beyond the shared feed reads: agency tokens, and the
rows its trips, events and telemetry are made of, by time window."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.feeds.mds.models import MdsAgencyToken
from kickstand.cloud.keyset import Keyset, page_query
from kickstand.cloud.models import Trip, TripStatus, Vehicle
from kickstand.cloud.operations.models import Maintenance, MaintenanceTarget
from kickstand.cloud.stations.models import DeviceOutage
from kickstand.cloud.vehicles.models import VehicleDecommission


async def token_by_hash(session: AsyncSession, token_hash: str) -> MdsAgencyToken | None:
    stmt = select(MdsAgencyToken).where(
        MdsAgencyToken.token_hash == token_hash, MdsAgencyToken.revoked_at.is_(None)
    )
    return (await session.scalars(stmt)).first()


async def touch_token(session: AsyncSession, token_id: int, at: datetime) -> None:
    await session.execute(
        update(MdsAgencyToken).where(MdsAgencyToken.id == token_id).values(last_used_at=at)
    )


async def tokens(
    session: AsyncSession, network_id: int, keyset: Keyset
) -> Sequence[MdsAgencyToken]:
    stmt = select(MdsAgencyToken).where(MdsAgencyToken.network_id == network_id)
    return (await session.scalars(page_query(stmt, MdsAgencyToken.id, keyset))).all()


async def token(session: AsyncSession, network_id: int, token_id: int) -> MdsAgencyToken | None:
    found = await session.get(MdsAgencyToken, token_id)
    return found if found is not None and found.network_id == network_id else None


async def vehicles_page(
    session: AsyncSession, network_id: int, keyset: Keyset
) -> Sequence[Vehicle]:
    stmt = select(Vehicle).where(Vehicle.network_id == network_id)
    return (await session.scalars(page_query(stmt, Vehicle.id, keyset))).all()


async def trips_ended(
    session: AsyncSession, network_id: int, start: datetime, end: datetime
) -> Sequence[Trip]:
    """Finished trips that ended in [start, end)."""
    stmt = select(Trip).where(
        Trip.network_id == network_id,
        Trip.status == TripStatus.FINISHED,
        Trip.ended_at >= start,
        Trip.ended_at < end,
    )
    return (await session.scalars(stmt.order_by(Trip.ended_at, Trip.id))).all()


async def trips_touching(
    session: AsyncSession, network_id: int, start: datetime, end: datetime
) -> Sequence[Trip]:
    """Trips that started or ended (finished, cancelled) in [start, end)."""
    stmt = select(Trip).where(
        Trip.network_id == network_id,
        or_(
            (Trip.started_at >= start) & (Trip.started_at < end),
            (Trip.ended_at >= start) & (Trip.ended_at < end),
        ),
    )
    return (await session.scalars(stmt.order_by(Trip.id))).all()


async def trips_riding(
    session: AsyncSession, network_id: int, start: datetime, end: datetime
) -> Sequence[tuple[Trip, str]]:
    """Finished trips ridden during [start, end) (started before its end, ended at or after
    its start: also a trip spanning the whole window), with their vehicle's serial number
    (the telemetry store's vehicle key)."""
    stmt = (
        select(Trip, Vehicle.serial_number)
        .join(Vehicle, Vehicle.id == Trip.vehicle_id)
        .where(
            Trip.network_id == network_id,
            Trip.status == TripStatus.FINISHED,
            Trip.started_at < end,
            Trip.ended_at >= start,
        )
    )
    return [(trip, serial) for trip, serial in (await session.execute(stmt.order_by(Trip.id)))]


async def vehicle_maintenances(
    session: AsyncSession, network_id: int, start: datetime, end: datetime
) -> Sequence[Maintenance]:
    stmt = select(Maintenance).where(
        Maintenance.network_id == network_id,
        Maintenance.target_type == MaintenanceTarget.VEHICLE,
        Maintenance.vehicle_id.is_not(None),
        or_(
            (Maintenance.started_at >= start) & (Maintenance.started_at < end),
            (Maintenance.stopped_at >= start) & (Maintenance.stopped_at < end),
        ),
    )
    return (await session.scalars(stmt.order_by(Maintenance.id))).all()


async def decommissions(
    session: AsyncSession, network_id: int, start: datetime, end: datetime
) -> Sequence[VehicleDecommission]:
    stmt = select(VehicleDecommission).where(
        VehicleDecommission.network_id == network_id,
        VehicleDecommission.decommissioned_at >= start,
        VehicleDecommission.decommissioned_at < end,
    )
    return (await session.scalars(stmt.order_by(VehicleDecommission.id))).all()


async def vehicle_outages(
    session: AsyncSession, network_id: int, start: datetime, end: datetime
) -> list[tuple[DeviceOutage, int]]:
    """Outages of the network's vehicle controllers that began or ended in [start, end),
    with the vehicle's id."""
    stmt = (
        select(DeviceOutage, Vehicle.id)
        .join(Vehicle, Vehicle.device_id == DeviceOutage.device_id)
        .where(
            Vehicle.network_id == network_id,
            or_(
                (DeviceOutage.started_at >= start) & (DeviceOutage.started_at < end),
                (DeviceOutage.ended_at >= start) & (DeviceOutage.ended_at < end),
            ),
        )
        .order_by(DeviceOutage.id)
    )
    return [(r[0], r[1]) for r in await session.execute(stmt)]


async def first_trip_start(session: AsyncSession, network_id: int) -> datetime | None:
    """When the network began operating, as far as trips tell."""
    stmt = select(Trip.started_at).where(Trip.network_id == network_id)
    return (await session.scalars(stmt.order_by(Trip.started_at).limit(1))).first()


__all__ = [
    "decommissions",
    "first_trip_start",
    "token",
    "token_by_hash",
    "tokens",
    "touch_token",
    "trips_ended",
    "trips_touching",
    "vehicle_maintenances",
    "vehicle_outages",
    "vehicles_page",
]
