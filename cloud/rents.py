"""Rent service: open a rent (before any unlock command) and apply the unlock outcome.

A rent holds the vehicle (partial unique index ``uq_rents_vehicle_active``), so of two
concurrent requests for the same vehicle exactly one gets a rent. No trip and no money
here: the trip starts only when the vehicle leaves (:mod:`kickstand.cloud.trips`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import Integer, Select, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import outbox
from kickstand.cloud.errors import (
    ConflictError,
    NotFoundError,
    RentRefusedError,
    RiderSessionError,
)
from kickstand.cloud.events import catalogue as ev
from kickstand.cloud.liveness import PRESENCE_COLUMNS, Presence
from kickstand.cloud.models import (
    ACTIVE_RENT_STATUSES,
    ACTIVE_TRIP_STATUSES,
    Device,
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
    table_of,
)
from kickstand.cloud.networks.repository import out_of_order_on
from kickstand.cloud.rent_gateway import UnlockOutcome, UnlockResult
from kickstand.cloud.rentable import refusal
from kickstand.cloud.trips import rent_expired, rent_network, rent_payload

log = logging.getLogger("kickstand.cloud.rents")


@dataclass(frozen=True)
class UnlockTarget:
    """What to unlock: a spot of a station, or a vehicle's lock box."""

    station_device_id: str | None = None
    spot_number: int | None = None
    vehicle_device_id: str | None = None

    @property
    def device_id(self) -> str:
        """The device that gets the Unlock command."""
        device_id = self.station_device_id or self.vehicle_device_id
        assert device_id is not None, "an unlock target names a station or a vehicle"
        return device_id

    @property
    def spot(self) -> int:
        """The Unlock command's ``spot``: 0 on a vehicle's own lock."""
        return self.spot_number or 0


@dataclass(frozen=True, slots=True)
class RentTarget:
    """The vehicle asked for, its spot and the device to command, read in one query: enough
    to check the rules, open the rent and answer the rider without reading anything again."""

    vehicle_id: int
    serial_number: str
    vehicle_type: VehicleType
    vehicle_state: VehicleState
    in_maintenance: bool
    battery_level: int | None
    network_id: int
    max_simultaneous_rented_vehicle: int
    min_battery_to_rent: int
    vehicle_device_id: str | None
    spot_id: int | None
    spot_number: int | None
    spot_state: SpotState | None
    lock_status: int | None
    station_device_id: str | None
    #: The device that gets the command (the station's when docked), as ingest last saw it.
    device_online: bool | None
    device_last_seen_at: datetime | None
    device_heartbeat_s: int | None
    #: A period of the vehicle's network is on (seed 002 "Set out of order").
    network_out_of_order: bool

    @property
    def presence(self) -> Presence:
        """The commanded device's session, judged by :mod:`kickstand.cloud.liveness`."""
        return Presence(self.device_online, self.device_last_seen_at, self.device_heartbeat_s)

    @property
    def unlock(self) -> UnlockTarget | None:
        if self.spot_id is not None and self.station_device_id is not None:
            return UnlockTarget(
                station_device_id=self.station_device_id, spot_number=self.spot_number
            )
        if self.vehicle_device_id is not None:
            return UnlockTarget(vehicle_device_id=self.vehicle_device_id)
        return None


_TARGET_COLUMNS = (
    Vehicle.id,
    Vehicle.serial_number,
    Vehicle.vehicle_type,
    Vehicle.state,
    Vehicle.in_maintenance,
    Vehicle.battery_level,
    Vehicle.network_id,
    Network.max_simultaneous_rented_vehicle,
    Network.min_battery_to_rent,
    Vehicle.device_id,
    Spot.id,
    Spot.displayed_number,
    Spot.state,
    Spot.lock_status,
    Station.device_id,
    *PRESENCE_COLUMNS,
)
_NOW = bindparam("now", type_=Rent.expires_at.type)
# Last of the target's columns (RentTarget's order): the network is out of order now.
_OUT_OF_ORDER = out_of_order_on(Vehicle.network_id, _NOW)


