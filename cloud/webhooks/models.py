"""Webhook tables: endpoints, deliveries (one per outbox event and endpoint), attempts."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from kickstand.cloud.alerts.models import value_enum
from kickstand.cloud.models import Base, utcnow


class DeliveryStatus(str, enum.Enum):
    PENDING = "pending"  # waiting for its (next) attempt, or in flight under a lease
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the retry schedule is exhausted; replay it from the log

    def __str__(self) -> str:
        return str(self.value)


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(200), default=None)
    #: Topic names or wildcards ("trip.*", "*").
    topics: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: Only events of these networks (None: all networks, and events without a network).
    network_ids: Mapped[list[int] | None] = mapped_column(JSON, default=None)
    #: HMAC-SHA256 key of the `Kickstand-Signature` header ("whsec_…"). Shown at creation.
    secret: Mapped[str] = mapped_column(String(128))
    livemode: Mapped[bool] = mapped_column(Boolean, default=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Set when the endpoint was disabled for failing (None after re-enabling).
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)
    disabled_reason: Mapped[str | None] = mapped_column(String(300), default=None)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    failing_since: Mapped[datetime | None] = mapped_column(default=None)
    last_success_at: Mapped[datetime | None] = mapped_column(default=None)
    last_failure_at: Mapped[datetime | None] = mapped_column(default=None)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    """An event to deliver to one endpoint. Its attempts share `event_id`, each has its own id."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    #: The outbox record it comes from (no foreign key: the outbox may be pruned).
    outbox_id: Mapped[int | None] = mapped_column(Integer, default=None)
    #: Envelope `id`: the same for every endpoint, attempt and replay of one event.
    event_id: Mapped[str] = mapped_column(String(36))
    topic: Mapped[str] = mapped_column(String(64))
    #: "<resource_type>:<resource_id>": deliveries of one resource go out in order.
    resource_key: Mapped[str] = mapped_column(String(100))
    #: Envelope `created` (Unix seconds, when the event happened).
    event_created: Mapped[int] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[DeliveryStatus] = mapped_column(
        value_enum(DeliveryStatus, "webhook_delivery_status", 16), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: A worker holds it until then (a crashed worker's delivery is retried after it).
    leased_until: Mapped[datetime | None] = mapped_column(default=None)
    last_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    #: A replay requested from the delivery log points at the delivery it repeats.
    replay_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_chain", "endpoint_id", "resource_key", "id"),
        Index("ix_webhook_deliveries_endpoint_id", "endpoint_id", "id"),
        # The fan-out creates one delivery per outbox event and endpoint, never two.
        Index(
            "uq_webhook_deliveries_endpoint_outbox",
            "endpoint_id",
            "outbox_id",
            unique=True,
            postgresql_where=text("replay_of_id IS NULL AND outbox_id IS NOT NULL"),
            sqlite_where=text("replay_of_id IS NULL AND outbox_id IS NOT NULL"),
        ),
    )


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery (envelope `attemptId`), for the operator's log."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempt_id: Mapped[str] = mapped_column(String(36), unique=True)
    started_at: Mapped[datetime] = mapped_column()
    duration_ms: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    succeeded: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(String(500), default=None)
    response_excerpt: Mapped[str | None] = mapped_column(String(500), default=None)
