"""Tables of network settings kept beside the network (migration 0012): access rules,
per vehicle type speed settings, notification settings and their targets, out-of-order
periods, cluster balancing and its discounts."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

import kickstand.cloud.access.models  # noqa: F401  (organizations, named by a foreign key)
from kickstand.cloud.dbtypes import Money
from kickstand.cloud.models import Base, VehicleType, _enum, utcnow


class NetworkAccessRule(Base):
    """Who may use a network (seed 002 access rules): at least one of the three is set."""

    __tablename__ = "network_access_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    network_id: Mapped[int] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), index=True
    )
    #: A PostgreSQL LIKE/SIMILAR pattern on the rider's email.
    email_pattern: Mapped[str | None] = mapped_column(String(255), default=None)
    organization_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("organizations.id", ondelete="CASCADE"), default=None
    )
    app_label_id: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NetworkSpeedSettings(Base):
    """Speed modes of one vehicle type on one network (km/h). Stored and served; sending
    them to vehicles (SetSpeedLimit) is the device commands' part."""

    __tablename__ = "network_speed_settings"

    network_id: Mapped[int] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), primary_key=True
    )
    vehicle_type: Mapped[VehicleType] = mapped_column(
        _enum(VehicleType, "speed_vehicle_type"), primary_key=True
    )
    default_low_speed: Mapped[int] = mapped_column(Integer)
    default_medium_speed: Mapped[int] = mapped_column(Integer)
    default_high_speed: Mapped[int] = mapped_column(Integer)
    min_battery_to_slow_down: Mapped[int | None] = mapped_column(Integer, default=None)
    battery_slow_down_speed: Mapped[int | None] = mapped_column(Integer, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class NetworkNotificationSetting(Base):
    """Which alerts are mailed to whom on a network (seed 002 notification settings)."""

    __tablename__ = "network_notification_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    network_id: Mapped[int] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), index=True
    )
    notification_type: Mapped[str] = mapped_column(String(32))
    alert_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    alert_severities: Mapped[list[str]] = mapped_column(JSON, default=list)
    check_interval: Mapped[int] = mapped_column(Integer, default=0)
    check_delay: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NetworkNotificationTarget(Base):
    """Who receives a notification setting's mails: a user, or an external email."""

    __tablename__ = "network_notification_targets"

    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[int] = mapped_column(
        ForeignKey("network_notification_settings.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), default=None
    )
    email: Mapped[str | None] = mapped_column(String(255), default=None)

    __table_args__ = (
        UniqueConstraint("notification_id", "user_id", name="uq_notification_target_user"),
        UniqueConstraint("notification_id", "email", name="uq_notification_target_email"),
        CheckConstraint("(user_id IS NULL) <> (email IS NULL)", name="one_target"),
    )


class NetworkOutOfOrder(Base):
    """A period the network is out of order (seed 002 "Set out of order": winter, other)."""

    __tablename__ = "network_out_of_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    network_id: Mapped[int] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(100), default=None)
    start_date: Mapped[datetime] = mapped_column()
    #: None: until further notice.
    end_date: Mapped[datetime | None] = mapped_column(default=None)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ClusterBalancing(Base):
    """A cluster that gives (donor) or takes (receiver) vehicles in balancing."""

    __tablename__ = "cluster_balancings"

    cluster_id: Mapped[int] = mapped_column(
        ForeignKey("clusters.id", ondelete="CASCADE"), primary_key=True
    )
    network_id: Mapped[int] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), index=True
    )
    target_count: Mapped[int] = mapped_column(Integer)
    balancing_type: Mapped[str] = mapped_column(String(16))


class BalancingDiscount(Base):
    """The discount of a trip from a donor cluster to a receiver cluster."""

    __tablename__ = "balancing_discounts"

    donor_cluster_id: Mapped[int] = mapped_column(
        ForeignKey("cluster_balancings.cluster_id", ondelete="CASCADE"), primary_key=True
    )
    receiver_cluster_id: Mapped[int] = mapped_column(
        ForeignKey("cluster_balancings.cluster_id", ondelete="CASCADE"), primary_key=True
    )
    network_id: Mapped[int] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), index=True
    )
    discount_amount: Mapped[Decimal] = mapped_column(Money())


class NetworkVehicleModel(Base):
    """A vehicle model's settings and guarantees on a network (seed 002; a null is "the
    network's default"). ``model_id`` is the seed's model identifier: no model catalogue
    exists yet to check it against."""

    __tablename__ = "network_vehicle_models"

    network_id: Mapped[int] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), primary_key=True
    )
    model_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    auto_light: Mapped[bool | None] = mapped_column(default=None)
    #: 1 ECO, 2 NORMAL, 3 SPORT: the speed mode the vehicle is held in (None: rider's choice).
    speed_mode: Mapped[int | None] = mapped_column(Integer, default=None)
    guarantee: Mapped[Decimal | None] = mapped_column(Money(), default=None)
    pre_auth: Mapped[Decimal | None] = mapped_column(Money(), default=None)
