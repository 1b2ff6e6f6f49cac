"""Replay a dead letter: its raw bytes through the ingest's own decode and apply path.

    result = await replay(sessionmaker, letter_id, allowed_networks=None, operator_id=7)

The message is decoded again (the codec may have been fixed), its dedupe key released
(a dead-lettered event keeps its key claimed, so a resend is a cheap duplicate) and it is
applied by a :class:`~kickstand.cloud.ingest.apply.BatchApplier` with the workers' rules.
Applied (or found applied meanwhile): the letter becomes ``replayed``. Failing again: the
letter stays ``open`` with one more attempt and the new error. A transient database error
is raised (the caller answers "try again"). What a worker would also do with the message
— publish a reply to the device, write telemetry points — is not done for a replay.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.alerts.engine import AlertEngine
from kickstand.cloud.ingest import deadletters
from kickstand.cloud.ingest.apply import BatchApplier
from kickstand.cloud.ingest.batch import Inbound, IngestStats
from kickstand.cloud.ingest.deadletters import PAYLOAD_MAX, DeadLetterReason, Letter
from kickstand.cloud.ingest.tables import DeadLetter, DeadLetterStatus, IngestedMessage
from kickstand.cloud.transient import is_transient
from kickstand.protocol import topics
from kickstand.protocol.errors import DecodeError, TopicError
from kickstand.protocol.topics import Direction
from kickstand.protocol.v1 import codec


class ReplayRefused(Exception):
    """The letter cannot be replayed as it stands (not open, or its payload was cut)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(slots=True)
class ReplayResult:
    replayed: bool
    letter: DeadLetter


async def replay(
    sessionmaker: async_sessionmaker[AsyncSession],
    letter_id: int,
    *,
    allowed_networks: Collection[int] | None,
    operator_id: int | None,
    alerts: AlertEngine | None = None,
) -> ReplayResult | None:
    """None: no such letter for this caller."""
    async with sessionmaker() as session:
        letter = await deadletters.get_letter(session, letter_id, allowed_networks)
    if letter is None:
        return None
    if letter.status != DeadLetterStatus.OPEN:
        raise ReplayRefused("not-open", f"dead letter {letter_id} is {letter.status}")
    if letter.payload_size > PAYLOAD_MAX:
        raise ReplayRefused("payload-cut", f"only {PAYLOAD_MAX} of its bytes were kept")
    stats = IngestStats()
    applier = BatchApplier(sessionmaker, stats, alerts=alerts, require_boot=True)
    failure = _decode(letter)
    if isinstance(failure, Letter):
        await applier.store_letters([failure])
        return ReplayResult(False, await _reload(sessionmaker, letter_id))
    inbound = failure
    if inbound.sequenced:
        async with sessionmaker() as session, session.begin():
            await session.execute(
                delete(IngestedMessage).where(
                    IngestedMessage.device_id == inbound.device_id,
                    IngestedMessage.boot_id == inbound.msg.stamp.boot_id,
                    IngestedMessage.seq == inbound.msg.stamp.seq,
                )
            )
    try:
        outcome = await applier.apply([inbound])
    except Exception as exc:
        if is_transient(exc):
            raise
        await applier.store_letters([inbound.letter(DeadLetterReason.APPLY_FAILED, exc)])
        return ReplayResult(False, await _reload(sessionmaker, letter_id))
    if outcome.dead or outcome.unsettled:
        return ReplayResult(False, await _reload(sessionmaker, letter_id))
    async with sessionmaker() as session, session.begin():
        row = await session.get(DeadLetter, letter_id, with_for_update=True)
        assert row is not None
        deadletters.resolve(row, DeadLetterStatus.REPLAYED, operator_id)
    return ReplayResult(True, await _reload(sessionmaker, letter_id))


def _decode(letter: DeadLetter) -> Inbound | Letter:
    """The letter's message, or the letter of why it still does not decode."""
    try:
        topic = topics.parse(letter.topic)
        if topic.direction is not Direction.UP:
            raise TopicError("not a device topic")
        msg = codec.decode_up(topic.channel, letter.payload)
    except (TopicError, DecodeError) as exc:
        return Letter.of_error(
            exc.code,
            exc.reason,
            topic=letter.topic,
            payload=letter.payload,
            device_id=letter.device_id,
            replay_of=letter.id,
        )
    return Inbound(
        topic.device_id,
        topic.channel,
        msg,
        raw=letter.payload,
        topic=letter.topic,
        replay_of=letter.id,
    )


async def _reload(sessionmaker: async_sessionmaker[AsyncSession], letter_id: int) -> DeadLetter:
    async with sessionmaker() as session:
        row = await session.get(DeadLetter, letter_id)
        assert row is not None
        return row


__all__ = ["ReplayRefused", "ReplayResult", "replay"]