@functools.cache
def _target_query(by_spot: bool) -> Select[*tuple[Any, ...]]:
    """Built once (per kind of target): SQLAlchemy then reuses its compiled form and cache
    key instead of rebuilding both on every request. Parameters: target, user_id, now."""
    user_id = bindparam("user_id", type_=Integer)
    now = _NOW
    active_rent = Rent.status.in_(ACTIVE_RENT_STATUSES)
    active_trip = Trip.status.in_(ACTIVE_TRIP_STATUSES)
    # What already holds the rider or the vehicle, in the same statement: run after the
    # rider's row is locked, it sees every rent a concurrent request of theirs committed.
    counts = (
        _count(Rent, Rent.user_id == user_id, active_rent, Rent.expires_at >= now),
        _count(Trip, Trip.user_id == user_id, active_trip),
        _count(Trip, Trip.vehicle_id == Vehicle.id, active_trip),
        # Unlock windows that closed without news from the device hold nothing.
        _count(
            Rent,
            (Rent.vehicle_id == Vehicle.id) | (Rent.user_id == user_id),
            active_rent,
            Rent.expires_at < now,
        ),
    )
    stmt = select(*_TARGET_COLUMNS, _OUT_OF_ORDER, *counts)
    if by_spot:
        stmt = (
            stmt.select_from(Spot)
            .join(Station, Station.id == Spot.station_id)
            .outerjoin(Vehicle, Vehicle.spot_id == Spot.id)
            .where(Spot.id == bindparam("target"))
        )
    else:
        stmt = (
            stmt.select_from(Vehicle)
            .outerjoin(Spot, Spot.id == Vehicle.spot_id)
            .outerjoin(Station, Station.id == Spot.station_id)
            .where(Vehicle.id == bindparam("target"))
        )
    commanded = func.coalesce(Station.device_id, Vehicle.device_id)
    return stmt.outerjoin(Network, Network.id == Vehicle.network_id).outerjoin(
        Device, Device.device_id == commanded
    )


@dataclass(frozen=True, slots=True)
class Holds:
    """What already holds the rider or the vehicle."""

    active_rents: int
    active_trips: int
    vehicle_in_trip: int
    stale_rents: int


async def read_target(
    session: AsyncSession,
    spot_id: int | None,
    vehicle_id: int | None,
    user_id: int,
    now: datetime,
) -> tuple[RentTarget, Holds]:
    """The target of a rent request; NotFoundError / RentRefusedError when there is none."""
    if spot_id is None and vehicle_id is None:
        raise RentRefusedError("give a spot_id or a vehicle_id", reason="no-target")
    target = spot_id if spot_id is not None else vehicle_id
    params = {"target": target, "user_id": user_id, "now": now}
    row = (await session.execute(_target_query(spot_id is not None), params)).first()
    if row is None:
        raise NotFoundError("spot" if spot_id is not None else "vehicle", spot_id or vehicle_id)
    if row[0] is None:  # a spot with nothing in it
        raise RentRefusedError("there is no vehicle in this spot", reason="spot-empty")
    if spot_id is not None and vehicle_id is not None and row[0] != vehicle_id:
        raise RentRefusedError(
            "this vehicle is not in the given spot", reason="vehicle-not-in-spot"
        )
    n = len(_TARGET_COLUMNS) + 1
    return RentTarget(*row[:n]), Holds(*(int(c or 0) for c in row[n:]))


@dataclass(frozen=True, slots=True)
class Rider:
    is_active: bool
    token_generation: int
    wallet_balance: Decimal


def _count(model: type[Trip] | type[Rent], *where: Any) -> Any:
    return select(func.count()).select_from(model).where(*where).scalar_subquery()


_LOCK_RIDER = (
    select(User.is_active, User.token_generation, User.wallet_balance)
    .where(User.id == bindparam("user_id"))
    .with_for_update(key_share=True)
)


async def _lock_rider(session: AsyncSession, user_id: int) -> Rider | None:
    """Serialise this rider's rent requests (the simultaneous-rent limit is per rider).

    FOR NO KEY UPDATE on PostgreSQL: it does not conflict with the KEY SHARE locks that
    foreign-key checks of concurrent inserts (idempotency keys, rents) take on the row.
    """
    row = (await session.execute(_LOCK_RIDER, {"user_id": user_id})).first()
    return None if row is None else Rider(*row)


async def _expire_stale(
    session: AsyncSession, user_id: int, vehicle_id: int, now: datetime
) -> None:
    stale: Sequence[int] = (
        await session.scalars(
            select(Rent.id).where(
                (Rent.vehicle_id == vehicle_id) | (Rent.user_id == user_id),
                Rent.status.in_(ACTIVE_RENT_STATUSES),
                Rent.expires_at < now,
            )
        )
    ).all()
    for rid in stale:
        await rent_expired(session, rid, now, provisional=True)


