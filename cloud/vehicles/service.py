"""Rules of the vehicle registry (seed 002 ``Vehicles``, ``VehiclesExternalLocks``).

- **Register**: a serial number is given once (decommissioned vehicles keep theirs); a
  controller's device id becomes a ``devices`` row of kind vehicle (its birth is then
  accepted by ingest), unless it is a station's or another vehicle's.
- **Decommission**: never while the vehicle is on a trip or held by a rent; the vehicle
  keeps its row in state ``decommissioned`` — not rentable (``kickstand.cloud.rentable``:
  only ``available`` is) and off the map — with a record of why, when, by whom, for how
  much (in its network's currency).
- **Change network**: not on a trip or a rent, not when decommissioned, not while docked in
  a station of another network; the caller checks it operates both networks.
- **External locks**: one in use per vehicle; the code is sealed at rest
  (:mod:`kickstand.cloud.vehicles.lockcodes`) and only :func:`lock_code` opens it.

Every change is written with its outbox record (``vehicule.created``, ``vehicule.deleted``,
``vehicule.updated``), in the caller's transaction (the route commits).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import outbox
from kickstand.cloud.alerts import service as alerts
from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import CURRENT_STATES
from kickstand.cloud.api.views import money_str
from kickstand.cloud.devices import identity
from kickstand.cloud.errors import NotFoundError
from kickstand.cloud.events import catalogue as ev
from kickstand.cloud.keyset import Keyset
from kickstand.cloud.liveness import online_of
from kickstand.cloud.models import (
    Cluster,
    Device,
    DeviceKind,
    Network,
    Spot,
    Station,
    Trip,
    TripStatus,
    Vehicle,
    VehicleState,
)
from kickstand.cloud.rentable import is_rentable
from kickstand.cloud.stats import repository as stats
from kickstand.cloud.trips import vehicle_payload
from kickstand.cloud.vehicles import lockcodes
from kickstand.cloud.vehicles import repository as repo
from kickstand.cloud.vehicles.errors import (
    DeviceInUseError,
    ExternalLockConflictError,
    SerialInUseError,
    VehicleBusyError,
    VehicleDecommissionedError,
    VehicleDockedElsewhereError,
)
from kickstand.cloud.vehicles.models import (
    DecommissionReason,
    ExternalLockType,
    VehicleDecommission,
    VehicleExternalLock,
)
from kickstand.cloud.vehicles.schemas import (
    DecommissionPublic,
    ExternalLockPublic,
    RidesOnDay,
    VehicleDetail,
    VehiclePublic,
    VehicleStatistic,
)

log = logging.getLogger("kickstand.cloud.vehicles.service")

#: Alerts of one vehicle in the "current alerts" answer (they are one per cause).
MAX_VEHICLE_ALERTS = 500


# ── reading ─────────────────────────────────────────────────────────────────────────


async def get_vehicle(session: AsyncSession, vehicle_id: int, *, lock: bool = False) -> Vehicle:
    vehicle = await session.get(Vehicle, vehicle_id, with_for_update=lock or None)
    if vehicle is None:
        raise NotFoundError("vehicle", vehicle_id)
    return vehicle


def vehicle_public(row: Sequence[Any], now: datetime) -> VehiclePublic:
    """A listing row (:func:`repository.list_vehicles`) as sent."""
    vehicle, min_battery, spot_state, *presence = row
    return VehiclePublic(**_public_fields(vehicle, min_battery, spot_state, presence, now))


def _public_fields(
    vehicle: Vehicle, min_battery: int, spot_state: Any, presence: list[Any], now: datetime
) -> dict[str, Any]:
    return {
        "vehicle_id": vehicle.id,
        "serial_number": vehicle.serial_number,
        "vehicle_type": vehicle.vehicle_type,
        "model": vehicle.model,
        "network_id": vehicle.network_id,
        "state": vehicle.state,
        "battery_level": vehicle.battery_level,
        "assist_battery_level": vehicle.assist_battery_level,
        "latitude": vehicle.latitude,
        "longitude": vehicle.longitude,
        "position_at": vehicle.position_at,
        "spot_id": vehicle.spot_id,
        "device_id": vehicle.device_id,
        "online": vehicle.device_id is not None and online_of(presence, now),
        "in_maintenance": vehicle.in_maintenance,
        "is_available": is_rentable(vehicle, spot_state, min_battery),
    }


def decommission_public(record: VehicleDecommission) -> DecommissionPublic:
    return DecommissionPublic(
        reason=record.reason,
        comment=record.comment,
        amount=money_str(record.amount, record.currency),
        currency=record.currency,
        decommissioned_at=record.decommissioned_at,
        decommissioned_by=record.decommissioned_by,
    )


def lock_public(lock: VehicleExternalLock) -> ExternalLockPublic:
    return ExternalLockPublic(
        lock_id=lock.id,
        vehicle_id=lock.vehicle_id,
        model=lock.model,
        type=lock.lock_type,
        serial_number=lock.serial_number,
        code_updated_at=lock.code_updated_at,
        registered_at=lock.registered_at,
    )


async def vehicle_detail(session: AsyncSession, vehicle_id: int, now: datetime) -> VehicleDetail:
    row: Sequence[Any] | None = await repo.vehicle_row(session, vehicle_id, now)
    if row is None:
        raise NotFoundError("vehicle", vehicle_id)
    vehicle, min_battery, spot_state, *presence = row
    record = await repo.decommission_of(session, vehicle_id)
    lock = await repo.active_lock(session, vehicle_id)
    return VehicleDetail(
        **_public_fields(vehicle, min_battery, spot_state, presence, now),
        docked_at=vehicle.docked_at,
        current_trip_id=await repo.active_trip_id(session, vehicle_id),
        external_lock=lock_public(lock) if lock is not None else None,
        decommission=decommission_public(record) if record is not None else None,
    )


# ── registering, decommissioning, moving ───────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class Registration:
    serial_number: str
    vehicle_type: Any
    model: str
    network_id: int
    device_id: str | None = None


async def _controller(session: AsyncSession, device_id: str) -> None:
    """The device row of a vehicle controller: created, or an unattached vehicle device."""
    device = await session.scalar(select(Device).where(Device.device_id == device_id))
    if device is not None and device.kind != DeviceKind.VEHICLE:
        raise DeviceInUseError(device_id, f"is a {device.kind.value} device")
    holder = await session.scalar(select(Vehicle.id).where(Vehicle.device_id == device_id))
    if holder is not None:
        raise DeviceInUseError(device_id, f"is the controller of vehicle {holder}")
    if device is None:
        session.add(Device(device_id=device_id, kind=DeviceKind.VEHICLE))


async def register(session: AsyncSession, reg: Registration) -> Vehicle:
    serial = reg.serial_number.upper()
    if await session.get(Network, reg.network_id) is None:
        raise NotFoundError("network", reg.network_id)
    if await repo.serial_taken(session, serial):
        raise SerialInUseError(serial)
    if reg.device_id is not None:
        await _controller(session, reg.device_id)
    vehicle = Vehicle(
        serial_number=serial,
        vehicle_type=reg.vehicle_type,
        model=reg.model,
        network_id=reg.network_id,
        device_id=reg.device_id,
        state=VehicleState.AVAILABLE,
        in_maintenance=False,
    )
    try:
        async with session.begin_nested():
            session.add(vehicle)
            await session.flush()
    except IntegrityError as exc:  # registered at the same time by another request
        if await repo.serial_taken(session, serial):
            raise SerialInUseError(serial) from exc
        raise DeviceInUseError(str(reg.device_id), "was just registered") from exc
    outbox.emit(session, ev.VEHICLE_CREATED, vehicle.id, vehicle_payload(vehicle))
    log.info("event=vehicle_registered vehicle=%s serial=%s", vehicle.id, serial)
    return vehicle


async def _refuse_if_busy(session: AsyncSession, vehicle: Vehicle, action: str) -> None:
    trip_id = await repo.active_trip_id(session, vehicle.id)
    if trip_id is not None or await repo.has_active_rent(session, vehicle.id):
        raise VehicleBusyError(vehicle.id, action, trip_id)


@dataclass(frozen=True, slots=True)
class Decommission:
    reason: DecommissionReason
    comment: str | None = None
    amount: Decimal | None = None


async def decommission(
    session: AsyncSession, vehicle: Vehicle, d: Decommission, user_id: int, now: datetime
) -> VehicleDecommission:
    """``vehicle`` is loaded FOR UPDATE (a rent or a trip cannot start meanwhile)."""
    if vehicle.state == VehicleState.DECOMMISSIONED:
        raise VehicleDecommissionedError(vehicle.id)
    await _refuse_if_busy(session, vehicle, "decommission it")
    network = await session.get_one(Network, vehicle.network_id)
    record = VehicleDecommission(
        vehicle_id=vehicle.id,
        network_id=vehicle.network_id,
        reason=d.reason,
        comment=d.comment,
        amount=d.amount,
        currency=network.currency,
        decommissioned_at=now,
        decommissioned_by=user_id,
    )
    session.add(record)
    vehicle.state = VehicleState.DECOMMISSIONED
    if vehicle.device_id is not None:
        # Its controller's certificates (issue 17); the route publishes the CRL after the
        # commit.
        device_pk = await session.scalar(
            select(Device.id).where(Device.device_id == vehicle.device_id)
        )
        if device_pk is not None:
            await identity.revoke_device(session, device_pk, identity.DECOMMISSIONED, now)
    await session.flush()
    outbox.emit(session, ev.VEHICLE_DELETED, vehicle.id, vehicle_payload(vehicle))
    log.info("event=vehicle_decommissioned vehicle=%s reason=%s", vehicle.id, d.reason.value)
    return record


async def change_network(session: AsyncSession, vehicle: Vehicle, network_id: int) -> None:
    """``vehicle`` loaded FOR UPDATE; the caller has checked both networks' access."""
    if await session.get(Network, network_id) is None:
        raise NotFoundError("network", network_id)
    if vehicle.state == VehicleState.DECOMMISSIONED:
        raise VehicleDecommissionedError(vehicle.id)
    await _refuse_if_busy(session, vehicle, "change its network")
    if vehicle.spot_id is not None:
        station_network = await session.scalar(
            select(Cluster.network_id)
            .join(Station, Station.cluster_id == Cluster.id)
            .join(Spot, Spot.station_id == Station.id)
            .where(Spot.id == vehicle.spot_id)
        )
        if station_network is not None and station_network != network_id:
            raise VehicleDockedElsewhereError(vehicle.id, station_network)
    if vehicle.network_id == network_id:
        return
    vehicle.network_id = network_id
    await session.flush()
    outbox.emit(session, ev.VEHICLE_UPDATED, vehicle.id, vehicle_payload(vehicle))


