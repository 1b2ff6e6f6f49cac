"""Request and response schemas of field operations (seed 001/002 field names)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.api.schemas import TripDetail, TripPublic
from kickstand.cloud.operations.models import (
    Maintenance,
    MaintenanceSeverity,
    MaintenanceTarget,
    MaintenanceType,
    Report,
)
from kickstand.cloud.rent_gateway import UnlockResult
from kickstand.cloud.telemetry import PositionSample

# ── what a device answered ────────────────────────────────────────────────────────────

DeviceAnswer = Literal["done", "refused", "device-offline", "timeout"]

ANSWER: dict[UnlockResult, DeviceAnswer] = {
    UnlockResult.UNLOCKED: "done",
    UnlockResult.REFUSED: "refused",
    UnlockResult.DEVICE_OFFLINE: "device-offline",
    UnlockResult.TIMEOUT: "timeout",
}


class StationTold(BaseModel):
    """What the station answered its SetMaintenance."""

    #: ``done``, ``refused``, ``device-offline`` (told when it is back), ``timeout`` (it
    #: may still apply it).
    station_answer: DeviceAnswer
    station_reason: str | None = None


# ── maintenance types ─────────────────────────────────────────────────────────────────


class MaintenanceTypeCreate(BaseModel):
    key: Text = Field(min_length=1, max_length=50, description="Unique key of maintenance type.")
    target_type: MaintenanceTarget
    severity: MaintenanceSeverity


class MaintenanceTypePublic(BaseModel):
    type_key: str
    target_type: MaintenanceTarget
    severity: MaintenanceSeverity
    #: Localized name: the key (types carry no translations yet).
    type_name: str
    creation_date: datetime
    deletion_date: datetime | None

    @classmethod
    def of(cls, row: MaintenanceType) -> MaintenanceTypePublic:
        return cls(
            type_key=row.key,
            target_type=row.target_type,
            severity=row.severity,
            type_name=row.key,
            creation_date=row.created_at,
            deletion_date=row.deleted_at,
        )


# ── maintenances ──────────────────────────────────────────────────────────────────────


class MaintenanceCreate(BaseModel):
    maintenance_type: Text = Field(min_length=1, max_length=50)
    comment: Text | None = Field(default=None, min_length=1, max_length=1024)
    severity: MaintenanceSeverity | None = Field(
        default=None, description="Defaults to the severity of the maintenance type."
    )
    report_id: Id | None = None


class MaintenanceUpdate(BaseModel):
    comment: Text | None = Field(default=None, min_length=1, max_length=1024)
    severity: MaintenanceSeverity | None = None


class MaintenancePublic(BaseModel):
    maintenance_id: int
    network_id: int
    target_type: MaintenanceTarget
    station_id: int | None
    spot_id: int | None
    vehicle_id: int | None
    maintenance_type: str
    comment: str | None
    severity: MaintenanceSeverity
    start_date: datetime
    started_by: str | None
    started_by_uid: int | None
    #: Maintenances opened by the system from a device code (none yet).
    automatic_code_description: str | None = None
    report_id: int | None
    stop_date: datetime | None
    stopped_by: str | None
    stopped_by_uid: int | None

    @classmethod
    def of(cls, row: Maintenance, names: dict[int, str]) -> MaintenancePublic:
        return cls(
            maintenance_id=row.id,
            network_id=row.network_id,
            target_type=row.target_type,
            station_id=row.station_id,
            spot_id=row.spot_id,
            vehicle_id=row.vehicle_id,
            maintenance_type=row.type_key,
            comment=row.comment,
            severity=row.severity,
            start_date=row.started_at,
            started_by=names.get(row.started_by) if row.started_by else None,
            started_by_uid=row.started_by,
            report_id=row.report_id,
            stop_date=row.stopped_at,
            stopped_by=names.get(row.stopped_by) if row.stopped_by else None,
            stopped_by_uid=row.stopped_by,
        )


class MaintenanceChanged(BaseModel):
    """A maintenance opened or resolved, and what its target's device answered (None:
    nothing was sent — an ``info`` record, another record still holds it, a bike with no
    controller)."""

    maintenance: MaintenancePublic
    #: The target is out of service now.
    out_of_service: bool
    device_answer: DeviceAnswer | None = None
    device_reason: str | None = None


# ── reports ───────────────────────────────────────────────────────────────────────────


class ReportCreate(BaseModel):
    message: Text = Field(min_length=1, max_length=2000)
    vehicle_id: Id | None = None
    spot_id: Id | None = None
    trip_id: Id | None = None
    network_id: Id | None = None


class PicturePublic(BaseModel):
    """Seed 001's upload answer: ``url`` serves the picture."""

    id: str
    date: datetime
    url: str


class PictureContent(BaseModel):
    id: int
    content_type: str
    size: int
    date: datetime
    #: The picture's bytes, base64.
    data: str


class ReportPublic(BaseModel):
    """Seed 001's report (chat channel) item, and what it is about."""

    report_id: int
    message: str
    #: Who wrote the last message (the rider: chat messages are not kept yet).
    sender: str
    date: datetime
    report_date: datetime
    resolved: bool
    unread: bool = False
    allow_reopen: bool = False
    network_id: int
    user_id: int
    vehicle_id: int | None
    spot_id: int | None
    trip_id: int | None
    resolved_date: datetime | None
    pictures: list[PicturePublic]

    @classmethod
    def of(cls, row: Report, sender: str, pictures: list[PicturePublic]) -> ReportPublic:
        return cls(
            report_id=row.id,
            message=row.message,
            sender=sender,
            date=row.created_at,
            report_date=row.created_at,
            resolved=row.resolved_at is not None,
            network_id=row.network_id,
            user_id=row.user_id,
            vehicle_id=row.vehicle_id,
            spot_id=row.spot_id,
            trip_id=row.trip_id,
            resolved_date=row.resolved_at,
            pictures=pictures,
        )


class ReportDetail(ReportPublic):
    #: Maintenances opened from this report.
    maintenances: list[MaintenancePublic]
    resolved_by_uid: int | None


# ── trips (operators) ─────────────────────────────────────────────────────────────────


class BillingStopUpdate(BaseModel):
    date: AwareDatetime | None = Field(
        description="The date at which to stop the billing; null erases a previous stop."
    )
    reason: Text = Field(min_length=1, max_length=200, description="Why (kept with who).")


class BillingStopPublic(BaseModel):
    stop_date: datetime | None
    reason: str
    user_id: int
    date: datetime


class OperatorTripPublic(TripPublic):
    user_id: int | None
    email: str | None
    billing_time_stop: datetime | None


class TripPosition(BaseModel):
    date: datetime
    latitude: float
    longitude: float
    #: km/h
    speed: float | None
    #: degrees from north
    heading: float | None

    @classmethod
    def of(cls, sample: PositionSample) -> TripPosition:
        return cls(
            date=sample.time,
            latitude=sample.lat,
            longitude=sample.lon,
            speed=sample.speed,
            heading=sample.heading,
        )


class OperatorTripDetail(TripDetail):
    user_id: int | None
    email: str | None
    billing_stops: list[BillingStopPublic]
    #: The vehicle's positions during the trip (the first ``POSITIONS_IN_DETAIL``; the rest
    #: from ``GET /v1/dashboard/trips/{id}/positions?date_min=positions_next_date_min``).
    #: None when the telemetry store cannot answer now.
    positions: list[TripPosition] | None
    positions_next_date_min: datetime | None
