"""Rent service: open a rent (before any unlock command) and apply the unlock outcome.

A rent holds the vehicle (partial unique index ``uq_rents_vehicle_active``), so of two
concurrent requests for the same vehicle exactly one gets a rent. No trip and no money
here: the trip starts only when the vehicle leaves (:mod:`kickstand.cloud.trips`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import outbox
from kickstand.cloud.errors import ConflictError, NotFoundError, RentRefusedError
from kickstand.cloud.models import (
    ACTIVE_RENT_STATUSES,
    ACTIVE_TRIP_STATUSES,
    Network,
    Rent,
    RentKind,
    RentStatus,
    Spot,
    SpotState,
    Station,
    Trip,
    User,
    Vehicle,
    VehicleState,
    VehicleType,
)
from kickstand.cloud.rent_gateway import UnlockOutcome, UnlockResult
from kickstand.cloud.trips import rent_expired, rent_payload

log = logging.getLogger("kickstand.cloud.rents")


@dataclass(frozen=True)
class UnlockTarget:
    """What to unlock: a spot of a station, or a vehicle's lock box."""

    station_device_id: str | None = None
    spot_number: int | None = None
    vehicle_device_id: str | None = None


async def _target_vehicle(
    session: AsyncSession, spot_id: int | None, vehicle_id: int | None
) -> tuple[Vehicle, Spot | None, Station | None]:
    if spot_id is not None:
        spot = await session.get(Spot, spot_id)
        if spot is None:
            raise NotFoundError("spot", spot_id)
        vehicle = (await session.scalars(select(Vehicle).where(Vehicle.spot_id == spot.id))).first()
        if vehicle is None:
            raise RentRefusedError("there is no vehicle in this spot", reason="spot-empty")
        if vehicle_id is not None and vehicle.id != vehicle_id:
            raise RentRefusedError(
                "this vehicle is not in the given spot", reason="vehicle-not-in-spot"
            )
    elif vehicle_id is not None:
        found = await session.get(Vehicle, vehicle_id)
        if found is None:
            raise NotFoundError("vehicle", vehicle_id)
        vehicle = found
        spot = await session.get(Spot, vehicle.spot_id) if vehicle.spot_id is not None else None
    else:
        raise RentRefusedError("give a spot_id or a vehicle_id", reason="no-target")
    station = await session.get(Station, spot.station_id) if spot is not None else None
    return vehicle, spot, station