# ── what happened to it ────────────────────────────────────────────────────────────


async def statistic(
    session: AsyncSession, vehicle: Vehicle, days: int, now: datetime
) -> VehicleStatistic:
    """Its trips over the last ``days`` local days of its network, computed in SQL."""
    network = await session.get_one(Network, vehicle.network_id)
    zone = ZoneInfo(network.timezone)
    today = now.astimezone(zone).date()
    window = stats.Window(today - timedelta(days=days - 1), today, zone)
    where = [
        Trip.vehicle_id == vehicle.id,
        Trip.started_at >= window.since,
        Trip.started_at < window.until,
        Trip.status != TripStatus.CANCELLED,
    ]
    summary = await stats.summary(session, where)
    per_day = {
        day: n for day, n, _riders in await stats.usage_by_bucket(session, where, window, "day")
    }
    last = await session.scalar(
        select(Trip.started_at)
        .where(Trip.vehicle_id == vehicle.id, Trip.status != TripStatus.CANCELLED)
        .order_by(Trip.started_at.desc())
        .limit(1)
    )
    rides = [
        RidesOnDay(
            day=window.start + timedelta(days=i),
            trips=per_day.get(window.start + timedelta(days=i), 0),
        )
        for i in range(days)
    ]
    return VehicleStatistic(
        vehicle_id=vehicle.id,
        days=days,
        since=window.since,
        trip_count=summary.trips,
        rider_count=summary.users,
        total_duration_s=summary.duration.total,
        average_duration_s=summary.duration.average,
        max_duration_s=summary.duration.max,
        total_distance_m=summary.distance.total,
        average_distance_m=summary.distance.average,
        trips_with_distance=summary.distance.count,
        last_trip_at=last,
        rides_per_day=rides,
        average_rides_per_day=summary.trips / days,
    )


