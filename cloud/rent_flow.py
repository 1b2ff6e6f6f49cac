"""The unlock flow: open a rent, command the device, record its answer (no HTTP here).

Two short transactions around the device's answer:

1. the caller's claim (its Idempotency-Key) as the first statement, then the rent opened
   (holds the vehicle; one winner per vehicle) with its outbox record and the command's
   audit row (so ingest can tie the device's events to the rent) — commit;
2. the command gateway, *outside* any transaction (no DB read: the presence comes from 1);
3. the outcome recorded (an UPDATE guarded on ``pending``) with its outbox record and
   whatever the caller writes with it (its stored answer) — commit.

``POST /v1/rents`` and the free-floating unlock both run it; the rules themselves are in
:mod:`kickstand.cloud.rents`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.commands.records import record_command, record_not_sent
from kickstand.cloud.errors import ConflictError, NotFoundError, RentRefusedError
from kickstand.cloud.models import Rent
from kickstand.cloud.rent_gateway import (
    CommandGateway,
    DevicePresence,
    IssuedCommand,
    UnlockOutcome,
    UnlockResult,
)
from kickstand.cloud.rents import OpenedRent, apply_unlock_outcome, open_rent

log = logging.getLogger("kickstand.cloud.rent_flow")

#: The refusals the caller may record (and answer) before they are raised.
REFUSALS = (RentRefusedError, ConflictError, NotFoundError)


@dataclass(frozen=True)
class UnlockRequest:
    user_id: int
    #: The token's generation: the rider's session is checked in the rent's locked read.
    token_generation: int | None
    spot_id: int | None
    vehicle_id: int | None
    idempotency_key: str


@dataclass(frozen=True)
class Unlocked:
    """The rent after the device's answer (or its absence)."""

    opened: OpenedRent
    rent: Rent
    outcome: UnlockOutcome


class FlowRecorder(Protocol):
    """What the caller writes inside the flow's transactions (e.g. its Idempotency-Key)."""

    async def claim(self, session: AsyncSession) -> bool:
        """First statement of transaction 1; False: a repeat, the flow stops (rolled back)."""

    async def refused(self, session: AsyncSession, exc: Exception) -> None:
        """A refusal (one of :data:`REFUSALS`) about to be committed, then raised."""

    async def answered(self, session: AsyncSession, done: Unlocked) -> None:
        """The outcome about to be committed."""


async def unlock(
    maker: async_sessionmaker[AsyncSession],
    gateway: CommandGateway,
    request: UnlockRequest,
    recorder: FlowRecorder,
    *,
    unlock_window_s: int,
    command_timeout_s: float,
) -> Unlocked | None:
    """Run the flow; None when the recorder's claim says this is a repeat.

    Raises RiderSessionError (nothing written) and the :data:`REFUSALS` (recorded and
    committed first)."""
    now = datetime.now(UTC)
    async with maker() as session:
        if not await recorder.claim(session):
            return None
        try:
            opened = await open_rent(
                session,
                request.user_id,
                spot_id=request.spot_id,
                vehicle_id=request.vehicle_id,
                idempotency_key=request.idempotency_key,
                now=now,
                unlock_window_s=unlock_window_s,
                token_generation=request.token_generation,
            )
            unlock = opened.unlock
            issued = gateway.unlock_command(unlock.device_id, unlock.spot, opened.rent.id)
            await record_command(session, issued)
        except REFUSALS as exc:
            await recorder.refused(session, exc)
            await session.commit()
            raise
        await session.commit()

    outcome = await _send(gateway, issued, opened.target.presence, command_timeout_s)

    async with maker() as session:
        rent = await apply_unlock_outcome(
            session,
            opened.rent.id,
            outcome,
            now=datetime.now(UTC),
            unlock_window_s=unlock_window_s,
            may_open_until=issued.expires_at,
        )
        if outcome.result == UnlockResult.DEVICE_OFFLINE:
            await record_not_sent(session, issued, outcome.reason)
        done = Unlocked(opened, rent, outcome)
        await recorder.answered(session, done)
        await session.commit()
    return done


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


async def recover_unanswered(
    session: AsyncSession, user_id: int, idempotency_key: str, unlock_window_s: int
) -> Rent | None:
    """A rent whose request died before the device's answer was recorded: treat it as an
    unlock that timed out (a removal still starts it). None: no rent was opened."""
    rent = (
        await session.scalars(
            select(Rent).where(Rent.user_id == user_id, Rent.idempotency_key == idempotency_key)
        )
    ).first()
    if rent is None:
        return None
    return await apply_unlock_outcome(
        session,
        rent.id,
        UnlockOutcome.timeout("the request was interrupted"),
        now=datetime.now(UTC),
        unlock_window_s=unlock_window_s,
    )
