"""Tables of field operations: maintenance types and records, riders' reports and their
pictures, the audit of "stop trip billing"."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from kickstand.cloud.models import Base, StrEnum, _enum, utcnow


class MaintenanceTarget(StrEnum):
    """Seed ``MaintenanceTargetType``: what a maintenance type applies to."""

    STATION = "station"
    SPOT = "spot"
    VEHICLE = "vehicle"


class MaintenanceSeverity(StrEnum):
    """Seed ``MaintenanceSeverity``. ``info`` does not impact the service (the target stays
    in service); ``low`` and ``high`` take it out of service while the record is open."""

    INFO = "info"
    LOW = "low"
    HIGH = "high"


#: Severities that take the target out of service.
OUT_OF_SERVICE = (MaintenanceSeverity.LOW, MaintenanceSeverity.HIGH)


class MaintenanceType(Base):
    __tablename__ = "maintenance_types"

    #: Seed "Unique key of maintenance type" (1..50).
    key: Mapped[str] = mapped_column(String(50), primary_key=True)
    target_type: Mapped[MaintenanceTarget] = mapped_column(
        _enum(MaintenanceTarget, "maintenance_target")
    )
    severity: Mapped[MaintenanceSeverity] = mapped_column(
        _enum(MaintenanceSeverity, "maintenance_severity")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Deleted types stay for the records that name them; no new record may use one.
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class Maintenance(Base):
    """One maintenance of a station, a spot or a vehicle: open until someone resolves it."""

    __tablename__ = "maintenances"

    id: Mapped[int] = mapped_column(primary_key=True)
    type_key: Mapped[str] = mapped_column(ForeignKey("maintenance_types.key"))
    target_type: Mapped[MaintenanceTarget] = mapped_column(
        _enum(MaintenanceTarget, "maintenance_target")
    )
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    station_id: Mapped[int | None] = mapped_column(
        ForeignKey("stations.id"), default=None, index=True
    )
    spot_id: Mapped[int | None] = mapped_column(ForeignKey("spots.id"), default=None, index=True)
    vehicle_id: Mapped[int | None] = mapped_column(
        ForeignKey("vehicles.id"), default=None, index=True
    )
    severity: Mapped[MaintenanceSeverity] = mapped_column(
        _enum(MaintenanceSeverity, "maintenance_severity")
    )
    comment: Mapped[str | None] = mapped_column(Text, default=None)
    report_id: Mapped[int | None] = mapped_column(ForeignKey("reports.id"), default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)
    stopped_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)

    __table_args__ = (
        # The current maintenances of a network (the dashboard's listing).
        Index(
            "ix_maintenances_open",
            "network_id",
            "id",
            postgresql_where=text("stopped_at IS NULL"),
            sqlite_where=text("stopped_at IS NULL"),
        ),
    )


class Report(Base):
    """A rider's report of a problem (on a vehicle, a spot, or the network)."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    vehicle_id: Mapped[int | None] = mapped_column(ForeignKey("vehicles.id"), default=None)
    spot_id: Mapped[int | None] = mapped_column(ForeignKey("spots.id"), default=None)
    trip_id: Mapped[int | None] = mapped_column(ForeignKey("trips.id"), default=None)
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)


class ReportPicture(Base):
    """A picture a rider sent with a report (kept in the database: every API process
    serves it, the backups hold it)."""

    __tablename__ = "report_pictures"

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"), index=True)
    content_type: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TripBillingStop(Base):
    """Who set (or erased) a trip's billing stop, when and why (seed "Stop trip billing")."""

    __tablename__ = "trip_billing_stops"

    id: Mapped[int] = mapped_column(primary_key=True)
    trip_id: Mapped[int] = mapped_column(ForeignKey("trips.id"), index=True)
    #: The stop set; None: a previous stop erased.
    stop_at: Mapped[datetime | None] = mapped_column(default=None)
    reason: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
