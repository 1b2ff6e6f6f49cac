"""What the fleet-alert API answers (OpenAPI ``response_model``s; seed 002 / 003 names)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from kickstand.cloud.alerts.types import AlertSeverity, AlertState, AlertType


class FleetAlertPublic(BaseModel):
    """``core.alert_payload`` plus the names the dashboard shows (``service.describe``)."""

    id: int
    uuid: str
    alert_type: AlertType
    alert_severity: AlertSeverity
    state: AlertState
    network_id: int | None
    cluster_id: int | None
    station_id: int | None
    spot_id: int | None
    spot_number: int | None
    vehicle_id: int | None
    trip_id: int | None
    user_id: int | None
    device_id: str | None
    causality: str | None
    roles: list[str]
    message: str | None
    extra: dict[str, Any]
    occurrences: int
    creation_date: datetime
    modified: datetime | None
    last_seen_at: datetime | None
    resolved_at: datetime | None
    escalated_at: datetime | None
    silenced_at: datetime | None
    silenced_until: datetime | None
    stopped_at: datetime | None
    operator_id: int | None
    note: str | None
    cluster_name: str | None
    serial_number: str | None
    operator_email: str | None


class AlertTypePublic(BaseModel):
    alert_type: AlertType
    default_severity: AlertSeverity
    seed_003_name: str | None
