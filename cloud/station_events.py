"""A station's recent events (issue 19), newest first, from the outbox: it keeps every event
others heard of, keyed by resource — the station's own (``station.*``), its spots'
(``dock.updated``) and every event its mainboard reported (``device.event``, keyed by the
device id) — so the history reaches back past the page's opening, over the outbox's
retention: ``OUTBOX_RETENTION_DAYS`` (30 by default) after an event was published, the
webhook delivery worker deletes it (:func:`kickstand.cloud.outbox.prune`; an event still
pending delivery to an endpoint stays longer). Older events are not in the history.

Why the outbox and not another store: the events are already there, typed by the catalogue
and in the network's scope, written in the change's transaction; the telemetry store keeps
measurements, not events. Migration 0028 indexes the outbox by (resource_type,
resource_id, id): each resource of the station is read newest first by one index range
(``page_query``: after the key, page + 1 rows) and the few ranges (1 + spots + device) are
merged, so a page costs the same however large the outbox grows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.keyset import Keyset, page_query
from kickstand.cloud.models import OutboxEvent, Spot, Station

_COLUMNS = (
    OutboxEvent.id,
    OutboxEvent.topic,
    OutboxEvent.resource_type,
    OutboxEvent.resource_id,
    OutboxEvent.created_at,
    OutboxEvent.payload,
)


async def resources_of(session: AsyncSession, station: Station) -> list[tuple[str, str]]:
    """The outbox keys of a station's events: itself, each of its spots, its mainboard."""
    found = await session.scalars(select(Spot.id).where(Spot.station_id == station.id))
    spots: Sequence[int] = found.all()
    keys = [("station", str(station.id)), *(("spot", str(s)) for s in spots)]
    if station.device_id:
        keys.append(("device", station.device_id))
    return keys


async def station_events(
    session: AsyncSession, resources: Sequence[tuple[str, str]], keyset: Keyset
) -> Sequence[Row[Any]]:
    """The events of these resources, one keyset page (page + 1 rows, by outbox id)."""
    ranges = [
        page_query(
            select(*_COLUMNS).where(
                OutboxEvent.resource_type == kind, OutboxEvent.resource_id == key
            ),
            OutboxEvent.id,
            keyset,
        )
        .subquery()
        .select()  # SQLite takes a LIMIT inside a UNION only in a subquery
        for kind, key in resources
    ]
    merged = union_all(*ranges).subquery()
    stmt = select(*merged.c)
    order = merged.c.id.asc() if keyset.ascending else merged.c.id.desc()
    return (await session.execute(stmt.order_by(order).limit(keyset.page_size + 1))).all()
