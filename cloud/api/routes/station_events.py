"""``GET /v1/dashboard/stations/{station_id}/events`` (issue 19): a station's recent events
from history — its own, its spots' and its mainboard's reports — newest first in keyset
pages (``page_size``, ``last_primary_key`` = the outbox id, ``primary_key_dir``), for an
operator holding ``stations`` on its network. The reading is
:mod:`kickstand.cloud.station_events`'; the console's station page shows the last ones."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel

from kickstand.cloud import station_events
from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import SessionDep
from kickstand.cloud.api.ids import Id
from kickstand.cloud.api.pagination import KeysetDep
from kickstand.cloud.api.schemas import Page
from kickstand.cloud.keyset import cut
from kickstand.cloud.stations import service

router = APIRouter(prefix="/dashboard/stations", tags=["stations"])
# The one operator access check (kickstand.cloud.api.access).
StationsOperator = Annotated[OperatorContext, Depends(Operator("stations"))]
StationId = Annotated[Id, Path(description="Identifier of the station.")]


class StationEventPublic(BaseModel):
    """One event of the catalogue (docs/webhook-topics.md) as the outbox keeps it."""

    #: The outbox id (``last_primary_key`` of the next page).
    event_id: int
    topic: str
    #: ``station``, ``spot`` (``dock.updated``) or ``device`` (``device.event``).
    resource_type: str
    resource_id: str
    created_at: datetime
    #: The topic's payload (its JSON Schema: ``GET /v1/dashboard/webhooks/topics``).
    data: dict[str, Any]


@router.get(
    "/{station_id}/events",
    response_model=Page[StationEventPublic],
    summary="A station's recent events (its own, its spots', its mainboard's)",
)
async def list_station_events(
    operator: StationsOperator, session: SessionDep, station_id: StationId, keyset: KeysetDep
) -> Page[StationEventPublic]:
    """The history covers the outbox's retention: events published more than
    `OUTBOX_RETENTION_DAYS` ago (30 by default) are deleted and no longer listed."""
    view = await service.station(session, station_id, operator.check)
    resources = await station_events.resources_of(session, view.station)
    rows = await station_events.station_events(session, resources, keyset)
    await session.commit()
    page, next_key = cut(rows, keyset, key=lambda r: int(r.id))
    return Page(
        data=[
            StationEventPublic(
                event_id=r.id, topic=r.topic, resource_type=r.resource_type,
                resource_id=r.resource_id, created_at=r.created_at, data=r.payload,
            )
            for r in page
        ],
        next_primary_key=next_key,
    )  # fmt: skip
