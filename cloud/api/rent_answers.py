"""The unlock flow in HTTP: request → :func:`kickstand.cloud.rent_flow.unlock` → answer.

Shared by ``POST /v1/rents`` and ``POST /v1/freefloat/unlock`` (the same flow, the same
Idempotency-Key space). The answer (201 with the rent, or the device's outcome as an error
carrying the rent) is stored under the key in the flow's own transactions — except "device
offline": the Unlock was never sent, so the key is released (and the refused rent lets go
of it) and a retry with the same key runs the flow again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi.responses import JSONResponse
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.api.deps import check_rider, verify_rider
from kickstand.cloud.api.errors import (
    DEVICE_OFFLINE_RETRY_AFTER_S,
    ApiError,
    device_offline,
    device_refused,
    device_timeout,
    to_api_error,
)
from kickstand.cloud.api.idempotency import Answer, Idempotency, request_hash
from kickstand.cloud.api.schemas import RentCreate, RentPublic
from kickstand.cloud.api.views import public_of, rent_public
from kickstand.cloud.config import Settings
from kickstand.cloud.errors import RiderSessionError
from kickstand.cloud.models import LockStatus, Rent, RentStatus, Spot, Trip, Vehicle, table_of
from kickstand.cloud.rent_flow import (
    REFUSALS,
    Unlocked,
    UnlockRequest,
    recover_unanswered,
    unlock,
)
from kickstand.cloud.rent_gateway import CommandGateway, UnlockOutcome, UnlockResult
from kickstand.cloud.security import AccessClaims

log = logging.getLogger("kickstand.cloud.api.rents")


def outcome_error(outcome: UnlockOutcome, rent: RentPublic, window_s: int) -> ApiError | None:
    """The error for a device's outcome other than "unlocked" (None for that one)."""
    data = rent.model_dump(mode="json")
    if outcome.result == UnlockResult.DEVICE_OFFLINE:
        return device_offline(
            "this station or vehicle is offline right now; pick another vehicle", data=data
        )
    if outcome.result == UnlockResult.REFUSED:
        return device_refused(
            f"the lock refused to open ({outcome.reason or 'no reason given'}); "
            "pick another vehicle",
            data=data,
        )
    if outcome.result == UnlockResult.TIMEOUT:
        return device_timeout(
            "the lock has not answered yet and may still open in the next few seconds: if it "
            f"opens, take the vehicle within {window_s} s (the ride starts only when it leaves "
            "the spot); otherwise try again in a moment",
            data=data,
        )
    return None


def refusal_error(exc: Exception) -> ApiError:
    """A refusal of the flow as sent (by the one table), to store under the key."""
    if isinstance(exc, REFUSALS):
        return to_api_error(exc)
    raise exc


_STATUS_OUTCOME = {
    RentStatus.REFUSED: UnlockResult.REFUSED,
    RentStatus.UNLOCK_TIMEOUT: UnlockResult.TIMEOUT,
    RentStatus.EXPIRED_NO_REMOVAL: UnlockResult.TIMEOUT,
}


async def answer_of(
    session: AsyncSession, rent: Rent, window_s: int, outcome: UnlockOutcome | None = None
) -> Answer:
    """HTTP status and body for a rent after its unlock attempt, read from the database."""
    trip = (await session.scalars(select(Trip).where(Trip.rent_id == rent.id))).first()
    return _decide(rent, await rent_public(session, rent, trip), window_s, outcome)


def _answer_opened(done: Unlocked, window_s: int) -> Answer:
    """The same answer for a rent this request opened and just updated from ``pending``
    (so no trip exists yet), from what the request already read: no query."""
    target, rent = done.opened.target, done.rent
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
    return _decide(rent, public_of(rent, vehicle, spot), window_s, done.outcome)


def _decide(rent: Rent, public: RentPublic, window_s: int, outcome: UnlockOutcome | None) -> Answer:
    if rent.status in (RentStatus.UNLOCKED, RentStatus.STARTED):
        return 201, {"code": 0, "data": public.model_dump(mode="json")}
    if outcome is None:
        outcome = UnlockOutcome(_STATUS_OUTCOME.get(rent.status, UnlockResult.TIMEOUT), rent.reason)
    error = outcome_error(outcome, public, window_s)
    if error is None:  # an "unlocked" outcome on a rent that is not: report it as refused
        error = outcome_error(
            UnlockOutcome.refused(rent.reason or rent.status.value), public, window_s
        )
    assert error is not None
    return error.status, error.body()


