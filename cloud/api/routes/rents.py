"""Rents: unlock a vehicle (spot or free-floating) with an Idempotency-Key; current rents.

Flow of ``POST /v1/rents``, two short transactions around the device's answer:

1. claim the Idempotency-Key, read the target (vehicle, spot, network limits, the commanded
   device's presence) and the rider's locked row with its counts, open the rent (holds the
   vehicle; one winner per vehicle) with its outbox record — commit;
   and the command's audit row (so ingest can tie the device's events to the rent);
2. the command gateway, *outside* any transaction (no DB read: the presence comes from 1);
3. record the outcome (an UPDATE guarded on ``pending``), its outbox record and the stored
   response — commit; the answer is built from what 1 read.

A retry with the same key gets the stored response (``Idempotent-Replayed: true``); a retry
while the first is still in flight waits for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from sqlalchemy import ColumnElement, bindparam, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.api.deps import (
    ClaimsDep,
    GatewayDep,
    SessionDep,
    SessionmakerDep,
    SettingsDep,
    check_rider,
    verify_rider,
)
from kickstand.cloud.api.errors import (
    ApiError,
    ErrorCode,
    not_found,
    rent_refused,
)
from kickstand.cloud.api.openapi import error_responses
from kickstand.cloud.api.schemas import Envelope, RentCreate, RentPublic
from kickstand.cloud.api.views import money_str
from kickstand.cloud.commands.records import record_command, record_not_sent
from kickstand.cloud.errors import (
    ConflictError,
    NotFoundError,
    RentRefusedError,
    RiderSessionError,
)
from kickstand.cloud.models import (
    ACTIVE_TRIP_STATUSES,
    IdempotencyKey,
    LockStatus,
    Rent,
    RentStatus,
    Spot,
    Trip,
    TripStatus,
    Vehicle,
    table_of,
)
from kickstand.cloud.rent_gateway import (
    CommandGateway,
    DevicePresence,
    IssuedCommand,
    UnlockOutcome,
    UnlockResult,
)
from kickstand.cloud.rents import OpenedRent, apply_unlock_outcome, open_rent
from kickstand.cloud.trips import STARTABLE_RENT_STATUSES, price_trip

router = APIRouter(prefix="/rents", tags=["rents"])
log = logging.getLogger("kickstand.cloud.api.rents")
OPERATION = "POST /v1/rents"
POLL_S = 0.05


def _this_key(user_id: int, key: str) -> tuple[ColumnElement[bool], ...]:
    """Where a rider's Idempotency-Key row for this operation is."""
    return (
        IdempotencyKey.user_id == user_id,
        IdempotencyKey.operation == OPERATION,
        IdempotencyKey.key == key,
    )


def _request_hash(body: RentCreate) -> str:
    return hashlib.sha256(json.dumps(body.model_dump(), sort_keys=True).encode()).hexdigest()


async def rent_public(
    session: AsyncSession, rent: Rent | None, trip: Trip | None = None
) -> RentPublic:
    vehicle_id = trip.vehicle_id if trip is not None else rent.vehicle_id if rent else None
    vehicle = await session.get_one(Vehicle, vehicle_id)
    spot_id = rent.spot_id if rent is not None else trip.start_spot_id if trip else None
    spot = await session.get(Spot, spot_id) if spot_id is not None else None
    cost = None
    if trip is not None:
        cost, _ = await price_trip(session, trip, datetime.now(UTC))
    return public_of(rent, vehicle, spot, trip, cost)


def public_of(
    rent: Rent | None,
    vehicle: Vehicle,
    spot: Spot | None,
    trip: Trip | None = None,
    cost: Decimal | None = None,
) -> RentPublic:
    assert rent is not None or trip is not None
    return RentPublic(
        rent_id=rent.id if rent is not None else None,
        status=trip.status.value if trip is not None else rent.status.value if rent else "",
        vehicle_id=vehicle.id,
        serial_number=vehicle.serial_number,
        vehicle_type=vehicle.vehicle_type.value,
        free_floating=spot is None,
        being_rented=trip is not None,
        spot_id=spot.id if spot is not None else None,
        displayed_number=spot.displayed_number if spot is not None else None,
        lock_status=spot.lock_status if spot is not None else None,
        trip_id=trip.id if trip is not None else None,
        time_start=trip.started_at if trip is not None else None,
        billing_time_stop=trip.billing_stopped_at if trip is not None else None,
        on_hold_since=trip.on_hold_since if trip is not None else None,
        on_hold_activated=trip is not None and trip.status == TripStatus.ON_HOLD,
        network_id=vehicle.network_id,
        battery_level=vehicle.battery_level,
        expires_at=rent.expires_at if rent is not None and trip is None else None,
        reason=rent.reason if rent is not None else None,
        cost_so_far=money_str(cost, trip.currency) if trip is not None else None,
        currency=trip.currency if trip is not None else None,
    )