def _check_rules(target: RentTarget, rider: Rider, holds: Holds) -> UnlockTarget:
    refused = refusal(
        network_out_of_order=target.network_out_of_order,
        state=target.vehicle_state,
        in_maintenance=target.in_maintenance,
        vehicle_type=target.vehicle_type,
        battery_level=target.battery_level,
        # A docked target whose spot row is missing counts as a spot out of order.
        spot_state=(target.spot_state or SpotState.OUT_OF_ORDER)
        if target.spot_id is not None
        else None,
        min_battery_to_rent=target.min_battery_to_rent,
    )
    if refused is not None:
        raise RentRefusedError(refused.message, reason=refused.reason)
    if rider.wallet_balance <= 0:
        raise RentRefusedError("your wallet is empty: top it up to rent", reason="wallet-empty")
    if holds.vehicle_in_trip:
        raise ConflictError("this vehicle is already rented", reason="vehicle-rented")
    limit = target.max_simultaneous_rented_vehicle
    if holds.active_rents + holds.active_trips >= limit:
        raise RentRefusedError(
            f"you already rent {limit} vehicle(s), the most this network allows; return one first",
            reason="too-many-rents",
        )
    unlock = target.unlock
    if unlock is None:
        raise RentRefusedError("this vehicle cannot be unlocked remotely", reason="no-lock")
    return unlock


@functools.cache
def _insert_or_ignore(dialect: str) -> Any | None:
    # One statement instead of SAVEPOINT/INSERT/RELEASE: a unique-index clash (another
    # rider holds the vehicle) inserts nothing instead of aborting the transaction.
    table = table_of(Rent)
    if dialect == "postgresql":
        return pg_insert(table).on_conflict_do_nothing().returning(table.c.id)
    if dialect == "sqlite":
        return sqlite_insert(table).on_conflict_do_nothing().returning(table.c.id)
    return None


_INSERT_RENT = insert(table_of(Rent)).returning(table_of(Rent).c.id)


async def _insert_rent(session: AsyncSession, values: dict[str, Any]) -> int | None:
    """The new rent's id; None when another open rent holds the vehicle."""
    stmt = _insert_or_ignore(session.get_bind().dialect.name)
    if stmt is None:
        return await _insert_rent_in_savepoint(session, values)
    rent_id: int | None = (await session.execute(stmt, values)).scalar()
    return rent_id


async def _insert_rent_in_savepoint(session: AsyncSession, values: dict[str, Any]) -> int | None:
    """For a database without INSERT … ON CONFLICT: the clash rolls back a savepoint only."""
    try:
        async with session.begin_nested():
            rent_id: int | None = (await session.execute(_INSERT_RENT, values)).scalar()
            return rent_id
    except IntegrityError:
        return None


def _rent_kind(unlock: UnlockTarget, badge_id: int | None) -> RentKind:
    if badge_id is not None:
        return RentKind.BADGE
    return RentKind.APP_SPOT if unlock.station_device_id is not None else RentKind.APP_VEHICLE


class OpenedRent(NamedTuple):
    rent: Rent
    unlock: UnlockTarget
    target: RentTarget


async def open_rent(
    session: AsyncSession,
    user_id: int,
    *,
    spot_id: int | None = None,
    vehicle_id: int | None = None,
    idempotency_key: str | None = None,
    now: datetime,
    unlock_window_s: int = 60,
    token_generation: int | None = None,
    badge_id: int | None = None,
) -> OpenedRent:
    """Check the rules and hold the vehicle with a pending rent (not committed).

    Three statements on the happy path: the rider's row (locked), the target with what
    holds the rider or the vehicle, and the rent's insert (its outbox record is the
    fourth). ``token_generation`` checks the rider's session in the same locked read
    (RiderSessionError when logged out or disabled). ``badge_id``: a badge presented at
    the station asks (same rules; the rent is of kind ``badge`` and carries it).
    """
    rider = await _lock_rider(session, user_id)
    if rider is None:
        raise RiderSessionError(None, None)
    if not rider.is_active or (
        token_generation is not None and token_generation != rider.token_generation
    ):
        raise RiderSessionError(rider.is_active, rider.token_generation)
    target, holds = await read_target(session, spot_id, vehicle_id, user_id, now)
    if holds.stale_rents:
        await _expire_stale(session, user_id, target.vehicle_id, now)
        target, holds = await read_target(session, spot_id, vehicle_id, user_id, now)
    unlock = _check_rules(target, rider, holds)
    values = {
        "user_id": user_id,
        "vehicle_id": target.vehicle_id,
        "spot_id": target.spot_id if unlock.station_device_id is not None else None,
        "kind": _rent_kind(unlock, badge_id),
        "badge_id": badge_id,
        "status": RentStatus.PENDING,
        "idempotency_key": idempotency_key,
        "created_at": now,
        "expires_at": now + timedelta(seconds=unlock_window_s),
    }
    rent_id = await _insert_rent(session, values)
    if rent_id is None:
        raise ConflictError(
            "someone else is renting this vehicle right now", reason="vehicle-rented"
        )
    rent = Rent(id=rent_id, **values)
    await outbox.insert(session, ev.RENT_CREATED, rent_id, rent_payload(rent, target.network_id))
    return OpenedRent(rent, unlock, target)


