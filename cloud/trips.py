"""Trip engine: device events in, trips and their outbox records out.

Every function works on the caller's :class:`AsyncSession` and transaction: it reads,
changes rows, adds outbox records — and the caller commits (so the change and its outbox
record land together) or rolls back. Changes are flushed where a later step needs them (a
new trip's id); the rest goes out with the caller's next query or flush, together with what
the caller adds (one INSERT for all the outbox records of an event).

Times are DEVICE times (aware datetimes) taken from the events, never the server clock,
so an event replayed late (a station that was offline) still ends a trip at the moment
it really docked. Every function is idempotent: applying the same event twice changes
nothing the second time (result ``action == "duplicate"``).

Rules:

* A trip starts when the vehicle leaves the spot (``vehicle_removed``), for the rent
  pending at that spot (app) or for the badge presented at the station. An unlock with
  no removal opens no trip and costs nothing (``rent_expired``).
* It ends when the vehicle docks at any spot (``vehicle_docked``), and is billed then.
* A removal that arrives after the dock of the same ride (dock at another, online
  station while the first was offline, or at the same spot when both events of one
  offline station reach two workers out of order) is reconciled: the trip is created and
  finished at the recorded dock time.
* The unlock window is judged on device time. The sweep (``expire_stale_rents``) and a
  new rent request close a window on SERVER time only provisionally: the rent becomes
  ``expired-no-removal`` with reason :data:`EXPIRY_UNCONFIRMED`, and a removal (station)
  or an unlock (vehicle lock box) whose device stamp lies inside the rent's window —
  ``[created_at − RENT_WINDOW_SKEW, expires_at + RENT_WINDOW_SKEW]`` — still starts that
  rent's trip whenever it arrives (a station offline for minutes): a normal start, billed
  on device time, never an unauthorized removal.
* The expiry is final (nothing starts the rent any more) when the device says so
  (UnlockExpired → ``rent_expired``: reason :data:`EXPIRY_BY_DEVICE`), or once the
  device's queue is known drained past the window: the sweep finds a status of that
  device stamped after ``expires_at + RENT_WINDOW_SKEW`` that was applied at least
  :data:`DRAIN_GRACE` ago (reason :data:`EXPIRY_DRAINED`). A device queues in creation
  order and publishes in ``seq`` order, so a removal stamped inside the window was
  published before that status; the grace covers a worker still applying it.
* One vehicle is never in two trips (partial unique index ``uq_trips_vehicle_active``;
  the vehicle row is locked on PostgreSQL, SQLite serialises writers).
* Row locks are ``FOR NO KEY UPDATE`` (``key_share=True``): they never conflict with the
  KEY SHARE locks that foreign-key checks of concurrent inserts take, so an API process
  opening a rent and an ingest worker ending a trip cannot deadlock on user/vehicle rows.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import outbox
from kickstand.cloud.billing import RuleBook, compute_cost, round_money
from kickstand.cloud.errors import ConflictError, NoPricingRuleError, NotFoundError
from kickstand.cloud.events import EventType
from kickstand.cloud.events import catalogue as ev
from kickstand.cloud.events import payloads as p
from kickstand.cloud.models import (
    ACTIVE_TRIP_STATUSES,
    Badge,
    Cluster,
    Network,
    PricingRule,
    Rent,
    RentKind,
    RentStatus,
    Spot,
    Station,
    Trip,
    TripStatus,
    User,
    Vehicle,
    VehicleState,
    WalletTransaction,
    WalletTransactionKind,
)

log = logging.getLogger("kickstand.cloud.trips")

#: Rejected / ignored events by reason (exported for metrics).
rejections: Counter[str] = Counter()

Action = Literal["created", "ended", "updated", "reconciled", "duplicate", "ignored"]

#: Rents a removal may start (an unlock that timed out may still have opened the lock).
STARTABLE_RENT_STATUSES = (RentStatus.PENDING, RentStatus.UNLOCKED, RentStatus.UNLOCK_TIMEOUT)

#: ``reason`` of an ``expired-no-removal`` rent: why, and whether it is final.
#: Closed on server time with no word from the device: a late event may still start it.
EXPIRY_UNCONFIRMED = "no-word-from-device"
#: The device relocked after its window (UnlockExpired): final.
EXPIRY_BY_DEVICE = "unlock-expired"
#: Closed on server time, then the device's queue was seen drained past the window: final.
EXPIRY_DRAINED = "device-drained-past-window"

#: How far a device stamp may lie outside a rent's window and still belong to it: the
#: error of a device clock between two time syncs (SPEC §4.3) plus the gap between the
#: device's window (from the latch opening) and the cloud's (from the answer it received).
RENT_WINDOW_SKEW = timedelta(seconds=30)
#: How long a status stamped past a rent's window must have been applied before the sweep
#: takes the device's queue as drained past that window: the messages queued before it
#: were published before it, but another worker may still be applying them.
DRAIN_GRACE = timedelta(minutes=5)


@dataclass
class TripEventResult:
    action: Action
    trip: Trip | None = None
    reason: str | None = None


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("event times must be timezone-aware device times")
    return at


def _reject(reason: str, **context: Any) -> TripEventResult:
    rejections[reason] += 1
    details = " ".join(f"{k}={v}" for k, v in context.items())
    log.warning("event=trip_event_ignored reason=%s %s", reason, details)
    return TripEventResult("ignored", None, reason)


# ── payloads ──────────────────────────────────────────────────────────────────────────


def trip_payload(trip: Trip, vehicle: Vehicle | None = None) -> p.TripEvent:
    return p.TripEvent(
        trip_id=trip.id,
        user_id=trip.user_id,
        vehicle_id=trip.vehicle_id,
        serial_number=vehicle.serial_number if vehicle is not None else None,
        network_id=trip.network_id,
        rent_id=trip.rent_id,
        status=trip.status,
        started_at=trip.started_at,
        ended_at=trip.ended_at,
        start_spot_id=trip.start_spot_id,
        end_spot_id=trip.end_spot_id,
        start_cluster_id=trip.start_cluster_id,
        end_cluster_id=trip.end_cluster_id,
        on_hold_since=trip.on_hold_since,
        billing_stopped_at=trip.billing_stopped_at,
        cost=round_money(trip.cost, trip.currency) if trip.cost is not None else None,
        currency=trip.currency,
        version=trip.version,
    )


def dock_payload(
    spot: Spot,
    station: Station,
    network_id: int | None,
    vehicle: Vehicle | None,
    *,
    fault: str | None = None,
    reason: str | None = None,
) -> p.DockEvent:
    """``dock.updated``: the spot as it stands (``vehicle``: the one it holds, or None)."""
    return p.DockEvent(
        spot_id=spot.id,
        station_id=station.id,
        station_device_id=station.device_id,
        network_id=network_id,
        displayed_number=spot.displayed_number,
        lock_status=spot.lock_status,
        state=spot.state,
        maintenance_source=spot.maintenance_source,
        contained_vehicle_id=vehicle.id if vehicle is not None else None,
        serial_number=vehicle.serial_number if vehicle is not None else None,
        status_at=spot.status_at,
        fault=fault,
        reason=reason,
    )


def vehicle_payload(
    vehicle: Vehicle,
    *,
    online: bool | None = None,
    unauthorized_removal: bool = False,
    at: datetime | None = None,
) -> p.VehicleEvent:
    """``vehicule.updated``: the vehicle as it stands."""
    return p.VehicleEvent(
        vehicle_id=vehicle.id,
        serial_number=vehicle.serial_number,
        network_id=vehicle.network_id,
        device_id=vehicle.device_id,
        state=vehicle.state,
        spot_id=vehicle.spot_id,
        latitude=vehicle.latitude,
        longitude=vehicle.longitude,
        online=online,
        unauthorized_removal=unauthorized_removal,
        at=at,
    )


def rent_payload(rent: Rent, network_id: int | None) -> p.RentEvent:
    """``rent.*``; ``network_id``: its vehicle's (:func:`rent_network` reads it)."""
    return p.RentEvent(
        rent_id=rent.id,
        user_id=rent.user_id,
        vehicle_id=rent.vehicle_id,
        network_id=network_id,
        spot_id=rent.spot_id,
        kind=rent.kind,
        status=rent.status,
        reason=rent.reason,
        created_at=rent.created_at,
        unlocked_at=rent.unlocked_at,
        expires_at=rent.expires_at,
        ended_at=rent.ended_at,
    )


