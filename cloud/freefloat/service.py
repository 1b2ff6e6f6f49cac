"""Free-floating trips: find a vehicle by serial number or QR code, judge a return, end a trip.

Rules (see also :mod:`kickstand.cloud.trips`, which owns the trip rows):

* A free-floating trip starts at the vehicle's ``Unlocked`` event and ends at its
  ``Locked`` event — both DEVICE times, so a vehicle locked out of coverage ends its trip
  at the lock time when the event arrives later. The ingest's dedupe applies each event once.
* At the lock, :func:`~kickstand.cloud.geofence.return_verdict` at the vehicle's last known
  position decides:

  - ``normal`` (inside a virtual parking): the trip ends, no free-float lock price;
  - ``outside-parking``: the trip ends and the pricing rule's ``freefloat_lock_price`` is
    added to the bill;
  - ``outside-network``, border policy ``alert``: the trip ends (lock price added), and the
    alerts engine raises ``vehicle-return-outside`` for the finished trip;
  - ``outside-network``, policy ``refuse``: the return is refused — the trip keeps running
    (and billing with it), the rider is told through the outbox topic
    ``trip.return.refused`` (push) and ``GET /v1/freefloat/trips/{id}/return`` (app), and
    may unlock the vehicle again to bring it back inside (``POST /v1/freefloat/unlock``
    for a vehicle of their own running trip re-sends the unlock).

  A vehicle with no known position is judged ``outside-parking`` (nothing proves it is
  parked in a parking).
* The verdict is kept on the finished trip as ``cost_detail["return"]``.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import outbox, trips
from kickstand.cloud.errors import NoPricingRuleError, NotFoundError
from kickstand.cloud.events import catalogue as ev
from kickstand.cloud.events import payloads as p
from kickstand.cloud.freefloat.errors import VehicleCodeError
from kickstand.cloud.geofence import (
    CoordinateRangeError,
    ReturnKind,
    ReturnVerdict,
    return_verdict,
)
from kickstand.cloud.geofence.store import GeofenceCache
from kickstand.cloud.models import ACTIVE_TRIP_STATUSES, Network, Trip, TripStatus, Vehicle
from kickstand.cloud.rent_gateway import CommandGateway, UnlockOutcome

log = logging.getLogger("kickstand.cloud.freefloat.service")

#: Outbox topic: a free-float lock was refused (outside the network, policy refuse).
TRIP_RETURN_REFUSED = ev.TRIP_RETURN_REFUSED

SERIAL = re.compile(r"^[A-Za-z0-9]{6,10}$")
#: Query parameters a QR URL may carry the serial in.
QR_PARAMS = ("serial_number", "serial", "sn", "s", "v")

counters: Counter[str] = Counter()


# ── vehicle codes ─────────────────────────────────────────────────────────────────────


def normalise_serial(value: object, field: str = "serial_number") -> str:
    """A serial number as stored (6–10 alphanumerics, upper case)."""
    if not isinstance(value, str):
        raise VehicleCodeError(field, value, "must be a string")
    serial = value.strip().upper()
    if not SERIAL.match(serial):
        raise VehicleCodeError(field, value, "a serial number is 6 to 10 letters or digits")
    return serial


def serial_from_qr(code: object) -> str:
    """The serial number a vehicle's QR code encodes.

    Accepted: the bare serial (``LYF001``); a URL or URI carrying it as a query parameter
    (``https://kickstand.app/unlock?serial_number=LYF001``, ``sn=``, ``s=``, ``v=``) or as
    its last path segment (``https://kickstand.app/v/LYF001``, ``kickstand:vehicle/LYF001``).
    """
    field = "qr_code"
    if not isinstance(code, str) or not code.strip():
        raise VehicleCodeError(field, code, "must be a non-empty string")
    text = code.strip()
    if len(text) > 512:
        raise VehicleCodeError(field, code[:64], "too long for a vehicle QR code")
    if SERIAL.match(text):
        return text.upper()
    parts = urlsplit(text)
    query = parse_qs(parts.query)
    for name in QR_PARAMS:
        values = query.get(name)
        if values:
            return normalise_serial(values[0], field)
    path = (parts.path or "").rstrip("/")
    last = re.split(r"[/:]", path)[-1] if path else ""
    if last and SERIAL.match(last):
        return last.upper()
    raise VehicleCodeError(field, code, "this QR code does not name a vehicle")


async def find_vehicle(
    session: AsyncSession, *, serial_number: str | None = None, qr_code: str | None = None
) -> Vehicle:
    """The vehicle named by a serial number or a QR code (exactly one of them)."""
    if (serial_number is None) == (qr_code is None):
        raise VehicleCodeError("serial_number", None, "give serial_number or qr_code (one)")
    serial = (
        normalise_serial(serial_number) if serial_number is not None else serial_from_qr(qr_code)
    )
    vehicle = (
        await session.scalars(select(Vehicle).where(Vehicle.serial_number == serial))
    ).first()
    if vehicle is None:
        raise NotFoundError("vehicle", serial)
    return vehicle


async def active_trip(session: AsyncSession, vehicle_id: int) -> Trip | None:
    stmt = select(Trip).where(Trip.vehicle_id == vehicle_id, Trip.status.in_(ACTIVE_TRIP_STATUSES))
    trip: Trip | None = (await session.scalars(stmt)).first()
    return trip


async def reopen_own_lock(
    session: AsyncSession, gateway: CommandGateway, vehicle: Vehicle, trip: Trip
) -> UnlockOutcome:
    """Re-open the lock of the rider's own running trip (no new rent, no new trip), e.g.
    to bring back inside a vehicle whose return outside the network was refused."""
    assert vehicle.device_id is not None
    device_id, rent_id = vehicle.device_id, str(trip.rent_id or "")
    await session.commit()  # hold no transaction while waiting on the device
    return await gateway.unlock_vehicle(device_id, rent_id)


# ── return verdicts ───────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class ReturnCheck:
    """The verdict for ending a free-float trip where the vehicle is, with the price."""

    verdict: ReturnVerdict
    latitude: float | None
    longitude: float | None
    position_at: datetime | None
    #: The free-float lock price that the return adds (None: none / no rule in force).
    freefloat_lock_price: Decimal | None
    currency: str

    @property
    def refused(self) -> bool:
        return self.verdict.refused

    def as_json(self) -> dict[str, Any]:
        v = self.verdict
        return {
            "kind": v.kind.value,
            "refused": v.refused,
            "policy": v.policy.value if v.policy is not None else None,
            "virtual_parking_id": v.virtual_parking_id,
            "forbidden_zone_id": v.forbidden_zone_id,
            "free_float_fee_applies": v.free_float_fee_applies,
            "freefloat_lock_price": (
                str(self.freefloat_lock_price) if self.freefloat_lock_price is not None else None
            ),
            "currency": self.currency,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "position_at": self.position_at.isoformat() if self.position_at else None,
        }


async def return_check(
    session: AsyncSession,
    cache: GeofenceCache,
    vehicle: Vehicle,
    at: datetime | None = None,
    *,
    trip_started_at: datetime | None,
    parking_tolerance_m: float = 0.0,
) -> ReturnCheck:
    """Judge a return of ``vehicle`` at its last known position (price as at ``at``).

    The price is read in the rule versions valid at ``trip_started_at`` (the trip's start,
    as its billing does: an edit never reprices a running trip); None: no trip, today's."""
    at = at or datetime.now(UTC)
    network = await session.get_one(Network, vehicle.network_id)
    lat, lon = vehicle.latitude, vehicle.longitude
    verdict: ReturnVerdict
    if lat is None or lon is None:
        counters["return-without-position"] += 1
        verdict = ReturnVerdict(ReturnKind.OUTSIDE_PARKING)
    else:
        index = await cache.index(session, vehicle.network_id)
        try:
            verdict = return_verdict(index, lon, lat, parking_tolerance_m=parking_tolerance_m)
        except CoordinateRangeError:
            counters["return-bad-position"] += 1
            log.warning(
                "event=freefloat_bad_position vehicle=%s lat=%s lon=%s",
                vehicle.serial_number,
                lat,
                lon,
            )
            verdict = ReturnVerdict(ReturnKind.OUTSIDE_PARKING)
    price: Decimal | None = None
    if verdict.free_float_fee_applies:
        try:
            book = await trips.rule_book(session, network, trip_started_at)
            price = book.rule_at(at).freefloat_lock_price
        except NoPricingRuleError:
            price = None
    return ReturnCheck(verdict, lat, lon, vehicle.position_at, price, network.currency)


# ── the lock event ────────────────────────────────────────────────────────────────────


@dataclass
class LockOutcome:
    result: trips.TripEventResult
    check: ReturnCheck | None = None

    @property
    def refused(self) -> bool:
        return self.check is not None and self.check.refused


async def vehicle_locked(
    session: AsyncSession,
    cache: GeofenceCache,
    vehicle_device_id: str,
    at: datetime,
    *,
    hold: bool = False,
    parking_tolerance_m: float = 0.0,
) -> LockOutcome:
    """The vehicle's lock box closed at device time ``at``: end (or refuse to end) its trip.

    Runs in the caller's transaction (the ingest batch); idempotent through the trip
    engine (a replay finds the trip already ended at ``at``: ``duplicate``).
    """
    vehicle = (
        await session.scalars(select(Vehicle).where(Vehicle.device_id == vehicle_device_id))
    ).first()
    trip = await active_trip(session, vehicle.id) if vehicle is not None else None
    if (
        vehicle is None
        or trip is None
        or hold
        or trip.status == TripStatus.ON_HOLD
        or trip.started_at > at
    ):
        # Nothing for geofencing to judge (no trip ends here): the trip engine answers
        # (ignored, duplicate, hold; a lock while on hold keeps the hold).
        return LockOutcome(
            await trips.vehicle_locked_freefloat(session, vehicle_device_id, at, hold=hold)
        )
    check = await return_check(
        session,
        cache,
        vehicle,
        at,
        trip_started_at=trip.started_at,
        parking_tolerance_m=parking_tolerance_m,
    )
    if check.refused:
        counters["return-refused"] += 1
        payload = p.TripReturnRefused(
            **trips.trip_payload(trip, vehicle).model_dump(),
            locked_at=at,
            return_=check.as_json(),
            message="you cannot end your trip outside the network area: "
            "unlock the vehicle and bring it back inside",
        )
        outbox.emit(session, TRIP_RETURN_REFUSED, trip.id, payload)
        await session.flush()
        log.info(
            "event=freefloat_return_refused trip_id=%s vehicle=%s at=%s",
            trip.id,
            vehicle.serial_number,
            at.isoformat(),
        )
        return LockOutcome(trips.TripEventResult("updated", trip, "return-refused"), check)
    result = await trips.vehicle_locked_freefloat(
        session,
        vehicle_device_id,
        at,
        free_float_fee=check.verdict.free_float_fee_applies,
    )
    if result.action == "ended" and result.trip is not None:
        ended = result.trip
        ended.cost_detail = {**(ended.cost_detail or {}), "return": check.as_json()}
        counters[f"return-{check.verdict.kind.value}"] += 1
        if check.verdict.kind is ReturnKind.OUTSIDE_NETWORK:
            # Policy "alert": the alerts engine raises vehicle-return-outside for the
            # finished trip (the ingest calls AlertEngine.on_trip_terminated).
            log.warning(
                "event=freefloat_return_outside_network trip_id=%s vehicle=%s",
                ended.id,
                vehicle.serial_number,
            )
        await session.flush()
        log.info(
            "event=freefloat_trip_ended trip_id=%s return=%s cost=%s",
            ended.id,
            check.verdict.kind.value,
            ended.cost,
        )
    return LockOutcome(result, check)


def is_finished(trip: Trip) -> bool:
    return trip.status == TripStatus.FINISHED