async def _replay(
    maker: async_sessionmaker[AsyncSession],
    user_id: int,
    key: str,
    request_hash: str,
    wait_s: float,
) -> JSONResponse:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        async with maker() as session:
            row: IdempotencyKey | None = (
                await session.scalars(select(IdempotencyKey).where(*_this_key(user_id, key)))
            ).first()
        if row is None:  # the first attempt failed unexpectedly and released the key
            raise ApiError(
                409,
                ErrorCode.IDEMPOTENCY_IN_PROGRESS,
                "the first request with this Idempotency-Key failed; retry it",
                reason="idempotency-retry",
            )
        if row.request_hash != request_hash:
            raise ApiError(
                422,
                ErrorCode.IDEMPOTENCY_KEY_REUSED,
                "this Idempotency-Key was already used for a different request; use a new key",
                reason="idempotency-key-reused",
                errors=[
                    {"field": "Idempotency-Key", "message": "already used for another request"}
                ],
            )
        if row.response_status is not None and row.response_body is not None:
            return JSONResponse(
                row.response_body,
                status_code=row.response_status,
                headers={"Idempotent-Replayed": "true"},
            )
        if datetime.now(UTC) - row.created_at > timedelta(seconds=2 * wait_s):
            # The process that claimed the key died before answering: answer from the
            # rent it left behind (or release the key when it got no further).
            return await _recover(maker, user_id, key, wait_s)
        if loop.time() >= deadline:
            raise ApiError(
                409,
                ErrorCode.IDEMPOTENCY_IN_PROGRESS,
                "a request with this Idempotency-Key is still being processed; retry in a moment",
                reason="idempotency-in-progress",
            )
        await asyncio.sleep(POLL_S)


async def _recover(
    maker: async_sessionmaker[AsyncSession], user_id: int, key: str, window_s: float
) -> JSONResponse:
    async with maker() as session:
        rent = (
            await session.scalars(
                select(Rent).where(Rent.user_id == user_id, Rent.idempotency_key == key)
            )
        ).first()
        if rent is None:
            await session.execute(delete(IdempotencyKey).where(*_this_key(user_id, key)))
            await session.commit()
            raise ApiError(
                409,
                ErrorCode.IDEMPOTENCY_IN_PROGRESS,
                "the first request with this Idempotency-Key did not finish; retry it",
                reason="idempotency-retry",
            )
        # Never answered: treat as an unlock that timed out (a removal still starts it).
        rent = await apply_unlock_outcome(
            session,
            rent.id,
            UnlockOutcome.timeout("the request was interrupted"),
            now=datetime.now(UTC),
            unlock_window_s=int(window_s),
        )
        status, payload = await _answer(session, rent, int(window_s))
        key_id = (
            await session.scalars(select(IdempotencyKey.id).where(*_this_key(user_id, key)))
        ).one()
        await _store(session, key_id, status, payload)
        await session.commit()
    log.warning("event=idempotency_key_recovered rent_id=%s http=%s", rent.id, status)
    return JSONResponse(payload, status_code=status)


_STATUS_OUTCOME = {
    RentStatus.REFUSED: UnlockResult.REFUSED,
    RentStatus.UNLOCK_TIMEOUT: UnlockResult.TIMEOUT,
    RentStatus.EXPIRED_NO_REMOVAL: UnlockResult.TIMEOUT,
}


async def _answer(
    session: AsyncSession, rent: Rent, window_s: int, outcome: UnlockOutcome | None = None
) -> tuple[int, dict[str, Any]]:
    """HTTP status and body for a rent after its unlock attempt, read from the database."""
    trip = (await session.scalars(select(Trip).where(Trip.rent_id == rent.id))).first()
    return _decide(rent, await rent_public(session, rent, trip), window_s, outcome)


def _answer_opened(
    opened: OpenedRent, rent: Rent, window_s: int, outcome: UnlockOutcome
) -> tuple[int, dict[str, Any]]:
    """The same answer for a rent this request opened and just updated from ``pending``
    (so no trip exists yet), from what the request already read: no query."""
    target = opened.target
    vehicle = Vehicle(
        id=target.vehicle_id,
        serial_number=target.serial_number,
        vehicle_type=target.vehicle_type,
        network_id=target.network_id,
        battery_level=target.battery_level,
    )
    spot = None
    if rent.spot_id is not None:
        # The device just said the latch opened: fresher than the spot's last status.
        unlocked = rent.status == RentStatus.UNLOCKED
        lock_status = int(LockStatus.UNLOCKED) if unlocked else target.lock_status
        spot = Spot(id=rent.spot_id, displayed_number=target.spot_number, lock_status=lock_status)
    return _decide(rent, public_of(rent, vehicle, spot), window_s, outcome)