async def rent_network(session: AsyncSession, rent: Rent) -> int | None:
    """The network of a rent (its vehicle's), for paths that did not load the vehicle."""
    return await session.scalar(_VEHICLE_NETWORK, {"vid": rent.vehicle_id})


_VEHICLE_NETWORK = select(Vehicle.network_id).where(Vehicle.id == bindparam("vid"))


def _emit_trip(
    session: AsyncSession, event: EventType[p.TripEvent], trip: Trip, vehicle: Vehicle | None
) -> None:
    outbox.emit(session, event, trip.id, trip_payload(trip, vehicle))


# ── lookups ───────────────────────────────────────────────────────────────────────────


# The statements of the event paths, built once: building one and its cache key costs about
# as much CPU as running it.
_SPOTS = (
    select(Station, Spot, Cluster)
    .join(Spot, Spot.station_id == Station.id)
    .join(Cluster, Cluster.id == Station.cluster_id)
)
_STATION_SPOT = _SPOTS.where(
    Station.device_id == bindparam("station"), Spot.displayed_number == bindparam("spot")
)
_SPOT_BY_ID = _SPOTS.where(Spot.id == bindparam("spot"))
# Locked rows are read afresh (populate_existing): a copy loaded earlier in the session,
# unlocked, would otherwise keep its old values.
_LOCK_VEHICLE = {
    column: select(Vehicle, Network)
    .join(Network, Network.id == Vehicle.network_id)
    .where(getattr(Vehicle, column) == bindparam("value"))
    .with_for_update(of=Vehicle, key_share=True)
    .execution_options(populate_existing=True)
    for column in ("serial_number", "device_id")
}
# A docking: the vehicle and whatever the spot held before, both locked (in id order).
_LOCK_DOCKING = (
    select(Vehicle, Network)
    .join(Network, Network.id == Vehicle.network_id)
    .where((Vehicle.serial_number == bindparam("serial")) | (Vehicle.spot_id == bindparam("spot")))
    .order_by(Vehicle.id)
    .with_for_update(of=Vehicle, key_share=True)
    .execution_options(populate_existing=True)
)
_ACTIVE_TRIP = select(Trip).where(
    Trip.vehicle_id == bindparam("vid"), Trip.status.in_(ACTIVE_TRIP_STATUSES)
)
_SAME_OR_ACTIVE_TRIP = select(Trip).where(
    Trip.vehicle_id == bindparam("vid"),
    (Trip.started_at >= bindparam("at")) | Trip.status.in_(ACTIVE_TRIP_STATUSES),
)
_TRIP_ENDED_AT = select(Trip).where(
    Trip.vehicle_id == bindparam("vid"), Trip.ended_at == bindparam("at")
)
_RULES = (
    select(PricingRule)
    .where(PricingRule.network_id == bindparam("network"), PricingRule.valid_until.is_(None))
    .order_by(PricingRule.id)
)
# The versions in force at ``at`` (a trip's start): edits never reprice a running trip.
_RULES_AT = (
    select(PricingRule)
    .where(
        PricingRule.network_id == bindparam("network"),
        PricingRule.valid_from.is_(None) | (PricingRule.valid_from <= bindparam("at")),
        PricingRule.valid_until.is_(None) | (PricingRule.valid_until > bindparam("at")),
    )
    .order_by(PricingRule.id)
)
# The rents an event stamped ``at`` may start: the open ones, and the ones the sweep closed
# on server time whose window holds ``at`` (parameters: _window(at)).
_STARTABLE_AT = Rent.status.in_(STARTABLE_RENT_STATUSES) | (
    (Rent.status == RentStatus.EXPIRED_NO_REMOVAL)
    & (Rent.reason == EXPIRY_UNCONFIRMED)
    & (Rent.created_at <= bindparam("opened_by"))
    & (Rent.expires_at >= bindparam("closed_after"))
)
_OPEN_RENTS_AT = (
    select(Rent)
    .where(
        (Rent.spot_id == bindparam("spot")) | (Rent.vehicle_id == bindparam("vid")), _STARTABLE_AT
    )
    .order_by(Rent.id.desc())
    .with_for_update(key_share=True)
    .execution_options(populate_existing=True)
)
_VEHICLE_RENT = (
    select(Rent)
    .where(Rent.vehicle_id == bindparam("vid"), _STARTABLE_AT)
    .order_by(Rent.id.desc())
    .with_for_update(key_share=True)
    .execution_options(populate_existing=True)
)
# Session.get(..., with_for_update=...) builds its SELECT on every call; the same, once.
_LOCK_USER = select(User).where(User.id == bindparam("id")).with_for_update(key_share=True)
_LOCK_RENT = (
    select(Rent)
    .where(Rent.id == bindparam("id"))
    .with_for_update(key_share=True)
    .execution_options(populate_existing=True)
)
_VEHICLE_RENT_BY_ID = _VEHICLE_RENT.where(Rent.id == bindparam("rent"))


def _keep(session: AsyncSession, *rows: object) -> None:
    """Keep rows alive for the session. The identity map holds unchanged objects weakly:
    without a reference, a later ``session.get`` of the same row (the cluster of a dock,
    the network when billing, the station in the alert rules) would query it again."""
    kept: list[object] = session.info.setdefault("kickstand.trips.kept", [])
    kept.extend(rows)


async def _station_spot(
    session: AsyncSession, station_device_id: str, spot_number: int
) -> tuple[Station, Spot, Cluster] | None:
    row = (
        await session.execute(_STATION_SPOT, {"station": station_device_id, "spot": spot_number})
    ).first()
    if row is None:
        return None
    station, spot, cluster = row
    _keep(session, station, cluster)  # not the spot: unlocked, others change it
    return station, spot, cluster


