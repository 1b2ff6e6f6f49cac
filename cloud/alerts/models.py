"""The fleet alert table (on the cloud core's :class:`~kickstand.cloud.models.Base`)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from kickstand.cloud.alerts.types import OPEN_STATES, AlertSeverity, AlertState, AlertType
from kickstand.cloud.models import Base, utcnow


def value_enum(cls: type[enum.Enum], name: str, length: int = 48) -> Enum:
    """Stored as the value string: VARCHAR + CHECK, portable and easy to extend."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=length,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


OPEN_STATES_SQL = "state IN (" + ", ".join(f"'{s.value}'" for s in OPEN_STATES) + ")"


def new_uuid() -> str:
    return str(uuid.uuid4())


class FleetAlert(Base):
    """One alert per cause while open (new / escalated / silenced): recurrences are counted."""

    __tablename__ = "fleet_alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True, default=new_uuid)
    network_id: Mapped[int | None] = mapped_column(ForeignKey("networks.id"), default=None)
    alert_type: Mapped[AlertType] = mapped_column(value_enum(AlertType, "alert_type"))
    severity: Mapped[AlertSeverity] = mapped_column(value_enum(AlertSeverity, "alert_severity", 16))
    state: Mapped[AlertState] = mapped_column(
        value_enum(AlertState, "alert_state", 16), default=AlertState.NEW
    )
    #: "<type>|<subject>": the cause; at most one open alert per cause (partial unique index).
    cause_key: Mapped[str] = mapped_column(String(200))
    #: The device that reported it (station mainboard or vehicle controller), if any.
    device_id: Mapped[str | None] = mapped_column(String(64), default=None)
    cluster_id: Mapped[int | None] = mapped_column(ForeignKey("clusters.id"), default=None)
    station_id: Mapped[int | None] = mapped_column(ForeignKey("stations.id"), default=None)
    spot_id: Mapped[int | None] = mapped_column(ForeignKey("spots.id"), default=None)
    spot_number: Mapped[int | None] = mapped_column(Integer, default=None)
    vehicle_id: Mapped[int | None] = mapped_column(ForeignKey("vehicles.id"), default=None)
    trip_id: Mapped[int | None] = mapped_column(ForeignKey("trips.id"), default=None)
    #: Seed 003 `user`: the rider the alert relates to, if any.
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    message: Mapped[str] = mapped_column(String(300))
    #: Seed 003 `extra`: location (GeoJSON Point), state_of_charge, vehicle / lock references.
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    #: The operator who resolved / escalated / silenced it (seed 002 filters `user_id`, `email`).
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    escalated_at: Mapped[datetime | None] = mapped_column(default=None)
    silenced_at: Mapped[datetime | None] = mapped_column(default=None)
    silenced_until: Mapped[datetime | None] = mapped_column(default=None)
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)
    note: Mapped[str | None] = mapped_column(Text, default=None)

    __table_args__ = (
        Index(
            "uq_fleet_alerts_open_cause",
            "cause_key",
            unique=True,
            postgresql_where=text(OPEN_STATES_SQL),
            sqlite_where=text(OPEN_STATES_SQL),
        ),
        Index("ix_fleet_alerts_cause_key", "cause_key"),
        Index("ix_fleet_alerts_network_state", "network_id", "state"),
        Index("ix_fleet_alerts_vehicle_id", "vehicle_id"),
    )