def _decide(
    rent: Rent, public: RentPublic, window_s: int, outcome: UnlockOutcome | None
) -> tuple[int, dict[str, Any]]:
    if rent.status in (RentStatus.UNLOCKED, RentStatus.STARTED):
        return 201, {"code": 0, "data": public.model_dump(mode="json")}
    if outcome is None:
        outcome = UnlockOutcome(_STATUS_OUTCOME.get(rent.status, UnlockResult.TIMEOUT), rent.reason)
    error = _outcome_error(outcome, public, window_s)
    if error is None:  # an "unlocked" outcome on a rent that is not: report it as refused
        error = _outcome_error(
            UnlockOutcome.refused(rent.reason or rent.status.value), public, window_s
        )
    assert error is not None
    return error.status, error.body()


_KEYS = table_of(IdempotencyKey)
#: Built once: the compiled forms and their cache keys are reused on every request.
_CLAIM_KEY = insert(_KEYS).returning(_KEYS.c.id)
_STORE_ANSWER = (
    update(_KEYS)
    .where(_KEYS.c.id == bindparam("key_id"))
    .values(
        response_status=bindparam("status"),
        response_body=bindparam("body", type_=_KEYS.c.response_body.type),
        completed_at=bindparam("at", type_=_KEYS.c.completed_at.type),
    )
)


async def _store(session: AsyncSession, key_id: int, status: int, body: dict[str, Any]) -> None:
    await session.execute(
        _STORE_ANSWER,
        {"key_id": key_id, "status": status, "body": body, "at": datetime.now(UTC)},
    )


async def _claim(
    session: AsyncSession, user_id: int, key: str, request_hash: str, now: datetime
) -> int | None:
    """Insert the Idempotency-Key as the transaction's first statement: a clash (a retry, or
    the same request running) aborts nothing else, and the caller replays."""
    values = {
        "user_id": user_id,
        "key": key,
        "operation": OPERATION,
        "request_hash": request_hash,
        "created_at": now,
        "response_status": None,
        "response_body": None,
        "completed_at": None,
    }
    try:
        return (await session.execute(_CLAIM_KEY, values)).scalar_one()
    except IntegrityError:
        await session.rollback()
        return None


async def _send(
    gateway: CommandGateway, issued: IssuedCommand, presence: DevicePresence, wait_s: float
) -> UnlockOutcome:
    try:
        # The gateway has its own timeout; this one only guards against a gateway that hangs.
        return await asyncio.wait_for(gateway.send_unlock(issued, presence=presence), wait_s + 2.0)
    except TimeoutError:
        log.error("event=gateway_hung rent_id=%s", issued.rent_id)
        return UnlockOutcome.timeout()
    except Exception as exc:  # a gateway bug must not leave the rent pending forever
        log.exception("event=gateway_error rent_id=%s error=%r", issued.rent_id, exc)
        return UnlockOutcome.timeout(f"command gateway error: {exc}")


def _outcome_error(outcome: UnlockOutcome, rent: RentPublic, window_s: int) -> ApiError | None:
    data = rent.model_dump(mode="json")
    if outcome.result == UnlockResult.DEVICE_OFFLINE:
        return ApiError(
            503,
            ErrorCode.DEVICE_OFFLINE,
            "this station or vehicle is offline right now; pick another vehicle",
            reason="device-offline",
            data=data,
        )
    if outcome.result == UnlockResult.REFUSED:
        return ApiError(
            409,
            ErrorCode.DEVICE_REFUSED,
            f"the lock refused to open ({outcome.reason or 'no reason given'}); "
            "pick another vehicle",
            reason="device-refused",
            data=data,
        )
    if outcome.result == UnlockResult.TIMEOUT:
        return ApiError(
            504,
            ErrorCode.DEVICE_TIMEOUT,
            "the lock has not answered yet and may still open in the next few seconds: if it "
            f"opens, take the vehicle within {window_s} s (the ride starts only when it leaves "
            "the spot); otherwise try again in a moment",
            reason="device-timeout",
            data=data,
        )
    return None