async def _lock_vehicle(session: AsyncSession, column: str, value: str) -> Vehicle | None:
    """The vehicle row (by ``serial_number`` or ``device_id``), locked; its network comes
    along (a trip's currency and price)."""
    row = (await session.execute(_LOCK_VEHICLE[column], {"value": value})).first()
    if row is None:
        return None
    _keep(session, *row)
    vehicle: Vehicle = row[0]
    return vehicle


async def _active_trip(session: AsyncSession, vehicle_id: int) -> Trip | None:
    return (await session.scalars(_ACTIVE_TRIP, {"vid": vehicle_id})).first()


async def _same_or_active_trip(
    session: AsyncSession, vehicle_id: int, at: datetime
) -> tuple[Trip | None, Trip | None, Trip | None]:
    """(the trip this vehicle started at ``at``, its active trip, its first trip started
    after ``at``) in one query. The last is None but for a late event: a prompt one is
    the vehicle's newest."""
    rows: Sequence[Trip] = (
        await session.scalars(_SAME_OR_ACTIVE_TRIP, {"vid": vehicle_id, "at": at})
    ).all()
    same = next((t for t in rows if t.started_at == at), None)
    active = next((t for t in rows if t.status in ACTIVE_TRIP_STATUSES), None)
    later = min((t for t in rows if t.started_at > at), key=lambda t: t.started_at, default=None)
    return same, active, later


async def get_trip(session: AsyncSession, trip_id: int, *, lock: bool = False) -> Trip:
    stmt = select(Trip).where(Trip.id == trip_id)
    if lock:
        stmt = stmt.with_for_update(key_share=True)
    trip = (await session.scalars(stmt)).first()
    if trip is None:
        raise NotFoundError("trip", trip_id)
    return trip


# ── billing ───────────────────────────────────────────────────────────────────────────


def hold_periods(trip: Trip) -> list[tuple[datetime, datetime]]:
    periods = [
        (datetime.fromisoformat(p["start"]), datetime.fromisoformat(p["end"]))
        for p in trip.hold_periods or []
    ]
    if trip.on_hold_since is not None and trip.ended_at is not None:
        periods.append((trip.on_hold_since, trip.ended_at))
    return periods


async def rule_book(
    session: AsyncSession, network: Network, valid_at: datetime | None = None
) -> RuleBook:
    """The network's pricing rules in force now, or those valid at ``valid_at``."""
    if valid_at is None:
        rules: Sequence[PricingRule] = (
            await session.scalars(_RULES, {"network": network.id})
        ).all()
    else:
        rules = (await session.scalars(_RULES_AT, {"network": network.id, "at": valid_at})).all()
    return RuleBook(rules, network.timezone, network.id)


async def price_trip(
    session: AsyncSession, trip: Trip, until: datetime
) -> tuple[Decimal | None, dict[str, Any]]:
    """Cost of ``trip`` if it ended at ``until`` (running trips: the cost so far)."""
    network = await session.get_one(Network, trip.network_id)
    # The rules valid when the trip started (docs/pricing.md "Price changes").
    book = await rule_book(session, network, trip.started_at)
    periods = hold_periods(trip)
    if trip.on_hold_since is not None and trip.ended_at is None:
        periods.append((trip.on_hold_since, until))
    try:
        cost = compute_cost(
            book,
            trip.currency,
            trip.started_at,
            until,
            periods,
            trip.billing_stopped_at,
            trip.free_floating_end,
        )
    except NoPricingRuleError as exc:
        log.error("event=trip_not_priced trip_id=%s error=%s", trip.id, exc)
        return None, {"error": str(exc)}
    return cost.total, cost.as_json()


async def _bill(session: AsyncSession, trip: Trip, *, first: bool = False) -> None:
    """Price an ended trip and charge (``first``: just ended, no charge can exist yet)."""
    assert trip.ended_at is not None
    with session.no_autoflush:  # the rules do not depend on the trip's pending changes
        trip.cost, trip.cost_detail = await price_trip(session, trip, trip.ended_at)
    # The usage rollup follows every end and re-bill, in this transaction (imported here:
    # kickstand.cloud.stats reaches the API package, which imports this module).
    from kickstand.cloud.stats.rollup import apply_trip

    await apply_trip(session, trip)
    if trip.cost is None or trip.user_id is None:
        return
    existing: WalletTransaction | None = (
        None
        if first
        else (
            await session.scalars(
                select(WalletTransaction).where(
                    WalletTransaction.trip_id == trip.id,
                    WalletTransaction.kind == WalletTransactionKind.TRIP,
                )
            )
        ).first()
    )
    user = (await session.scalars(_LOCK_USER, {"id": trip.user_id})).one()
    if existing is None:
        session.add(
            WalletTransaction(
                user_id=trip.user_id,
                kind=WalletTransactionKind.TRIP,
                amount=-trip.cost,
                currency=trip.currency,
                trip_id=trip.id,
            )
        )
        user.wallet_balance = user.wallet_balance - trip.cost
    elif existing.amount != -trip.cost:
        # Re-billed (billing stopped after the end): the one charge is corrected in place.
        user.wallet_balance = user.wallet_balance - existing.amount - trip.cost
        existing.amount = -trip.cost


def _close_hold(trip: Trip, at: datetime) -> None:
    if trip.on_hold_since is None:
        return
    end = max(at, trip.on_hold_since)
    trip.hold_periods = [
        *(trip.hold_periods or []),
        {"start": trip.on_hold_since.isoformat(), "end": end.isoformat()},
    ]
    trip.on_hold_since = None


async def _finish(
    session: AsyncSession,
    trip: Trip,
    vehicle: Vehicle,
    at: datetime,
    *,
    spot: Spot | None = None,
    cluster_id: int | None = None,
    latitude: float | None = None,
    longitude: float | None = None,
    free_floating: bool = False,
) -> None:
    _close_hold(trip, at)
    trip.ended_at = at
    trip.status = TripStatus.FINISHED
    trip.end_spot_id = spot.id if spot is not None else None
    trip.end_cluster_id = cluster_id
    trip.end_latitude = latitude
    trip.end_longitude = longitude
    trip.free_floating_end = free_floating
    trip.version += 1
    # No flush here: the end and the cost go out as one UPDATE (the user lock query of the
    # billing flushes them, or the caller's flush does).
    await _bill(session, trip, first=True)
    _emit_trip(session, ev.TRIP_TERMINATED, trip, vehicle)
    log.info(
        "event=trip_terminated trip_id=%s vehicle=%s ended_at=%s cost=%s",
        trip.id,
        vehicle.serial_number,
        at.isoformat(),
        trip.cost,
    )


async def _cluster_of(session: AsyncSession, station: Station) -> Cluster:
    cluster = await session.get_one(Cluster, station.cluster_id)
    _keep(session, cluster)
    return cluster


