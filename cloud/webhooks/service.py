"""Operator side of webhooks: endpoints, the delivery log, replays (caller's transaction)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import ScalarResult, select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import outbox
from kickstand.cloud.keyset import Keyset, page_query
from kickstand.cloud.webhooks.errors import (
    DeliveryNotFoundError,
    EndpointNotFoundError,
    InvalidEndpointError,
    TargetRefusedError,
)
from kickstand.cloud.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from kickstand.cloud.webhooks.signing import new_secret
from kickstand.cloud.webhooks.targets import TargetGuard
from kickstand.cloud.webhooks.topics import invalid_patterns

log = logging.getLogger("kickstand.cloud.webhooks.service")

MAX_TOPICS = 100


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidEndpointError("url must be an absolute http(s) URL", field="url")
    if len(url) > 2000:
        raise InvalidEndpointError("url is longer than 2000 characters", field="url")
    return url


async def check_target(url: str, guard: TargetGuard | None) -> str:
    """``check_url``, then the guard's address check (the API always gives its guard)."""
    check_url(url)
    if guard is not None:
        try:
            await guard.check_url(url)
        except TargetRefusedError as exc:
            raise InvalidEndpointError(str(exc), field="url") from exc
    return url


def check_topics(topics: Sequence[str]) -> list[str]:
    cleaned = sorted({t.strip() for t in topics if t.strip()})
    if not cleaned:
        raise InvalidEndpointError("subscribe to at least one topic (or '*')", field="topics")
    if len(cleaned) > MAX_TOPICS:
        raise InvalidEndpointError(f"at most {MAX_TOPICS} topics", field="topics")
    unknown = invalid_patterns(cleaned)
    if unknown:
        raise InvalidEndpointError(
            f"unknown topic(s) {', '.join(unknown)}: see GET /v1/dashboard/webhooks/topics",
            field="topics",
        )
    return cleaned


async def create_endpoint(
    session: AsyncSession,
    *,
    url: str,
    topics: Sequence[str],
    description: str | None = None,
    network_ids: Sequence[int] | None = None,
    livemode: bool = True,
    created_by_id: int | None = None,
    guard: TargetGuard | None = None,
) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(
        url=await check_target(url, guard),
        topics=check_topics(topics),
        description=description,
        network_ids=sorted(set(network_ids)) if network_ids is not None else None,
        secret=new_secret(),
        livemode=livemode,
        is_active=True,
        created_by_id=created_by_id,
        consecutive_failures=0,
    )
    session.add(endpoint)
    await session.flush()
    log.info("event=webhook_endpoint_created endpoint_id=%s url=%s", endpoint.id, endpoint.url)
    return endpoint


async def get_endpoint(session: AsyncSession, endpoint_id: int) -> WebhookEndpoint:
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise EndpointNotFoundError(endpoint_id)
    return endpoint


async def list_endpoints(session: AsyncSession) -> list[WebhookEndpoint]:
    rows: ScalarResult[WebhookEndpoint] = await session.scalars(
        select(WebhookEndpoint).order_by(WebhookEndpoint.id)
    )
    return list(rows)


async def update_endpoint(
    session: AsyncSession,
    endpoint_id: int,
    *,
    url: str | None = None,
    topics: Sequence[str] | None = None,
    description: str | None = None,
    network_ids: Sequence[int] | None = None,
    is_active: bool | None = None,
    guard: TargetGuard | None = None,
) -> WebhookEndpoint:
    endpoint = await get_endpoint(session, endpoint_id)
    if url is not None:
        endpoint.url = await check_target(url, guard)
    if topics is not None:
        endpoint.topics = check_topics(topics)
    if description is not None:
        endpoint.description = description
    if network_ids is not None:
        endpoint.network_ids = sorted(set(network_ids))
    if is_active is not None and is_active != endpoint.is_active:
        endpoint.is_active = is_active
        if is_active:
            # Re-enabled: its pending deliveries go out again, the failure count restarts.
            endpoint.disabled_at = None
            endpoint.disabled_reason = None
            endpoint.consecutive_failures = 0
            endpoint.failing_since = None
    await session.flush()
    return endpoint