async def current_alerts(session: AsyncSession, vehicle: Vehicle) -> list[dict[str, Any]]:
    """Seed 002 "Get vehicle alerts": its alerts that need attention (new, escalated),
    through the fleet alerts' own history query and rows."""
    rows: list[FleetAlert] = await alerts.alert_history(
        session,
        alerts.HistoryFilters(
            networks=[vehicle.network_id], vehicle_id=vehicle.id, state=CURRENT_STATES
        ),
        Keyset(page_size=MAX_VEHICLE_ALERTS),
    )
    return await alerts.describe(session, rows[:MAX_VEHICLE_ALERTS])


# ── external locks ──────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class LockRegistration:
    vehicle_id: int
    model: str
    lock_type: ExternalLockType
    serial_number: str
    code: str


async def register_lock(
    session: AsyncSession, key: bytes, reg: LockRegistration, user_id: int, now: datetime
) -> VehicleExternalLock:
    """The vehicle is the caller's (loaded and scope-checked, FOR UPDATE)."""
    if await repo.active_lock(session, reg.vehicle_id) is not None:
        raise ExternalLockConflictError(f"vehicle {reg.vehicle_id} already has an external lock")
    if await repo.lock_serial_in_use(session, reg.serial_number):
        raise ExternalLockConflictError(
            f"lock serial number {reg.serial_number!r} is on another vehicle"
        )
    lock = VehicleExternalLock(
        vehicle_id=reg.vehicle_id,
        model=reg.model,
        lock_type=reg.lock_type,
        serial_number=reg.serial_number,
        code_sealed=b"",  # sealed with its id as associated data, known after the insert
        code_updated_at=now,
        registered_at=now,
        registered_by=user_id,
    )
    try:
        async with session.begin_nested():
            session.add(lock)
            await session.flush()
    except IntegrityError as exc:
        raise ExternalLockConflictError("this lock or vehicle was just given a lock") from exc
    lock.code_sealed = lockcodes.seal(key, lock.id, reg.code)
    await session.flush()
    return lock


async def _lock_of(session: AsyncSession, vehicle_id: int) -> VehicleExternalLock:
    lock = await repo.active_lock(session, vehicle_id, lock=True)
    if lock is None:
        raise NotFoundError("external lock of vehicle", vehicle_id)
    return lock


async def decommission_lock(
    session: AsyncSession, vehicle_id: int, user_id: int, now: datetime
) -> VehicleExternalLock:
    lock = await _lock_of(session, vehicle_id)
    lock.decommissioned_at = now
    lock.decommissioned_by = user_id
    await session.flush()
    return lock


async def set_lock_code(
    session: AsyncSession, key: bytes, vehicle_id: int, code: str, now: datetime
) -> VehicleExternalLock:
    lock = await _lock_of(session, vehicle_id)
    lock.code_sealed = lockcodes.seal(key, lock.id, code)
    lock.code_updated_at = now
    await session.flush()
    return lock


async def lock_code(session: AsyncSession, key: bytes, vehicle_id: int) -> str | None:
    """The code of the vehicle's external lock, for the rider it is unlocked for (None:
    no external lock). The one place a code is opened."""
    lock = await repo.active_lock(session, vehicle_id)
    return lockcodes.unseal(key, lock.id, lock.code_sealed) if lock is not None else None