# ── dock events ───────────────────────────────────────────────────────────────────────


def _window(at: datetime) -> dict[str, datetime]:
    """Parameters of ``_STARTABLE_AT`` for an event stamped ``at``."""
    return {"opened_by": at + RENT_WINDOW_SKEW, "closed_after": at - RENT_WINDOW_SKEW}


def _unconfirmed_expiry_holds(rent: Rent, at: datetime) -> bool:
    """The sweep closed ``rent`` on server time and ``at`` (device time) lies in its window."""
    return (
        rent.status == RentStatus.EXPIRED_NO_REMOVAL
        and rent.reason == EXPIRY_UNCONFIRMED
        and rent.expires_at is not None
        and rent.created_at - RENT_WINDOW_SKEW <= at <= rent.expires_at + RENT_WINDOW_SKEW
    )


def _start_rent(rent: Rent, at: datetime) -> None:
    if rent.status == RentStatus.EXPIRED_NO_REMOVAL:
        # Its event was late, not missing: the sweep's expiry was provisional.
        log.info(
            "event=rent_started_after_unconfirmed_expiry rent_id=%s at=%s expired_at=%s",
            rent.id,
            at.isoformat(),
            rent.ended_at.isoformat() if rent.ended_at else None,
        )
        rent.reason = None
    rent.status = RentStatus.STARTED
    rent.ended_at = at


async def _find_rent(
    session: AsyncSession, spot: Spot, vehicle: Vehicle, rent_id: int | str | None, at: datetime
) -> Rent | None:
    if rent_id is not None:
        try:
            rent = (await session.scalars(_LOCK_RENT, {"id": int(rent_id)})).first()
        except (TypeError, ValueError):
            rent = None
        if rent is not None and (
            rent.status in STARTABLE_RENT_STATUSES or _unconfirmed_expiry_holds(rent, at)
        ):
            return rent
        # Unknown, closed for good, or stamped outside its window: fall back to what is
        # open at that spot.
    params = {"spot": spot.id, "vid": vehicle.id, **_window(at)}
    for rent in (await session.scalars(_OPEN_RENTS_AT, params)).all():
        # A timed-out unlock only counts while its window is open (device time).
        if rent.status == RentStatus.UNLOCK_TIMEOUT and rent.expires_at and at > rent.expires_at:
            continue
        # Nor does a rent opened after the vehicle left (its late removal is another's).
        if at < rent.created_at - RENT_WINDOW_SKEW:
            continue
        return rent
    return None


async def vehicle_removed(
    session: AsyncSession,
    station_device_id: str,
    spot_number: int,
    vehicle_serial: str,
    at: datetime,
    badge_uid: str | None = None,
    rent_id: int | str | None = None,
    by_operator: bool = False,
) -> TripEventResult:
    """The vehicle left spot ``spot_number`` at device time ``at``: start the trip.

    ``by_operator``: the spot was opened by an operator's unlock without a rent (a
    technician, :mod:`kickstand.cloud.technician`): the vehicle is taken by the operator,
    no trip and no unauthorized removal (unless a rider's rent is open at the spot)."""
    _aware(at)
    found = await _station_spot(session, station_device_id, spot_number)
    if found is None:
        return _reject("unknown-spot", station=station_device_id, spot=spot_number)
    station, spot, cluster = found
    vehicle = await _lock_vehicle(session, "serial_number", vehicle_serial)
    if vehicle is None:
        return _reject("unknown-vehicle", serial=vehicle_serial, station=station_device_id)
    existing, previous, later = await _same_or_active_trip(session, vehicle.id, at)
    if existing is not None:
        return TripEventResult("duplicate", existing)
    if later is not None and not (
        vehicle.docked_at is not None and at < vehicle.docked_at <= later.started_at
    ):
        # A trip we already know started after this removal, and the docking that ended
        # this ride is not the one on record: its end is lost, never guessed (a ride that
        # overlaps the next rider's, or billed to the next rider's start).
        return _reject("removal-before-later-trip", serial=vehicle_serial, later_trip_id=later.id)

    rent = await _find_rent(session, spot, vehicle, rent_id, at)
    badge: Badge | None = None
    # A badge opened it offline (the station's own list): never a ride of a decommissioned
    # vehicle (kickstand.cloud.rentable: never rentable again), an unauthorized removal.
    retired = rent is None and vehicle.state == VehicleState.DECOMMISSIONED
    if rent is None and badge_uid is not None and not retired:
        badge = (await session.scalars(select(Badge).where(Badge.uid == badge_uid.upper()))).first()
    if later is not None and rent is None and badge_uid is None:
        return _reject("removal-before-later-trip", serial=vehicle_serial, later_trip_id=later.id)
    # Docked here again after this removal: with a rent or a badge behind it, the dock of
    # this very ride reached us first (two workers, one offline station's backlog) and is
    # reconciled below; with neither, an old event replayed with no trip behind it.
    redocked_here = (
        vehicle.docked_at is not None and vehicle.docked_at > at and vehicle.spot_id == spot.id
    )
    if redocked_here and rent is None and badge_uid is None:
        return _reject("stale-removal", serial=vehicle_serial, at=at.isoformat())

    if previous is not None and later is None:
        # The dock that ended it never reached us: end it now rather than keep it open.
        log.warning("event=trip_dock_missing trip_id=%s serial=%s", previous.id, vehicle_serial)
        await _finish(session, previous, vehicle, at)

    if rent is None and badge is not None:
        rent = Rent(
            user_id=badge.user_id,
            vehicle_id=vehicle.id,
            spot_id=spot.id,
            badge_id=badge.id,
            kind=RentKind.BADGE,
            status=RentStatus.STARTED,
            created_at=at,
        )
        session.add(rent)
        await session.flush()

    if not redocked_here:
        # The spot is empty now, whoever took the vehicle.
        if vehicle.spot_id == spot.id:
            vehicle.spot_id = None
        spot.status_at = max(at, spot.status_at) if spot.status_at else at
        outbox.emit(
            session, ev.DOCK_UPDATED, spot.id, dock_payload(spot, station, cluster.network_id, None)
        )

    if rent is None and badge_uid is None and by_operator:
        outbox.emit(session, ev.VEHICLE_UPDATED, vehicle.id, vehicle_payload(vehicle, at=at))
        log.info(
            "event=vehicle_taken_by_operator vehicle=%s station=%s spot=%s at=%s",
            vehicle_serial,
            station_device_id,
            spot_number,
            at.isoformat(),
        )
        return TripEventResult("updated", None, "taken-by-operator")

    if rent is None and (badge_uid is None or retired):
        outbox.emit(
            session,
            ev.VEHICLE_UPDATED,
            vehicle.id,
            vehicle_payload(vehicle, unauthorized_removal=True, at=at),
        )
        return _reject(
            "vehicle-decommissioned" if retired else "no-rent",
            serial=vehicle_serial,
            station=station_device_id,
            spot=spot_number,
        )

    if rent is None:
        # A badge the cloud does not know opened it offline (a stale local list): the ride
        # is recorded all the same, with no rider to bill; ingest flags it to an operator.
        log.warning(
            "event=trip_unknown_badge badge_uid=%s vehicle=%s station=%s spot=%s",
            badge_uid,
            vehicle_serial,
            station_device_id,
            spot_number,
        )
    elif rent.vehicle_id != vehicle.id:
        log.warning(
            "event=rent_vehicle_mismatch rent_id=%s expected=%s removed=%s",
            rent.id,
            rent.vehicle_id,
            vehicle.id,
        )
        rent.vehicle_id = vehicle.id
    network = await session.get_one(Network, vehicle.network_id)
    if rent is not None:
        _start_rent(rent, at)
    # The dock of this ride reached us before its removal: the trip is closed at once.
    # Inserted finished when the next rider's trip is running (one active trip per vehicle).
    ended_by = (
        vehicle.docked_at if vehicle.docked_at is not None and vehicle.docked_at > at else None
    )
    if ended_by is not None and later is None and vehicle.spot_id is None:
        ended_by = None  # taken again, and that removal not applied yet: no end to reconcile
    trip = Trip(
        user_id=rent.user_id if rent is not None else None,
        vehicle_id=vehicle.id,
        network_id=vehicle.network_id,
        rent_id=rent.id if rent is not None else None,
        badge_id=rent.badge_id if rent is not None else None,
        status=TripStatus.RUNNING if later is None else TripStatus.FINISHED,
        ended_at=None if later is None else ended_by,
        start_spot_id=spot.id,
        start_cluster_id=cluster.id,
        start_latitude=cluster.latitude,
        start_longitude=cluster.longitude,
        started_at=at,
        currency=network.currency,
        idempotency_key=rent.idempotency_key if rent is not None else None,
        hold_periods=[],
        version=1,
    )
    session.add(trip)
    if later is None:
        vehicle.state = VehicleState.RENTED
    await session.flush()
    _emit_trip(session, ev.TRIP_CREATED, trip, vehicle)
    if rent is not None:
        outbox.emit(session, ev.RENT_UPDATED, rent.id, rent_payload(rent, vehicle.network_id))
    log.info(
        "event=trip_created trip_id=%s vehicle=%s station=%s spot=%s at=%s",
        trip.id,
        vehicle_serial,
        station_device_id,
        spot_number,
        at.isoformat(),
    )

    if ended_by is not None:
        # Where it docked: its spot, or where the next rider took it from.
        end_spot_id = vehicle.spot_id if later is None else later.start_spot_id
        end_spot = await session.get_one(Spot, end_spot_id) if end_spot_id is not None else None
        end_cluster = (
            await _cluster_of(session, await session.get_one(Station, end_spot.station_id))
            if end_spot is not None
            else None
        )
        if later is None:
            vehicle.state = VehicleState.AVAILABLE
        await _finish(
            session,
            trip,
            vehicle,
            ended_by,
            spot=end_spot,
            cluster_id=end_cluster.id if end_cluster is not None else None,
            latitude=end_cluster.latitude if end_cluster is not None else None,
            longitude=end_cluster.longitude if end_cluster is not None else None,
        )
        return TripEventResult("reconciled", trip)

    outbox.emit(session, ev.VEHICLE_UPDATED, vehicle.id, vehicle_payload(vehicle))
    return TripEventResult("created", trip)