@router.post(
    "",
    status_code=201,
    response_model=Envelope[RentPublic],
    summary="Unlock (rent) a vehicle at a spot or a free-floating one",
    description="Requires an `Idempotency-Key` header: a retried request returns the first "
    "answer and never opens a second rent or trip. The trip starts (and billing with it) "
    "only when the vehicle leaves the spot.",
    responses=error_responses(402, 409, 504),
)
async def create_rent(
    body: RentCreate,
    claims: ClaimsDep,
    maker: SessionmakerDep,
    settings: SettingsDep,
    gateway: GatewayDep,
    idempotency_key: Annotated[
        str,
        Header(
            alias="Idempotency-Key",
            min_length=8,
            max_length=128,
            description="unique per unlock attempt",
        ),
    ],
) -> JSONResponse:
    user_id = claims.user_id
    request_hash = _request_hash(body)
    window = settings.RENT_UNLOCK_WINDOW_S
    now = datetime.now(UTC)
    # One transaction claims the key, checks the rider's session, and opens the rent (a
    # refusal is stored under the key instead); a concurrent request with the same key
    # waits on the key's unique index, then replays.
    async with maker() as session:
        key_id = await _claim(session, user_id, idempotency_key, request_hash, now)
        if key_id is None:
            # The claim also fails when the account is gone: check before replaying.
            await verify_rider(session, claims)
            await session.rollback()
        else:
            try:
                opened = await open_rent(
                    session,
                    user_id,
                    spot_id=body.spot_id,
                    vehicle_id=body.vehicle_id,
                    idempotency_key=idempotency_key,
                    now=now,
                    unlock_window_s=window,
                    token_generation=claims.generation,
                )
                unlock = opened.unlock
                issued = gateway.unlock_command(unlock.device_id, unlock.spot, opened.rent.id)
                await record_command(session, issued)
            except RiderSessionError as exc:
                await session.rollback()
                check_rider(claims, exc.is_active, exc.token_generation)
                raise AssertionError("a refused session passed the check") from exc
            except (RentRefusedError, ConflictError, NotFoundError) as exc:
                if isinstance(exc, RentRefusedError):
                    err = rent_refused(exc)
                elif isinstance(exc, ConflictError):
                    err = ApiError(409, ErrorCode.CONFLICT, str(exc), reason=exc.reason)
                else:
                    err = not_found(exc.resource, exc.key)
                await _store(session, key_id, err.status, err.body())
                await session.commit()
                raise err from exc
            await session.commit()
    if key_id is None:
        return await _replay(
            maker, user_id, idempotency_key, request_hash, settings.COMMAND_TIMEOUT_S + 5
        )

    rent_id = opened.rent.id
    target = opened.target
    outcome = await _send(gateway, issued, target.presence, settings.COMMAND_TIMEOUT_S)

    async with maker() as session:
        rent = await apply_unlock_outcome(
            session,
            rent_id,
            outcome,
            now=datetime.now(UTC),
            unlock_window_s=window,
            may_open_until=issued.expires_at,
        )
        if outcome.result == UnlockResult.DEVICE_OFFLINE:
            await record_not_sent(session, issued, outcome.reason)
        if rent.status == RentStatus.STARTED:  # the removal beat the answer: read the trip
            status, payload = await _answer(session, rent, window, outcome)
        else:
            status, payload = _answer_opened(opened, rent, window, outcome)
        await _store(session, key_id, status, payload)
        await session.commit()
    log.info("event=rent_answered rent_id=%s status=%s http=%s", rent_id, rent.status.value, status)
    return JSONResponse(payload, status_code=status)


@router.get(
    "", response_model=Envelope[list[RentPublic]], summary="My current rents and trips in progress"
)
async def current_rents(claims: ClaimsDep, session: SessionDep) -> Envelope[list[RentPublic]]:
    # Riders' apps poll this while a rent is open: three reads, nothing loaded twice.
    await verify_rider(session, claims)
    return Envelope(data=await rider_rents(session, claims.user_id))


async def rider_rents(session: AsyncSession, user_id: int) -> list[RentPublic]:
    """A rider's trips in progress, then their rents still waiting for the vehicle."""
    items: list[RentPublic] = []
    active_trips = (await session.scalars(_ACTIVE_TRIPS, {"user_id": user_id})).all()
    for trip in active_trips:
        rent = await session.get(Rent, trip.rent_id) if trip.rent_id is not None else None
        items.append(await rent_public(session, rent, trip))
    rows = await session.execute(_OPEN_RENTS, {"user_id": user_id, "now": datetime.now(UTC)})
    items.extend(public_of(rent, vehicle, spot) for rent, vehicle, spot in rows)
    return items


#: A rider's trips in progress.
_ACTIVE_TRIPS = (
    select(Trip)
    .where(Trip.user_id == bindparam("user_id"), Trip.status.in_(ACTIVE_TRIP_STATUSES))
    .order_by(Trip.id)
)
#: A rider's rents still waiting for the vehicle to leave, with their vehicle and spot.
_OPEN_RENTS = (
    select(Rent, Vehicle, Spot)
    .join(Vehicle, Vehicle.id == Rent.vehicle_id)
    .outerjoin(Spot, Spot.id == Rent.spot_id)
    .where(
        Rent.user_id == bindparam("user_id"),
        Rent.status.in_(STARTABLE_RENT_STATUSES),
        or_(Rent.expires_at.is_(None), Rent.expires_at >= bindparam("now")),
    )
    .order_by(Rent.id)
)