async def open_rent(
    session: AsyncSession,
    user: User,
    *,
    spot_id: int | None = None,
    vehicle_id: int | None = None,
    idempotency_key: str | None = None,
    now: datetime,
    unlock_window_s: int = 60,
) -> tuple[Rent, UnlockTarget]:
    """Check the rules and hold the vehicle with a pending rent (flushed, not committed)."""
    # Serialise this rider's rent requests (the simultaneous-rent limit is per rider).
    # FOR NO KEY UPDATE on PostgreSQL: it does not conflict with the KEY SHARE locks that
    # foreign-key checks of concurrent inserts (idempotency keys, rents) take on the row.
    await session.execute(select(User.id).where(User.id == user.id).with_for_update(key_share=True))
    vehicle, spot, station = await _target_vehicle(session, spot_id, vehicle_id)
    network = await session.get_one(Network, vehicle.network_id)
    # Unlock windows that closed without news from the device must not hold anything.
    stale: Sequence[int] = (
        await session.scalars(
            select(Rent.id).where(
                (Rent.vehicle_id == vehicle.id) | (Rent.user_id == user.id),
                Rent.status.in_(ACTIVE_RENT_STATUSES),
                Rent.expires_at < now,
            )
        )
    ).all()
    for rid in stale:
        await rent_expired(session, rid, now)
    if vehicle.state != VehicleState.AVAILABLE or vehicle.in_maintenance:
        raise RentRefusedError(
            "this vehicle is not available right now", reason="vehicle-unavailable"
        )
    if spot is not None and spot.state != SpotState.ACTIVE:
        raise RentRefusedError(
            "this spot is out of order; pick another one", reason="spot-unavailable"
        )
    if (
        vehicle.vehicle_type != VehicleType.BIKE
        and vehicle.battery_level is not None
        and vehicle.battery_level < network.min_battery_to_rent
    ):
        raise RentRefusedError("this vehicle's battery is too low to rent", reason="battery-low")
    if user.wallet_balance <= 0:
        raise RentRefusedError("your wallet is empty: top it up to rent", reason="wallet-empty")

    def count(model: type[Trip] | type[Rent], *where: Any) -> Any:
        return select(func.count()).select_from(model).where(*where).scalar_subquery()

    # One round trip for the three counts.
    counts = (
        await session.execute(
            select(
                count(Trip, Trip.vehicle_id == vehicle.id, Trip.status.in_(ACTIVE_TRIP_STATUSES)),
                count(Rent, Rent.user_id == user.id, Rent.status.in_(ACTIVE_RENT_STATUSES)),
                count(Trip, Trip.user_id == user.id, Trip.status.in_(ACTIVE_TRIP_STATUSES)),
            )
        )
    ).one()
    busy, active_rents, active_trips = (int(c or 0) for c in counts)
    if busy:
        raise ConflictError("this vehicle is already rented", reason="vehicle-rented")
    if active_rents + active_trips >= network.max_simultaneous_rented_vehicle:
        raise RentRefusedError(
            f"you already rent {network.max_simultaneous_rented_vehicle} vehicle(s), "
            "the most this network allows; return one first",
            reason="too-many-rents",
        )
    if spot is not None and station is not None:
        target = UnlockTarget(
            station_device_id=station.device_id, spot_number=spot.displayed_number
        )
        kind = RentKind.APP_SPOT
    elif vehicle.device_id is not None:
        target = UnlockTarget(vehicle_device_id=vehicle.device_id)
        kind = RentKind.APP_VEHICLE
    else:
        raise RentRefusedError("this vehicle cannot be unlocked remotely", reason="no-lock")
    rent = Rent(
        user_id=user.id,
        vehicle_id=vehicle.id,
        spot_id=spot.id if spot is not None else None,
        kind=kind,
        status=RentStatus.PENDING,
        idempotency_key=idempotency_key,
        created_at=now,
        expires_at=now + timedelta(seconds=unlock_window_s),
    )
    try:
        async with session.begin_nested():
            session.add(rent)
            await session.flush()
    except IntegrityError as exc:
        raise ConflictError(
            "someone else is renting this vehicle right now", reason="vehicle-rented"
        ) from exc
    outbox.emit(session, outbox.RENT_CREATED, "rent", rent.id, rent_payload(rent))
    await session.flush()
    return rent, target


async def apply_unlock_outcome(
    session: AsyncSession,
    rent_id: int,
    outcome: UnlockOutcome,
    *,
    now: datetime,
    unlock_window_s: int = 60,
) -> Rent:
    """Record the device's answer. A rent the removal already started stays started."""
    rent = await session.get(Rent, rent_id, with_for_update={"key_share": True})
    if rent is None:
        raise NotFoundError("rent", rent_id)
    if rent.status != RentStatus.PENDING:
        return rent
    if outcome.result == UnlockResult.UNLOCKED:
        rent.status = RentStatus.UNLOCKED
        rent.unlocked_at = outcome.unlocked_at or now
        rent.expires_at = rent.unlocked_at + timedelta(seconds=unlock_window_s)
    elif outcome.result == UnlockResult.TIMEOUT:
        rent.status = RentStatus.UNLOCK_TIMEOUT
        rent.reason = outcome.reason
        rent.expires_at = now + timedelta(seconds=unlock_window_s)
    else:
        rent.status = RentStatus.REFUSED
        rent.reason = (outcome.reason or outcome.result.value)[:200]
        rent.ended_at = now
    outbox.emit(session, outbox.RENT_UPDATED, "rent", rent.id, rent_payload(rent))
    await session.flush()
    log.info("event=rent_unlock_outcome rent_id=%s result=%s", rent.id, outcome.result.value)
    return rent