async def rotate_secret(session: AsyncSession, endpoint_id: int) -> WebhookEndpoint:
    endpoint = await get_endpoint(session, endpoint_id)
    endpoint.secret = new_secret()
    await session.flush()
    return endpoint


async def delete_endpoint(session: AsyncSession, endpoint_id: int) -> None:
    endpoint = await get_endpoint(session, endpoint_id)
    await session.delete(endpoint)
    await session.flush()


async def list_deliveries(
    session: AsyncSession,
    endpoint_id: int,
    *,
    status: DeliveryStatus | None = None,
    topic: str | None = None,
    keyset: Keyset = Keyset(),  # noqa: B008  (frozen: one shared default is safe)
) -> Sequence[WebhookDelivery]:
    """The delivery log of an endpoint, one keyset page by id (newest first by default)."""
    await get_endpoint(session, endpoint_id)
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if topic is not None:
        query = query.where(WebhookDelivery.topic == topic)
    return (await session.scalars(page_query(query, WebhookDelivery.id, keyset))).all()


async def get_delivery(
    session: AsyncSession, delivery_id: int
) -> tuple[WebhookDelivery, list[WebhookAttempt]]:
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise DeliveryNotFoundError(delivery_id)
    attempts: ScalarResult[WebhookAttempt] = await session.scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id == delivery_id)
        .order_by(WebhookAttempt.id)
    )
    return delivery, list(attempts)


async def replay_delivery(
    session: AsyncSession, delivery_id: int, *, now: datetime | None = None
) -> WebhookDelivery:
    """Send the event again (same envelope `id`, new attempts): a new pending delivery."""
    now = now or datetime.now(UTC)
    original = await session.get(WebhookDelivery, delivery_id)
    if original is None:
        raise DeliveryNotFoundError(delivery_id)
    replay = WebhookDelivery(
        endpoint_id=original.endpoint_id,
        outbox_id=original.outbox_id,
        event_id=original.event_id,
        topic=original.topic,
        resource_key=original.resource_key,
        event_created=original.event_created,
        data=original.data,
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        replay_of_id=original.id,
        created_at=now,
    )
    session.add(replay)
    await session.flush()
    log.info("event=webhook_delivery_replayed delivery_id=%s replay_id=%s", original.id, replay.id)
    return replay


def delivery_payload(
    delivery: WebhookDelivery, attempts: Sequence[WebhookAttempt] | None = None
) -> dict[str, Any]:
    row: dict[str, Any] = outbox.jsonable(
        {
            "id": delivery.id,
            "endpoint_id": delivery.endpoint_id,
            "event_id": delivery.event_id,
            "event": delivery.topic,
            "resource": delivery.resource_key,
            "created": delivery.event_created,
            "status": delivery.status,
            "attempts": delivery.attempts,
            "next_attempt_at": delivery.next_attempt_at
            if delivery.status == DeliveryStatus.PENDING
            else None,
            "last_attempt_at": delivery.last_attempt_at,
            "last_status_code": delivery.last_status_code,
            "last_error": delivery.last_error,
            "delivered_at": delivery.delivered_at,
            "replay_of_id": delivery.replay_of_id,
            "outbox_id": delivery.outbox_id,
            "created_at": delivery.created_at,
        }
    )
    if attempts is not None:
        row["data"] = delivery.data
        row["attempt_log"] = [
            outbox.jsonable(
                {
                    "attempt_id": a.attempt_id,
                    "started_at": a.started_at,
                    "duration_ms": a.duration_ms,
                    "status_code": a.status_code,
                    "succeeded": a.succeeded,
                    "error": a.error,
                    "response_excerpt": a.response_excerpt,
                }
            )
            for a in attempts
        ]
    return row