_RENTS = table_of(Rent)
#: A rent refused because its Unlock was never sent lets go of its Idempotency-Key (one rent
#: per rider and key: the retry opens its own).
_FORGET_RENT_KEY = (
    update(_RENTS)
    .where(_RENTS.c.id == bindparam("rent_id"), _RENTS.c.status == RentStatus.REFUSED)
    .values(idempotency_key=None)
)


def _not_sent(done: Unlocked) -> bool:
    """Nothing happened under the key: the device was offline, the command never left."""
    return (
        done.outcome.result == UnlockResult.DEVICE_OFFLINE
        and done.rent.status == RentStatus.REFUSED
    )


@dataclass
class _KeyRecorder:
    """The flow's writes for an Idempotency-Key: claim, stored refusal, stored answer."""

    idem: Idempotency
    claims: AccessClaims
    request_hash: str
    window_s: int
    key_id: int | None = None
    answer: Answer | None = None

    async def claim(self, session: AsyncSession) -> bool:
        self.key_id = await self.idem.claim(session, self.request_hash, datetime.now(UTC))
        if self.key_id is None:
            # The claim also fails when the account is gone: check before replaying.
            await verify_rider(session, self.claims)
            await session.rollback()
        return self.key_id is not None

    async def refused(self, session: AsyncSession, exc: Exception) -> None:
        assert self.key_id is not None
        err = refusal_error(exc)
        await self.idem.store(session, self.key_id, err.status, err.body())

    async def answered(self, session: AsyncSession, done: Unlocked) -> None:
        assert self.key_id is not None
        if done.rent.status == RentStatus.STARTED:  # the removal beat the answer: read the trip
            self.answer = await answer_of(session, done.rent, self.window_s, done.outcome)
        else:
            self.answer = _answer_opened(done, self.window_s)
        if _not_sent(done):  # a 503 "try again": the retry with this key runs again
            await self.idem.release(session, self.key_id)
            await session.execute(_FORGET_RENT_KEY, {"rent_id": done.rent.id})
        else:
            await self.idem.store(session, self.key_id, *self.answer)


async def unlock_response(
    body: RentCreate,
    claims: AccessClaims,
    idem: Idempotency,
    settings: Settings,
    gateway: CommandGateway,
) -> JSONResponse:
    """Open a rent for ``body`` and answer as ``POST /v1/rents`` does (or replay)."""
    window = settings.RENT_UNLOCK_WINDOW_S
    recorder = _KeyRecorder(idem, claims, request_hash(body), window)
    request = UnlockRequest(
        user_id=claims.user_id,
        token_generation=claims.generation,
        spot_id=body.spot_id,
        vehicle_id=body.vehicle_id,
        idempotency_key=idem.key,
    )
    try:
        done = await unlock(
            idem.maker,
            gateway,
            request,
            recorder,
            unlock_window_s=window,
            command_timeout_s=settings.COMMAND_TIMEOUT_S,
        )
    except RiderSessionError as exc:
        check_rider(claims, exc.is_active, exc.token_generation)
        raise AssertionError("a refused session passed the check") from exc
    except REFUSALS as exc:
        raise refusal_error(exc) from exc
    if done is None:
        wait_s = settings.COMMAND_TIMEOUT_S + 5

        async def recover(session: AsyncSession) -> Answer | None:
            rent = await recover_unanswered(session, claims.user_id, idem.key, int(wait_s))
            return await answer_of(session, rent, int(wait_s)) if rent is not None else None

        return await idem.replay(recorder.request_hash, wait_s, recover)
    assert recorder.answer is not None
    status, payload = recorder.answer
    log.info(
        "event=rent_answered rent_id=%s status=%s http=%s",
        done.rent.id,
        done.rent.status.value,
        status,
    )
    # The answer is a stored body without headers; a 503 (device offline) says when to try
    # again, as every 503 does.
    headers = {"Retry-After": str(DEVICE_OFFLINE_RETRY_AFTER_S)} if status == 503 else None
    return JSONResponse(payload, status_code=status, headers=headers)
