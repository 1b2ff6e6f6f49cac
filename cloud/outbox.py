"""Write outbox records in the caller's transaction.

Topics follow the seed 000 catalogue (`resource.event`). Consumers (webhooks,
alerts, the MQTT fan-out) read rows with ``published_at IS NULL`` in id order,
act, then set ``published_at`` (and ``delivered_at`` once acknowledged).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy import ScalarResult, select
from sqlalchemy import insert as sa_insert
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.models import OutboxEvent, table_of

# Topics written by the cloud core (seed 000 names where the seed has one).
TRIP_CREATED = "trip.created"
TRIP_UPDATED = "trip.updated"
TRIP_TERMINATED = "trip.terminated"
DOCK_UPDATED = "dock.updated"  # a spot: vehicle docked / removed, lock status
VEHICLE_UPDATED = "vehicule.updated"  # seed spelling
PASS_ASSOCIATED = "pass.associated"
PASS_DISASSOCIATED = "pass.disassociated"
RENT_CREATED = "rent.created"  # ours: a rider asked to unlock
RENT_UPDATED = "rent.updated"  # ours: unlocked / refused / expired / started

TOPICS = frozenset(
    {
        TRIP_CREATED,
        TRIP_UPDATED,
        TRIP_TERMINATED,
        DOCK_UPDATED,
        VEHICLE_UPDATED,
        PASS_ASSOCIATED,
        PASS_DISASSOCIATED,
        RENT_CREATED,
        RENT_UPDATED,
    }
)


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
    session: AsyncSession,
    topic: str,
    resource_type: str,
    resource_id: int | str,
    payload: dict[str, Any],
) -> OutboxEvent:
    """Add an outbox record to the session (committed with the change it describes)."""
    event = OutboxEvent(**_row(topic, resource_type, resource_id, payload))
    session.add(event)
    return event


async def insert(
    session: AsyncSession,
    topic: str,
    resource_type: str,
    resource_id: int | str,
    payload: dict[str, Any],
) -> None:
    """Like :func:`emit`, as one INSERT now: for paths that write with Core statements and
    never flush the unit of work."""
    await session.execute(_INSERT, _row(topic, resource_type, resource_id, payload))


#: Built once: the compiled form and its cache key are reused.
_INSERT = sa_insert(table_of(OutboxEvent))


def _row(
    topic: str, resource_type: str, resource_id: int | str, payload: dict[str, Any]
) -> dict[str, Any]:
    return {
        "topic": topic,
        "resource_type": resource_type,
        "resource_id": str(resource_id),
        "payload": jsonable(payload),
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