async def vehicle_docked(
    session: AsyncSession,
    station_device_id: str,
    spot_number: int,
    vehicle_serial: str,
    at: datetime,
    received_at: datetime | None = None,
) -> TripEventResult:
    """The vehicle locked into a spot at device time ``at``: end its trip (any network spot).

    ``received_at`` (the cloud's receive time of the dock) bounds the trip's end by what
    the cloud saw (SPEC §4.8 Clock): a dock stamped before the trip's start but received
    after the trip began (a clock stepped back) ends it after the time the cloud saw pass
    between the two; a dock stamped ahead of its receipt ends it no later than the receipt
    (+ :data:`RENT_WINDOW_SKEW`). Either is flagged (result reason ``clock-bounded``, the
    trip's ``cost_detail["clock"]``)."""
    _aware(at)
    found = await _station_spot(session, station_device_id, spot_number)
    if found is None:
        return _reject("unknown-spot", station=station_device_id, spot=spot_number)
    station, spot, cluster = found
    vehicle: Vehicle | None = None
    occupant: Vehicle | None = None
    for row in await session.execute(_LOCK_DOCKING, {"serial": vehicle_serial, "spot": spot.id}):
        _keep(session, *row)
        if row[0].serial_number == vehicle_serial:
            vehicle = row[0]
        else:
            occupant = row[0]
    if vehicle is None:
        return _reject("unknown-vehicle", serial=vehicle_serial, station=station_device_id)

    if vehicle.docked_at == at and vehicle.spot_id == spot.id:
        done = (await session.scalars(_TRIP_ENDED_AT, {"vid": vehicle.id, "at": at})).first()
        return TripEventResult("duplicate", done)
    trip = await _active_trip(session, vehicle.id)
    end: datetime | None = at
    clock: dict[str, str] | None = None
    if trip is not None:
        end, clock = _bounded_end(trip, at, received_at)
        if end is None:
            # A dock older than the running trip's start: an old event, the trip goes on.
            return _reject("dock-before-trip-start", serial=vehicle_serial, trip_id=trip.id)
    if vehicle.docked_at is not None and vehicle.docked_at >= at and clock is None:
        return _reject("stale-dock", serial=vehicle_serial, at=at.isoformat())

    # Whatever the DB thought was in that spot has left it.
    if occupant is not None:
        log.warning(
            "event=spot_occupant_replaced spot_id=%s old=%s", spot.id, occupant.serial_number
        )
        occupant.spot_id = None
        await session.flush()
    vehicle.spot_id = spot.id
    vehicle.docked_at = at
    if vehicle.state == VehicleState.RENTED:
        vehicle.state = VehicleState.AVAILABLE
    spot.status_at = max(at, spot.status_at) if spot.status_at else at
    vehicle.latitude, vehicle.longitude, vehicle.position_at = (
        cluster.latitude,
        cluster.longitude,
        at,
    )
    await session.flush()
    outbox.emit(
        session, ev.DOCK_UPDATED, spot.id, dock_payload(spot, station, cluster.network_id, vehicle)
    )
    outbox.emit(session, ev.VEHICLE_UPDATED, vehicle.id, vehicle_payload(vehicle))

    if trip is None:
        return TripEventResult("updated", None, "no-running-trip")
    if trip.network_id != cluster.network_id:
        log.warning("event=trip_ended_in_other_network trip_id=%s", trip.id)
    assert end is not None
    await _finish(
        session,
        trip,
        vehicle,
        end,
        spot=spot,
        cluster_id=cluster.id,
        latitude=cluster.latitude,
        longitude=cluster.longitude,
    )
    if clock is not None:
        trip.cost_detail = {**(trip.cost_detail or {}), "clock": clock}
        log.warning(
            "event=trip_end_clock_bounded trip_id=%s dock_at=%s ended_at=%s",
            trip.id,
            at.isoformat(),
            end.isoformat(),
        )
        return TripEventResult("ended", trip, "clock-bounded")
    return TripEventResult("ended", trip)


