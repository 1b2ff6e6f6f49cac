"""What the webhook API answers (OpenAPI ``response_model``s; the envelope is the API's)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from kickstand.cloud.webhooks.models import DeliveryStatus


class TopicPublic(BaseModel):
    topic: str = Field(description="`resource.event`, as in the envelope's `event`.")
    resource: str
    description: str
    scope: str = Field(
        description="The payload field naming the event's network(s): `network_id` or "
        "`network_ids` (an endpoint's `network_ids` filter on it)."
    )
    payload_schema: dict[str, Any] = Field(
        description="JSON Schema of the payload (the envelope's `data`), from the event catalogue."
    )


class EndpointPublic(BaseModel):
    id: int
    url: str
    description: str | None
    topics: list[str]
    network_ids: list[int] | None = Field(description="None: every network (admins only).")
    livemode: bool
    is_active: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    consecutive_failures: int
    failing_since: datetime | None
    last_success_at: datetime | None
    last_failure_at: datetime | None
    created_at: datetime


class EndpointWithSecret(EndpointPublic):
    secret: str = Field(description="Signs every delivery; shown at creation and rotation.")
    signature_header: str


class DeliveryPublic(BaseModel):
    id: int
    endpoint_id: int
    event_id: str
    event: str
    resource: str
    created: int = Field(description="The event's time, Unix seconds (the envelope's).")
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    replay_of_id: int | None
    outbox_id: int | None
    created_at: datetime


class AttemptPublic(BaseModel):
    attempt_id: str
    started_at: datetime
    duration_ms: int
    status_code: int | None
    succeeded: bool
    error: str | None
    response_excerpt: str | None


class DeliveryDetail(DeliveryPublic):
    data: dict[str, Any]
    attempt_log: list[AttemptPublic]
