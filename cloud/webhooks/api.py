"""Webhooks for operators: topics, endpoints, the delivery log and replays.

Mounted by the app factory under ``/v1``: ``/v1/dashboard/webhooks…``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import SessionDep
from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.api.pagination import KeysetDep
from kickstand.cloud.api.schemas import Envelope, OkEnvelope, Page
from kickstand.cloud.keyset import cut
from kickstand.cloud.webhooks import service
from kickstand.cloud.webhooks.delivery import endpoint_payload
from kickstand.cloud.webhooks.errors import (
    DeliveryNotFoundError,
    EndpointNotFoundError,
)
from kickstand.cloud.webhooks.models import DeliveryStatus, WebhookEndpoint
from kickstand.cloud.webhooks.schemas import (
    DeliveryDetail,
    DeliveryPublic,
    EndpointPublic,
    EndpointWithSecret,
    TopicPublic,
)
from kickstand.cloud.webhooks.signing import SIGNATURE_HEADER
from kickstand.cloud.webhooks.targets import TargetGuard
from kickstand.cloud.webhooks.topics import catalogue

router = APIRouter(prefix="/dashboard/webhooks", tags=["webhooks"])

EndpointId = Annotated[Id, Path()]
# The one operator access check (kickstand.cloud.api.access).
WebhooksOperator = Annotated[OperatorContext, Depends(Operator("developer"))]


async def get_target_guard(request: Request) -> TargetGuard:
    """The app's guard (``create_app``: internal targets refused outside development; tests
    replace ``app.state.target_guard`` with one on a fake DNS)."""
    guard: TargetGuard = request.app.state.target_guard
    return guard


GuardDep = Annotated[TargetGuard, Depends(get_target_guard)]


class EndpointCreate(BaseModel):
    url: Text = Field(min_length=8, max_length=2000)
    topics: list[str] = Field(min_length=1, max_length=100)
    description: Text | None = Field(default=None, max_length=200)
    network_ids: list[Id] | None = None
    livemode: bool = True


class EndpointUpdate(BaseModel):
    url: Text | None = Field(default=None, min_length=8, max_length=2000)
    topics: list[str] | None = Field(default=None, min_length=1, max_length=100)
    description: Text | None = Field(default=None, max_length=200)
    network_ids: list[Id] | None = None
    #: true re-enables an endpoint that was disabled for failing.
    is_active: bool | None = None


def _visible(operator: OperatorContext, endpoint: WebhookEndpoint) -> bool:
    """Admins see every endpoint; an operator those scoped to networks it operates."""
    allowed = operator.networks
    if allowed is None:
        return True
    return endpoint.network_ids is not None and set(endpoint.network_ids) <= allowed


async def _endpoint(
    session: AsyncSession, operator: OperatorContext, endpoint_id: int
) -> WebhookEndpoint:
    endpoint = await service.get_endpoint(session, endpoint_id)
    if not _visible(operator, endpoint):
        raise EndpointNotFoundError(endpoint_id)
    return endpoint


def _scope(operator: OperatorContext, network_ids: list[int] | None) -> list[int] | None:
    """The networks an endpoint may be scoped to by this operator (default: all of its own)."""
    if operator.networks is None:
        return network_ids
    if network_ids is None:
        return sorted(operator.networks)
    operator.check(network_ids)
    return network_ids


async def _delivery_endpoint(
    session: AsyncSession, operator: OperatorContext, endpoint_id: int, delivery_id: int
) -> None:
    try:
        await _endpoint(session, operator, endpoint_id)
    except EndpointNotFoundError as exc:
        raise DeliveryNotFoundError(delivery_id) from exc


def _with_secret(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        **endpoint_payload(endpoint),
        "secret": endpoint.secret,
        "signature_header": SIGNATURE_HEADER,
    }


@router.get(
    "/topics",
    response_model=Envelope[list[TopicPublic]],
    summary="Topics an endpoint can subscribe to",
)
async def get_topics(_operator: WebhooksOperator) -> dict[str, Any]:
    return {
        "code": 0,
        "data": [
            {
                "topic": t.name,
                "resource": t.resource,
                "description": t.description,
                "scope": t.scope,
                "payload_schema": t.payload_schema,
            }
            for t in catalogue()
        ],
    }


@router.get(
    "/endpoints", response_model=Envelope[list[EndpointPublic]], summary="Webhook endpoints"
)
async def list_endpoints(operator: WebhooksOperator, session: SessionDep) -> dict[str, Any]:
    rows = await service.list_endpoints(session)
    return {"code": 0, "data": [endpoint_payload(e) for e in rows if _visible(operator, e)]}


@router.post(
    "/endpoints",
    response_model=Envelope[EndpointWithSecret],
    summary="Register an endpoint (the answer shows its secret)",
)
async def create_endpoint(
    operator: WebhooksOperator, session: SessionDep, guard: GuardDep, body: EndpointCreate
) -> dict[str, Any]:
    endpoint = await service.create_endpoint(
        session,
        url=body.url,
        topics=body.topics,
        description=body.description,
        network_ids=_scope(operator, body.network_ids),
        livemode=body.livemode,
        created_by_id=operator.user_id,
        guard=guard,
    )
    await session.commit()
    return {"code": 0, "data": _with_secret(endpoint)}


@router.get(
    "/endpoints/{endpoint_id}", response_model=Envelope[EndpointPublic], summary="One endpoint"
)
async def get_endpoint(
    operator: WebhooksOperator, session: SessionDep, endpoint_id: EndpointId
) -> dict[str, Any]:
    return {"code": 0, "data": endpoint_payload(await _endpoint(session, operator, endpoint_id))}


@router.patch(
    "/endpoints/{endpoint_id}",
    response_model=Envelope[EndpointPublic],
    summary="Change an endpoint, or re-enable it",
)
async def update_endpoint(
    operator: WebhooksOperator,
    session: SessionDep,
    guard: GuardDep,
    endpoint_id: EndpointId,
    body: EndpointUpdate,
) -> dict[str, Any]:
    await _endpoint(session, operator, endpoint_id)
    network_ids = _scope(operator, body.network_ids) if body.network_ids is not None else None
    endpoint = await service.update_endpoint(
        session,
        endpoint_id,
        url=body.url,
        topics=body.topics,
        description=body.description,
        network_ids=network_ids,
        is_active=body.is_active,
        guard=guard,
    )
    await session.commit()
    return {"code": 0, "data": endpoint_payload(endpoint)}


@router.post(
    "/endpoints/{endpoint_id}/rotate-secret",
    response_model=Envelope[EndpointWithSecret],
    summary="New signing secret",
)
async def rotate_secret(
    operator: WebhooksOperator, session: SessionDep, endpoint_id: EndpointId
) -> dict[str, Any]:
    await _endpoint(session, operator, endpoint_id)
    endpoint = await service.rotate_secret(session, endpoint_id)
    await session.commit()
    return {"code": 0, "data": _with_secret(endpoint)}


@router.delete(
    "/endpoints/{endpoint_id}",
    response_model=OkEnvelope,
    summary="Delete an endpoint and its log",
)
async def delete_endpoint(
    operator: WebhooksOperator, session: SessionDep, endpoint_id: EndpointId
) -> dict[str, Any]:
    await _endpoint(session, operator, endpoint_id)
    await service.delete_endpoint(session, endpoint_id)
    await session.commit()
    return {"code": 0}


@router.get(
    "/endpoints/{endpoint_id}/deliveries",
    response_model=Page[DeliveryPublic],
    summary="Delivery log (keyset pages, newest first by default)",
)
async def list_deliveries(
    operator: WebhooksOperator,
    session: SessionDep,
    endpoint_id: EndpointId,
    keyset: KeysetDep,
    status: DeliveryStatus | None = None,
    event: Annotated[Text | None, Query(max_length=64)] = None,
) -> Page[DeliveryPublic]:
    await _endpoint(session, operator, endpoint_id)
    rows = await service.list_deliveries(
        session, endpoint_id, status=status, topic=event, keyset=keyset
    )
    page, next_key = cut(rows, keyset, key=lambda d: d.id)
    return Page(
        data=[DeliveryPublic.model_validate(service.delivery_payload(d)) for d in page],
        next_primary_key=next_key,
    )


@router.get(
    "/deliveries/{delivery_id}",
    response_model=Envelope[DeliveryDetail],
    summary="One delivery with its attempts and data",
)
async def get_delivery(
    operator: WebhooksOperator, session: SessionDep, delivery_id: Annotated[Id, Path()]
) -> dict[str, Any]:
    delivery, attempts = await service.get_delivery(session, delivery_id)
    await _delivery_endpoint(session, operator, delivery.endpoint_id, delivery_id)
    return {"code": 0, "data": service.delivery_payload(delivery, attempts)}


@router.post(
    "/deliveries/{delivery_id}/replay",
    response_model=Envelope[DeliveryPublic],
    summary="Deliver the event again",
)
async def replay_delivery(
    operator: WebhooksOperator, session: SessionDep, delivery_id: Annotated[Id, Path()]
) -> dict[str, Any]:
    delivery, _ = await service.get_delivery(session, delivery_id)
    await _delivery_endpoint(session, operator, delivery.endpoint_id, delivery_id)
    replay = await service.replay_delivery(session, delivery_id)
    await session.commit()
    return {"code": 0, "data": service.delivery_payload(replay)}