def _bounded_end(
    trip: Trip, at: datetime, received_at: datetime | None
) -> tuple[datetime | None, dict[str, str] | None]:
    """Where a dock at device time ``at`` ends ``trip``, and the clock note if its stamp was
    not believed (see :func:`vehicle_docked`); (None, None): the dock is older than the trip."""
    if received_at is None:
        return (at, None) if at >= trip.started_at else (None, None)
    note = {"dock_at": at.isoformat(), "received_at": received_at.isoformat()}
    if at < trip.started_at:
        created = trip.created_at
        created = created if created.tzinfo is not None else created.replace(tzinfo=UTC)
        if received_at < created:
            return None, None  # received before the trip began: an old dock indeed
        # This ride's dock, from a clock stepped back: the ride lasted at most what the
        # cloud saw pass between the trip's start and the dock.
        return trip.started_at + (received_at - created), {**note, "rule": "stepped-back"}
    if at > received_at + RENT_WINDOW_SKEW:
        # Stamped ahead of its own arrival: nothing is billed past the arrival.
        return max(trip.started_at, received_at), {**note, "rule": "ahead"}
    return at, None


async def spot_reported(
    session: AsyncSession,
    station_device_id: str,
    spot_number: int,
    serial: str | None,
    empty: bool,
    at: datetime,
) -> str | None:
    """A station's status says what spot ``spot_number`` holds at device time ``at``
    (SPEC §4.4: status is authoritative for occupancy): vehicle ``serial``, or nothing
    (``empty``). The vehicle's position follows it; a trip never starts or ends here.

    Returns what was done ("moved", "cleared") or why nothing was (None: already so):
    a status older than the spot's last dock/removal or the vehicle's last dock is
    stale; a vehicle in a running trip stays in it (its VehicleDocked ends the trip).
    """
    _aware(at)
    found = await _station_spot(session, station_device_id, spot_number)
    if found is None:
        return "unknown-spot"
    station, spot, cluster = found
    if spot.status_at is not None and spot.status_at > at:
        return "stale-status"
    vehicle: Vehicle | None = None
    occupant: Vehicle | None = None
    left: int | None = None  # the spot the reported vehicle leaves
    rows = await session.execute(_LOCK_DOCKING, {"serial": serial or "", "spot": spot.id})
    for row in rows:
        _keep(session, *row)
        if serial is not None and row[0].serial_number == serial:
            vehicle = row[0]
        else:
            occupant = row[0]
    moved: list[Vehicle] = []
    if occupant is not None and (empty or vehicle is not None):
        if occupant.state == VehicleState.RENTED or (
            occupant.docked_at is not None and occupant.docked_at > at
        ):
            return "occupant-newer"
        occupant.spot_id = None
        moved.append(occupant)
        await session.flush()
    if vehicle is not None and vehicle.spot_id != spot.id:
        if vehicle.state == VehicleState.RENTED:
            return "vehicle-in-trip"
        if vehicle.docked_at is not None and vehicle.docked_at > at:
            return "stale-status"
        left = vehicle.spot_id
        vehicle.spot_id = spot.id
        vehicle.latitude, vehicle.longitude = cluster.latitude, cluster.longitude
        moved.append(vehicle)
    elif serial is not None and vehicle is None:
        return "unknown-vehicle"
    if not moved:
        return None
    spot.status_at = max(at, spot.status_at) if spot.status_at else at
    await session.flush()
    if left is not None:
        # The spot it was in holds nothing now: told as a removal would tell it.
        await _emit_left_spot(session, left)
    for v in moved:
        log.warning(
            "event=vehicle_moved_by_status serial=%s station=%s spot=%s now_in_spot=%s",
            v.serial_number,
            station_device_id,
            spot_number,
            v.spot_id,
        )
        outbox.emit(session, ev.VEHICLE_UPDATED, v.id, vehicle_payload(v))
    outbox.emit(
        session, ev.DOCK_UPDATED, spot.id, dock_payload(spot, station, cluster.network_id, vehicle)
    )
    return "moved" if vehicle is not None else "cleared"


async def _emit_left_spot(session: AsyncSession, spot_id: int) -> None:
    """``dock.updated`` for a spot a status took its vehicle from (now empty)."""
    row = (await session.execute(_SPOT_BY_ID, {"spot": spot_id})).first()
    if row is not None:
        station, spot, cluster = row
        payload = dock_payload(spot, station, cluster.network_id, None)
        outbox.emit(session, ev.DOCK_UPDATED, spot.id, payload)


# ── free-floating (vehicle lock box) ──────────────────────────────────────────────────


async def vehicle_unlocked_freefloat(
    session: AsyncSession,
    vehicle_device_id: str,
    at: datetime,
    rent_id: int | str | None = None,
    latitude: float | None = None,
    longitude: float | None = None,
) -> TripEventResult:
    """The lock box opened (chain removed): resume an on-hold trip or start the rented one."""
    _aware(at)
    vehicle = await _lock_vehicle(session, "device_id", vehicle_device_id)
    if vehicle is None:
        return _reject("unknown-vehicle-device", device=vehicle_device_id)
    existing, trip, _ = await _same_or_active_trip(session, vehicle.id, at)
    if existing is not None:
        return TripEventResult("duplicate", existing)
    if trip is not None:
        if trip.status == TripStatus.ON_HOLD:
            return await _resume(session, trip, vehicle, at)
        return TripEventResult("duplicate", trip)
    if rent_id is None:
        found = await session.scalars(_VEHICLE_RENT, {"vid": vehicle.id, **_window(at)})
    else:
        found = await session.scalars(
            _VEHICLE_RENT_BY_ID, {"vid": vehicle.id, "rent": int(rent_id), **_window(at)}
        )
    rent = found.first()
    if rent is None:
        outbox.emit(
            session,
            ev.VEHICLE_UPDATED,
            vehicle.id,
            vehicle_payload(vehicle, unauthorized_removal=True, at=at),
        )
        return _reject("no-rent", device=vehicle_device_id)
    network = await session.get_one(Network, vehicle.network_id)
    _start_rent(rent, at)
    if vehicle.spot_id is not None:
        vehicle.spot_id = None
    vehicle.state = VehicleState.RENTED
    trip = Trip(
        user_id=rent.user_id,
        vehicle_id=vehicle.id,
        network_id=vehicle.network_id,
        rent_id=rent.id,
        status=TripStatus.RUNNING,
        free_floating_start=True,
        start_latitude=latitude if latitude is not None else vehicle.latitude,
        start_longitude=longitude if longitude is not None else vehicle.longitude,
        started_at=at,
        currency=network.currency,
        idempotency_key=rent.idempotency_key,
        hold_periods=[],
        version=1,
    )
    session.add(trip)
    await session.flush()
    _emit_trip(session, ev.TRIP_CREATED, trip, vehicle)
    outbox.emit(session, ev.RENT_UPDATED, rent.id, rent_payload(rent, vehicle.network_id))
    outbox.emit(session, ev.VEHICLE_UPDATED, vehicle.id, vehicle_payload(vehicle))
    return TripEventResult("created", trip)