_RENTS = table_of(Rent)
#: One statement for every outcome: a column an outcome does not set is passed as NULL
#: and keeps its value.
_SET_OUTCOME = (
    update(_RENTS)
    .where(_RENTS.c.id == bindparam("rent_id"), _RENTS.c.status == RentStatus.PENDING)
    .values(
        status=bindparam("new_status"),
        **{
            name: func.coalesce(bindparam(f"new_{name}", type_=_RENTS.c[name].type), _RENTS.c[name])
            for name in ("reason", "unlocked_at", "expires_at", "ended_at")
        },
    )
    .returning(*_RENTS.c)
)


async def apply_unlock_outcome(
    session: AsyncSession,
    rent_id: int,
    outcome: UnlockOutcome,
    *,
    now: datetime,
    unlock_window_s: int = 60,
    may_open_until: datetime | None = None,
) -> Rent:
    """Record the device's answer. A rent the removal already started stays started.

    A timeout keeps the rent open for a window after the command could still have been
    executed (``may_open_until``, the command's ``expires_at``): the device's late result,
    the removal or its UnlockExpired resolve it (SPEC §7.3), else the expiry sweep.

    One UPDATE guarded on ``status = pending`` (ingest may have started or expired the
    rent meanwhile: then the rent is only read) and the outbox record.
    """
    if outcome.result == UnlockResult.UNLOCKED:
        unlocked_at = outcome.unlocked_at or now
        values: dict[str, Any] = {
            "status": RentStatus.UNLOCKED,
            "unlocked_at": unlocked_at,
            "expires_at": unlocked_at + timedelta(seconds=unlock_window_s),
        }
    elif outcome.result == UnlockResult.TIMEOUT:
        may_open = max(now, may_open_until) if may_open_until is not None else now
        values = {
            "status": RentStatus.UNLOCK_TIMEOUT,
            "reason": outcome.reason,
            "expires_at": may_open + timedelta(seconds=unlock_window_s),
        }
    else:
        values = {
            "status": RentStatus.REFUSED,
            "reason": (outcome.reason or outcome.result.value)[:200],
            "ended_at": now,
        }
    params = {"reason": None, "unlocked_at": None, "expires_at": None, "ended_at": None, **values}
    row = (
        await session.execute(
            _SET_OUTCOME, {"rent_id": rent_id, **{f"new_{k}": v for k, v in params.items()}}
        )
    ).first()
    if row is None:
        rent = await session.get(Rent, rent_id, populate_existing=True)
        if rent is None:
            raise NotFoundError("rent", rent_id)
        return rent
    rent = Rent(**row._asdict())
    network_id = await rent_network(session, rent)
    await outbox.insert(session, ev.RENT_UPDATED, rent.id, rent_payload(rent, network_id))
    log.info("event=rent_unlock_outcome rent_id=%s result=%s", rent.id, outcome.result.value)
    return rent


async def late_unlock_result(
    session: AsyncSession, rent_id: int, done: bool, reason: str | None, at: datetime
) -> Rent | None:
    """The device's final answer to an unlock the API stopped waiting for (a rent in
    ``unlock-timeout``): DONE → ``unlocked`` (its window stays as the timeout set it),
    REJECTED/FAILED → ``refused``. A rent in any other state is left alone (None)."""
    values: dict[str, Any] = (
        {"status": RentStatus.UNLOCKED, "unlocked_at": at}
        if done
        else {"status": RentStatus.REFUSED, "reason": (reason or "refused")[:200], "ended_at": at}
    )
    row = (
        await session.execute(
            update(_RENTS)
            .where(_RENTS.c.id == rent_id, _RENTS.c.status == RentStatus.UNLOCK_TIMEOUT)
            .values(**values)
            .returning(*_RENTS.c)
        )
    ).first()
    if row is None:
        return None
    rent = Rent(**row._asdict())
    network_id = await rent_network(session, rent)
    await outbox.insert(session, ev.RENT_UPDATED, rent.id, rent_payload(rent, network_id))
    log.info("event=rent_late_unlock_result rent_id=%s done=%s", rent.id, done)
    return rent
