"""Write outbox records in the caller's transaction: the one way an event leaves the system.

Every event is a definition of the typed catalogue (:mod:`kickstand.cloud.events`) with
its payload model, which carries the event's network scope. Consumers (webhooks,
alerts, the MQTT fan-out) read rows with ``published_at IS NULL`` in id order,
act, then set ``published_at`` (and ``delivered_at`` once acknowledged).

Retention: a published record is deleted ``OUTBOX_RETENTION_DAYS`` after its publication
(:func:`prune`, in bounded batches, run by the webhook delivery worker), unless a
consumer still needs it; an unpublished one is never deleted, however old.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

from sqlalchemy import ScalarResult, Select, delete, select
from sqlalchemy import insert as sa_insert
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.events import EventPayload, EventType
from kickstand.cloud.models import OutboxEvent, table_of

P = TypeVar("P", bound=EventPayload)


def jsonable(value: Any) -> Any:
    """Payload values as JSON: datetimes ISO 8601, Decimals as strings (exact money)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def emit(
    session: AsyncSession, event: EventType[P], resource_id: int | str, payload: P
) -> OutboxEvent:
    """Add an outbox record to the session (committed with the change it describes)."""
    record = OutboxEvent(**_row(event, resource_id, payload))
    session.add(record)
    return record


async def insert(
    session: AsyncSession, event: EventType[P], resource_id: int | str, payload: P
) -> None:
    """Like :func:`emit`, as one INSERT now: for paths that write with Core statements and
    never flush the unit of work."""
    await session.execute(_INSERT, _row(event, resource_id, payload))


#: Built once: the compiled form and its cache key are reused.
_INSERT = sa_insert(table_of(OutboxEvent))


def _row(event: EventType[P], resource_id: int | str, payload: P) -> dict[str, Any]:
    # mypy checks the model against the definition; this catches a cast or an Any.
    if type(payload) is not event.payload:
        raise TypeError(
            f"{event.topic} carries {event.payload.__name__}, not {type(payload).__name__}"
        )
    return {
        "topic": event.topic,
        "resource_type": event.resource_type,
        "resource_id": str(resource_id),
        "payload": jsonable(payload.model_dump(by_alias=True)),
        "created_at": datetime.now(UTC),
    }


async def unpublished(session: AsyncSession, limit: int = 100) -> list[OutboxEvent]:
    rows: ScalarResult[OutboxEvent] = await session.scalars(
        select(OutboxEvent)
        .where(OutboxEvent.published_at.is_(None))
        .order_by(OutboxEvent.id)
        .limit(limit)
    )
    return list(rows)


async def prune(
    session: AsyncSession,
    *,
    published_before: datetime,
    limit: int,
    keep: Select[int | None] | None = None,
) -> int:
    """Delete up to ``limit`` records published before ``published_before``, oldest first,
    except the ids ``keep`` selects (what a consumer has not settled yet); returns the
    records deleted. One bounded batch in the caller's transaction: call again while it
    returns ``limit``.

    The batch is read by ``ix_outbox_unpublished`` (published_at, id), so it costs the
    batch, not the table. ``published_at`` is never before ``created_at``: every record
    younger than the retention stays.
    """
    batch = (
        select(OutboxEvent.id)
        .where(OutboxEvent.published_at.is_not(None))
        .where(OutboxEvent.published_at < published_before)
        .order_by(OutboxEvent.published_at, OutboxEvent.id)
        .limit(limit)
    )
    if keep is not None:
        # NOT IN over a set without NULLs: a consumer's keep set is small (what is in
        # flight), so PostgreSQL hashes it once (a hashed SubPlan) for the whole batch.
        kept = keep.where(keep.selected_columns[0].is_not(None))
        batch = batch.where(OutboxEvent.id.not_in(kept))
    result = await session.execute(
        delete(OutboxEvent)
        .where(OutboxEvent.id.in_(batch))
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