async def vehicle_locked_freefloat(
    session: AsyncSession,
    vehicle_device_id: str,
    at: datetime,
    *,
    hold: bool = False,
    latitude: float | None = None,
    longitude: float | None = None,
    free_float_fee: bool = True,
) -> TripEventResult:
    """The lock box closed outside a station: put the trip on hold (``hold``) or end it.

    ``free_float_fee=False``: the return is inside a virtual parking (the geofence's
    return verdict, :mod:`kickstand.cloud.freefloat`): no free-float lock price.
    """
    _aware(at)
    vehicle = await _lock_vehicle(session, "device_id", vehicle_device_id)
    if vehicle is None:
        return _reject("unknown-vehicle-device", device=vehicle_device_id)
    if latitude is not None and longitude is not None:
        vehicle.latitude, vehicle.longitude, vehicle.position_at = latitude, longitude, at
    trip = await _active_trip(session, vehicle.id)
    if trip is None:
        done = (await session.scalars(_TRIP_ENDED_AT, {"vid": vehicle.id, "at": at})).first()
        if done is not None:
            return TripEventResult("duplicate", done)
        return TripEventResult("ignored", None, "no-running-trip")
    if trip.started_at > at:
        return _reject("lock-before-trip-start", device=vehicle_device_id, trip_id=trip.id)
    if trip.status == TripStatus.ON_HOLD:
        # A hold is a temporary lock (seed 002 trip_on_hold): the rider locks the vehicle
        # to leave it a while. The trip stays on hold until the vehicle is unlocked again
        # (resume) or the network's trip_max_pause ends it (end_overdue_holds).
        return TripEventResult("updated", trip, "locked-on-hold")
    if hold:
        return await _hold(session, trip, vehicle, at)
    vehicle.state = VehicleState.AVAILABLE
    await _finish(
        session,
        trip,
        vehicle,
        at,
        latitude=vehicle.latitude,
        longitude=vehicle.longitude,
        free_floating=free_float_fee,
    )
    outbox.emit(session, ev.VEHICLE_UPDATED, vehicle.id, vehicle_payload(vehicle))
    return TripEventResult("ended", trip)


# ── hold / resume / stop billing ──────────────────────────────────────────────────────


async def _hold(
    session: AsyncSession, trip: Trip, vehicle: Vehicle | None, at: datetime
) -> TripEventResult:
    if trip.status == TripStatus.ON_HOLD:
        return TripEventResult("duplicate", trip)
    if trip.status != TripStatus.RUNNING:
        raise ConflictError(
            f"trip {trip.id} is {trip.status}, it cannot be put on hold", reason="trip-not-running"
        )
    network = await session.get_one(Network, trip.network_id)
    if not network.trip_on_hold:
        raise ConflictError("this network does not allow trips on hold", reason="hold-not-allowed")
    if any(datetime.fromisoformat(p["end"]) > at for p in trip.hold_periods or []):
        return TripEventResult("duplicate", trip)  # a replay older than a later resume
    trip.status = TripStatus.ON_HOLD
    trip.on_hold_since = max(at, trip.started_at)
    trip.version += 1
    await session.flush()
    _emit_trip(session, ev.TRIP_UPDATED, trip, vehicle)
    return TripEventResult("updated", trip)


async def _resume(
    session: AsyncSession, trip: Trip, vehicle: Vehicle | None, at: datetime
) -> TripEventResult:
    if trip.status == TripStatus.RUNNING:
        return TripEventResult("duplicate", trip)
    if trip.status != TripStatus.ON_HOLD:
        raise ConflictError(
            f"trip {trip.id} is {trip.status}, it cannot be resumed", reason="trip-not-on-hold"
        )
    _close_hold(trip, at)
    trip.status = TripStatus.RUNNING
    trip.version += 1
    await session.flush()
    _emit_trip(session, ev.TRIP_UPDATED, trip, vehicle)
    return TripEventResult("updated", trip)


async def hold_trip(session: AsyncSession, trip_id: int, at: datetime) -> TripEventResult:
    """Put a running trip on hold at ``at`` (the network must allow it)."""
    trip = await get_trip(session, trip_id, lock=True)
    return await _hold(session, trip, await session.get(Vehicle, trip.vehicle_id), _aware(at))


async def resume_trip(session: AsyncSession, trip_id: int, at: datetime) -> TripEventResult:
    trip = await get_trip(session, trip_id, lock=True)
    return await _resume(session, trip, await session.get(Vehicle, trip.vehicle_id), _aware(at))


async def stop_billing(session: AsyncSession, trip_id: int, at: datetime | None) -> TripEventResult:
    """Seeds' "Stop trip billing": nothing is billed after ``at``; ``None`` erases the stop."""
    if at is not None:
        _aware(at)
    trip = await get_trip(session, trip_id, lock=True)
    if trip.billing_stopped_at == at:
        return TripEventResult("duplicate", trip)
    trip.billing_stopped_at = at
    trip.version += 1
    await session.flush()
    if trip.status == TripStatus.FINISHED:
        await _bill(session, trip)
    _emit_trip(session, ev.TRIP_UPDATED, trip, await session.get(Vehicle, trip.vehicle_id))
    await session.flush()
    return TripEventResult("updated", trip)


# ── rents (before a trip exists) ──────────────────────────────────────────────────────


async def rent_expired(
    session: AsyncSession, rent_id: int, at: datetime, *, provisional: bool = False
) -> Rent:
    """The lock opened (or might have) but nobody took the vehicle: no trip, no cost.

    By default the device's word (UnlockExpired, device time ``at``): final, a later
    removal is not a ride of this rent. ``provisional=True``: the window closed on server
    time with no word from the device (the sweep, a new rent request); a removal stamped
    inside the window may still start the rent (:data:`EXPIRY_UNCONFIRMED`).
    """
    _aware(at)
    rent = (await session.scalars(_LOCK_RENT, {"id": rent_id})).first()
    if rent is None:
        raise NotFoundError("rent", rent_id)
    unconfirmed = rent.status == RentStatus.EXPIRED_NO_REMOVAL and rent.reason == EXPIRY_UNCONFIRMED
    if rent.status in STARTABLE_RENT_STATUSES or (unconfirmed and not provisional):
        rent.status = RentStatus.EXPIRED_NO_REMOVAL
        rent.reason = EXPIRY_UNCONFIRMED if provisional else EXPIRY_BY_DEVICE
        rent.ended_at = at
        outbox.emit(
            session,
            ev.RENT_UPDATED,
            rent.id,
            rent_payload(rent, await rent_network(session, rent)),
        )
        await session.flush()
    return rent


