"""Dead letters for operators: device messages ingest could not apply — list, detail,
replay (once the cause is fixed), discard.

Mounted under ``/v1``: ``/v1/dashboard/dead-letters…``. Operators see the letters of the
networks they work on; a letter of no network (a device unknown to the cloud, a topic
naming no device) only an admin sees.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.alerts.engine import AlertEngine
from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import SessionDep, SessionmakerDep
from kickstand.cloud.api.errors import conflict, not_found
from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.api.openapi import error_responses
from kickstand.cloud.api.pagination import KeysetDep
from kickstand.cloud.api.schemas import Envelope, Page
from kickstand.cloud.ingest import deadletters
from kickstand.cloud.ingest.deadletters import LetterFilters
from kickstand.cloud.ingest.replay import ReplayRefused, replay
from kickstand.cloud.ingest.tables import DeadLetter, DeadLetterStatus
from kickstand.cloud.keyset import cut

router = APIRouter(prefix="/dashboard/dead-letters", tags=["dead-letters"])
# The one operator access check (kickstand.cloud.api.access).
DeadLettersOperator = Annotated[OperatorContext, Depends(Operator("app.debug"))]

LetterId = Annotated[Id, Path()]


class DeadLetterPublic(BaseModel):
    """A device message ingest could not apply (``ingest/deadletters.describe``)."""

    id: int
    device_id: str | None
    network_id: int | None
    topic: str
    channel: str | None
    boot_id: int | None
    seq: int | None
    reason: str
    error_class: str
    error: str
    payload_size: int
    replayable: bool
    first_failed_at: datetime
    last_failed_at: datetime
    attempts: int
    status: str
    resolved_at: datetime | None
    resolved_by: int | None


class DeadLetterDetail(DeadLetterPublic):
    payload_hex: str = Field(description="The message as received (CBOR), hex.")


async def _letter(session: AsyncSession, operator: OperatorContext, letter_id: int) -> DeadLetter:
    """The letter if the operator sees it (another network's: not found)."""
    letter = await deadletters.get_letter(session, letter_id, operator.networks)
    if letter is None:
        raise not_found("dead letter", letter_id)
    return letter


@router.get(
    "",
    response_model=Page[DeadLetterPublic],
    summary="Dead letters (keyset pages, newest first by default)",
)
async def get_dead_letters(
    operator: DeadLettersOperator,
    session: SessionDep,
    keyset: KeysetDep,
    device_id: Annotated[Text | None, Query(min_length=1, max_length=64)] = None,
    status: Literal["open", "replayed", "discarded"] | None = None,
    reason: Annotated[Text | None, Query(min_length=1, max_length=48)] = None,
) -> Page[DeadLetterPublic]:
    filters = LetterFilters(device_id, status, reason, allowed_networks=operator.networks)
    rows = await deadletters.list_letters(session, filters, keyset)
    page, next_key = cut(rows, keyset, key=lambda r: r.id)
    return Page(
        data=[DeadLetterPublic.model_validate(deadletters.describe(r)) for r in page],
        next_primary_key=next_key,
    )


@router.get(
    "/{letter_id}",
    response_model=Envelope[DeadLetterDetail],
    summary="A dead letter, with its raw payload (hex)",
)
async def get_dead_letter(
    operator: DeadLettersOperator, session: SessionDep, letter_id: LetterId
) -> dict[str, Any]:
    letter = await _letter(session, operator, letter_id)
    return {"code": 0, "data": deadletters.describe(letter, payload=True)}


@router.post(
    "/{letter_id}/replay",
    response_model=Envelope[DeadLetterPublic],
    responses=error_responses(409),
    summary="Apply a dead letter again (after a fix)",
)
async def replay_dead_letter(
    operator: DeadLettersOperator, sessionmaker: SessionmakerDep, letter_id: LetterId
) -> dict[str, Any]:
    try:
        result = await replay(
            sessionmaker,
            letter_id,
            allowed_networks=operator.networks,
            operator_id=operator.user_id,
            alerts=AlertEngine(),
        )
    except ReplayRefused as exc:
        raise conflict(str(exc), reason=exc.reason) from exc
    if result is None:
        raise not_found("dead letter", letter_id)
    data = deadletters.describe(result.letter)
    if not result.replayed:
        raise conflict(
            f"the message still cannot be applied: {result.letter.error}",
            reason="replay-failed",
            data=jsonable_encoder(data),
        )
    return {"code": 0, "data": data}


@router.post(
    "/{letter_id}/discard",
    response_model=Envelope[DeadLetterPublic],
    responses=error_responses(409),
    summary="Discard a dead letter (nothing to apply)",
)
async def discard_dead_letter(
    operator: DeadLettersOperator, session: SessionDep, letter_id: LetterId
) -> dict[str, Any]:
    letter = await _letter(session, operator, letter_id)
    if letter.status != DeadLetterStatus.OPEN:
        message = f"dead letter {letter_id} is {letter.status}"
        raise conflict(message, reason="not-open")
    deadletters.resolve(letter, DeadLetterStatus.DISCARDED, operator.user_id)
    await session.commit()
    return {"code": 0, "data": deadletters.describe(letter)}