async def expire_stale_rents(session: AsyncSession, now: datetime) -> list[Rent]:
    """Close every unlock window that is over on server time, provisionally, and make
    final the provisional expiries whose device is known drained past the window (see the
    module's rules). Run periodically; returns the rents it changed."""
    _aware(now)
    stmt = select(Rent.id).where(
        Rent.status.in_(STARTABLE_RENT_STATUSES),
        Rent.expires_at.is_not(None),
        Rent.expires_at < now,
    )
    ids: Sequence[int] = (await session.scalars(stmt)).all()
    expired = [await rent_expired(session, rid, now, provisional=True) for rid in ids]
    return expired + await _confirm_drained_expiries(session, now)


# Provisional expiries with the device whose queue decides them (the station of the spot,
# else the vehicle's own controller).
_UNCONFIRMED_EXPIRIES = (
    select(Rent.id, Rent.expires_at, func.coalesce(Station.device_id, Vehicle.device_id))
    .join(Vehicle, Vehicle.id == Rent.vehicle_id)
    .outerjoin(Spot, Spot.id == Rent.spot_id)
    .outerjoin(Station, Station.id == Spot.station_id)
    .where(Rent.status == RentStatus.EXPIRED_NO_REMOVAL, Rent.reason == EXPIRY_UNCONFIRMED)
)


async def _confirm_drained_expiries(session: AsyncSession, now: datetime) -> list[Rent]:
    # Imported here: the ingest package imports this module when it loads.
    from kickstand.cloud.ingest.tables import DeviceStatus

    pending = [
        (rent_id, expires_at, device)
        for rent_id, expires_at, device in (await session.execute(_UNCONFIRMED_EXPIRIES)).all()
        if expires_at is not None and device is not None
    ]
    if not pending:
        return []
    # Per device, the newest stamp (ms) of a status applied at least DRAIN_GRACE ago.
    drained_to: dict[str, int] = {
        device: ts_ms
        for device, ts_ms in (
            await session.execute(
                select(DeviceStatus.device_id, func.max(DeviceStatus.ts_ms))
                .where(
                    DeviceStatus.device_id.in_({device for _, _, device in pending}),
                    DeviceStatus.received_at <= now - DRAIN_GRACE,
                )
                .group_by(DeviceStatus.device_id)
            )
        ).all()
    }
    confirmed: list[Rent] = []
    for rent_id, expires_at, device in pending:
        past = expires_at + RENT_WINDOW_SKEW
        if drained_to.get(device, 0) <= past.timestamp() * 1000:
            continue
        rent = (await session.scalars(_LOCK_RENT, {"id": rent_id})).first()
        if rent is None or rent.status != RentStatus.EXPIRED_NO_REMOVAL:
            continue  # started meanwhile by its late removal
        if rent.reason != EXPIRY_UNCONFIRMED:
            continue
        rent.reason = EXPIRY_DRAINED
        outbox.emit(
            session,
            ev.RENT_UPDATED,
            rent.id,
            rent_payload(rent, await rent_network(session, rent)),
        )
        log.info("event=rent_expiry_confirmed rent_id=%s device=%s", rent.id, device)
        confirmed.append(rent)
    if confirmed:
        await session.flush()
    return confirmed


async def end_overlong_trips(session: AsyncSession, now: datetime) -> list[tuple[Trip, str]]:
    """End the trips longer than their network's ``trip_auto_lock`` (run periodically).

    Seed 002: "Maximum duration of a trip. The vehicle will be lock and the trip stopped if
    it exceed this value" (0: no maximum). Only a vehicle with its own lock, not docked, can
    be locked: the caller sends each returned device a Lock after its commit. The trip ends
    at ``started_at + trip_auto_lock``, where the vehicle stands (free-floating end).
    """
    _aware(now)
    rows = (
        await session.execute(
            select(Trip.id, Trip.started_at, Network.trip_auto_lock)
            .join(Network, Network.id == Trip.network_id)
            .join(Vehicle, Vehicle.id == Trip.vehicle_id)
            .where(
                Trip.status.in_(ACTIVE_TRIP_STATUSES),
                Network.trip_auto_lock > 0,
                Vehicle.device_id.is_not(None),
                Vehicle.spot_id.is_(None),
            )
        )
    ).all()
    ended: list[tuple[Trip, str]] = []
    for trip_id, started_at, max_s in rows:
        deadline = started_at + timedelta(seconds=max_s)
        if now < deadline:
            continue
        trip = await get_trip(session, trip_id, lock=True)
        if trip.status not in ACTIVE_TRIP_STATUSES:
            continue
        vehicle = await session.get_one(
            Vehicle, trip.vehicle_id, with_for_update={"key_share": True}
        )
        if vehicle.device_id is None or vehicle.spot_id is not None:
            continue
        vehicle.state = VehicleState.AVAILABLE
        await _finish(
            session,
            trip,
            vehicle,
            max(deadline, trip.on_hold_since or deadline),
            latitude=vehicle.latitude,
            longitude=vehicle.longitude,
            free_floating=True,
        )
        outbox.emit(session, ev.VEHICLE_UPDATED, vehicle.id, vehicle_payload(vehicle))
        log.info("event=trip_auto_locked trip_id=%s vehicle=%s", trip.id, vehicle.serial_number)
        ended.append((trip, vehicle.device_id))
    await session.flush()
    return ended


async def end_overdue_holds(session: AsyncSession, now: datetime) -> list[Trip]:
    """End trips on hold longer than their network's ``trip_max_pause`` (run periodically).

    Seeds: "If the user doesn't unlock the vehicle after this delay, the trip will be
    stopped and the vehicle will be available to everyone." The trip ends at
    ``on_hold_since + trip_max_pause``, where the vehicle stands (free-floating end).
    """
    _aware(now)
    rows = (
        await session.execute(
            select(Trip.id, Network.trip_max_pause)
            .join(Network, Network.id == Trip.network_id)
            .where(Trip.status == TripStatus.ON_HOLD, Trip.on_hold_since.is_not(None))
        )
    ).all()
    ended: list[Trip] = []
    for row in rows:
        trip_id: int = row[0]
        max_pause: int = row[1]
        trip = await get_trip(session, trip_id, lock=True)
        if trip.status != TripStatus.ON_HOLD or trip.on_hold_since is None:
            continue
        deadline = trip.on_hold_since + timedelta(seconds=max_pause)
        if now < deadline:
            continue
        vehicle = await session.get_one(
            Vehicle, trip.vehicle_id, with_for_update={"key_share": True}
        )
        vehicle.state = VehicleState.AVAILABLE
        await _finish(
            session,
            trip,
            vehicle,
            deadline,
            latitude=vehicle.latitude,
            longitude=vehicle.longitude,
            free_floating=vehicle.spot_id is None,
        )
        outbox.emit(session, ev.VEHICLE_UPDATED, vehicle.id, vehicle_payload(vehicle))
        ended.append(trip)
    await session.flush()
    return ended
