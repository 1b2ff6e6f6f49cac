"""The cloud's tables (SQLAlchemy 2, async; PostgreSQL and SQLite alike).

Field names follow the seeds (`displayed_number`, `lock_status`, `serial_number`,
`vehicle_type`, `start_dow`/`start_hod`, `unlock_included_time`, …). Money is
:class:`~kickstand.cloud.dbtypes.Money` (exact Decimal), times are aware UTC.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from kickstand.cloud.dbtypes import Money, UTCDateTime


def utcnow() -> datetime:
    return datetime.now(UTC)


def table_of(model: type[Base]) -> Table:
    """A model's Table, for Core statements built once on hot paths (typed as a Table)."""
    return cast(Table, model.__table__)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), Decimal: Money(), dict[str, Any]: JSON}  # noqa: RUF012


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as value strings ("on-hold"): a plain VARCHAR + CHECK, portable and easy to extend.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class StrEnum(str, enum.Enum):
    def __str__(self) -> str:
        return str(self.value)


class VehicleType(StrEnum):
    BIKE = "bike"
    E_BIKE = "e-bike"
    KICK_SCOOTER = "kick-scooter"


class VehicleState(StrEnum):
    AVAILABLE = "available"
    RENTED = "rented"
    MAINTENANCE = "maintenance"
    LOST_OR_STOLEN = "lost-or-stolen"
    #: Seed 002 "Decommission vehicle": never rentable again, off the map, kept for history
    #: (why and when: ``kickstand.cloud.vehicles.models.VehicleDecommission``).
    DECOMMISSIONED = "decommissioned"


class SpotState(StrEnum):
    ACTIVE = "active"
    MAINTENANCE = "maintenance"
    OUT_OF_ORDER = "out-of-order"


class LockStatus(enum.IntEnum):
    """`lock_status` of a spot (seed 001 gives an integer): the protocol's LockState codes
    (SPEC §6), so the API and the wire read the same number (seed 001's docked sample: 0)."""

    LOCKED = 0
    UNLOCKED = 1
    JAMMED = 2


class MaintenanceSource(StrEnum):
    """Who put a spot in maintenance (SPEC §4.4): the operator owns it (the spot alone, or
    the whole station: ``STATION``); a device's own MAINTENANCE (set locally by a
    technician) lasts until the device reports otherwise."""

    OPERATOR = "operator"
    DEVICE = "device"
    #: The operator's maintenance of the whole station (SetMaintenance spot 0).
    STATION = "station"


class DeviceKind(StrEnum):
    STATION = "station"
    VEHICLE = "vehicle"


class TripStatus(StrEnum):
    RUNNING = "running"
    ON_HOLD = "on-hold"
    FINISHED = "finished"
    CANCELLED = "cancelled"


ACTIVE_TRIP_STATUSES = (TripStatus.RUNNING, TripStatus.ON_HOLD)


class RentStatus(StrEnum):
    PENDING = "pending"  # created, unlock command not answered yet
    UNLOCKED = "unlocked"  # lock opened, waiting for the vehicle to leave
    UNLOCK_TIMEOUT = "unlock-timeout"  # no answer in time: may still have opened
    REFUSED = "refused"  # device refused / offline: nothing happened
    EXPIRED_NO_REMOVAL = "expired-no-removal"  # opened, nobody took the vehicle: free
    STARTED = "started"  # the vehicle left: a trip exists


#: Rents that hold the vehicle (one per vehicle at a time).
ACTIVE_RENT_STATUSES = (RentStatus.PENDING, RentStatus.UNLOCKED)


class RentKind(StrEnum):
    APP_SPOT = "app-spot"
    APP_VEHICLE = "app-vehicle"
    BADGE = "badge"


class UserRole(StrEnum):
    RIDER = "rider"
    OPERATOR = "operator"
    ADMIN = "admin"


class OutOfBorderPolicy(StrEnum):
    NONE = "none"
    ALERT = "alert"
    REDUCE_SPEED = "reduce-speed"
    LOCK = "lock"


class WalletTransactionKind(StrEnum):
    TOP_UP = "top-up"
    TRIP = "trip"
    REFUND = "refund"
    ADJUSTMENT = "adjustment"


def _in(values: tuple[StrEnum, ...]) -> str:
    return "(" + ", ".join(f"'{v.value}'" for v in values) + ")"


class Network(Base):
    __tablename__ = "networks"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    currency: Mapped[str] = mapped_column(String(3))
    timezone: Mapped[str] = mapped_column(String(64))
    #: GeoJSON Polygon/MultiPolygon, coordinates [lng, lat].
    border: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    center_latitude: Mapped[float | None] = mapped_column(Float, default=None)
    center_longitude: Mapped[float | None] = mapped_column(Float, default=None)
    max_simultaneous_rented_vehicle: Mapped[int] = mapped_column(Integer, default=1)
    min_battery_to_rent: Mapped[int] = mapped_column(Integer, default=10)
    trip_on_hold: Mapped[bool] = mapped_column(Boolean, default=True)
    # Rent timings (seconds), names of the seeds' "Update rent timings".
    trip_too_long_notifications: Mapped[int] = mapped_column(Integer, default=3600)
    trip_too_long_notifications_frequency: Mapped[int] = mapped_column(Integer, default=900)
    vehicle_stolen: Mapped[int] = mapped_column(Integer, default=43200)
    trip_auto_pause: Mapped[int] = mapped_column(Integer, default=604800)
    trip_max_pause: Mapped[int] = mapped_column(Integer, default=604800)
    trip_auto_lock: Mapped[int] = mapped_column(Integer, default=604800)
    out_of_border_policy: Mapped[OutOfBorderPolicy] = mapped_column(
        _enum(OutOfBorderPolicy, "out_of_border_policy"), default=OutOfBorderPolicy.ALERT
    )
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Seed 002 network settings (migration 0012; rules in kickstand.cloud.networks.service).
    default_vat: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    country_id: Mapped[int | None] = mapped_column(Integer, default=None)
    third_party_id: Mapped[int | None] = mapped_column(Integer, default=None)
    app_label_id: Mapped[int | None] = mapped_column(Integer, default=None)
    default_vehicle_guarantee: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    #: -1: pre-authorization always; 0: never; n: after n finished trips, none.
    trip_to_skip_pre_auth_guarantee: Mapped[int] = mapped_column(Integer, default=0)
    first_purchase_required: Mapped[bool] = mapped_column(Boolean, default=False)
    credit_depletion_auto_lock: Mapped[bool] = mapped_column(Boolean, default=False)
    min_battery_to_auto_lock: Mapped[int | None] = mapped_column(Integer, default=None)
    sponsoring_reward: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    sponsored_reward: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    freefloat_to_station_discount_per_km: Mapped[Decimal | None] = mapped_column(
        Money(), default=None
    )
    freefloat_to_station_free_credits: Mapped[Decimal | None] = mapped_column(Money(), default=None)
    freefloat_to_receiver_station_free_credits: Mapped[Decimal | None] = mapped_column(
        Money(), default=None
    )
    freefloat_to_station_min_battery: Mapped[int | None] = mapped_column(Integer, default=None)
    #: "Delete a network": closed for good (hidden from listings, nothing can start on it).
    closed_at: Mapped[datetime | None] = mapped_column(default=None)

    clusters: Mapped[list[Cluster]] = relationship(back_populates="network")


class Cluster(Base):
    __tablename__ = "clusters"

    id: Mapped[int] = mapped_column(primary_key=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    name: Mapped[str] = mapped_column(String(50))
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    has_badge_reader: Mapped[bool] = mapped_column(Boolean, default=True)
    is_accessible: Mapped[bool] = mapped_column(Boolean, default=True)
    commissioning_date: Mapped[datetime | None] = mapped_column(default=None)
    #: Seed 002 "Update cluster location": an address, for information (not the pin).
    location: Mapped[str | None] = mapped_column(String(100), default=None)
    #: Seed 002 "Update cluster settings": an internal comment and the unlock distance (m).
    comment: Mapped[str | None] = mapped_column(String(500), default=None)
    max_unlock_distance: Mapped[int | None] = mapped_column(Integer, default=None)
    #: Seed 002 "Delete cluster" marks it decommissioned: off the map, kept for history.
    decommissioned_at: Mapped[datetime | None] = mapped_column(default=None)

    network: Mapped[Network] = relationship(back_populates="clusters")
    stations: Mapped[list[Station]] = relationship(back_populates="cluster")

    __table_args__ = (Index("ix_clusters_lat_lng", "latitude", "longitude"),)


class Station(Base):
    __tablename__ = "stations"

    id: Mapped[int] = mapped_column(primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"), index=True)
    #: The mainboard's device id (`devices.device_id`), e.g. "st-0001".
    device_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(50))
    #: Commissioned by an operator (kickstand.cloud.stations); None for the seed's stations.
    commissioned_at: Mapped[datetime | None] = mapped_column(default=None)
    #: Decommissioned: off the map, its device's births rejected; kept for history.
    decommissioned_at: Mapped[datetime | None] = mapped_column(default=None)

    cluster: Mapped[Cluster] = relationship(back_populates="stations")
    spots: Mapped[list[Spot]] = relationship(back_populates="station")


class Spot(Base):
    __tablename__ = "spots"

    id: Mapped[int] = mapped_column(primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id"), index=True)
    displayed_number: Mapped[int] = mapped_column(Integer)
    lock_status: Mapped[int] = mapped_column(Integer, default=int(LockStatus.LOCKED))
    state: Mapped[SpotState] = mapped_column(
        _enum(SpotState, "spot_state"), default=SpotState.ACTIVE
    )
    #: Device time of the last dock/removal applied (late events older than this are stale).
    status_at: Mapped[datetime | None] = mapped_column(default=None)
    #: Who holds the spot in maintenance (None while it is not).
    maintenance_source: Mapped[str | None] = mapped_column(String(16), default=None)

    station: Mapped[Station] = relationship(back_populates="spots")
    vehicle: Mapped[Vehicle | None] = relationship(back_populates="spot", uselist=False)

    __table_args__ = (
        UniqueConstraint("station_id", "displayed_number", name="uq_spots_station_number"),
    )


class Vehicle(Base):
    __tablename__ = "vehicles"

    id: Mapped[int] = mapped_column(primary_key=True)
    serial_number: Mapped[str] = mapped_column(String(10), unique=True)
    vehicle_type: Mapped[VehicleType] = mapped_column(_enum(VehicleType, "vehicle_type"))
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    state: Mapped[VehicleState] = mapped_column(
        _enum(VehicleState, "vehicle_state"), default=VehicleState.AVAILABLE
    )
    #: Internal battery (lock box) and e-assist battery, percent.
    battery_level: Mapped[int | None] = mapped_column(Integer, default=None)
    assist_battery_level: Mapped[int | None] = mapped_column(Integer, default=None)
    latitude: Mapped[float | None] = mapped_column(Float, default=None)
    longitude: Mapped[float | None] = mapped_column(Float, default=None)
    position_at: Mapped[datetime | None] = mapped_column(default=None)
    #: Spot it is docked in (None: free-floating or riding). One vehicle per spot.
    spot_id: Mapped[int | None] = mapped_column(ForeignKey("spots.id"), unique=True, default=None)
    #: Device time of the last dock (used to reconcile a late removal event).
    docked_at: Mapped[datetime | None] = mapped_column(default=None)
    #: The vehicle controller's device id, e.g. "vh-AB12345"; None for a dock-only bike.
    device_id: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    in_maintenance: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Seed 002 vehicle registration: the manufacturer's model (None: registered before).
    model: Mapped[str | None] = mapped_column(String(64), default=None)

    spot: Mapped[Spot | None] = relationship(back_populates="vehicle")

    __table_args__ = (
        CheckConstraint("length(serial_number) BETWEEN 6 AND 10", name="serial_length"),
    )


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    full_name: Mapped[str | None] = mapped_column(String(255), default=None)
    role: Mapped[UserRole] = mapped_column(_enum(UserRole, "user_role"), default=UserRole.RIDER)
    #: Permission list as in the seeds' login answer: [{perm_key, write, ou: {...}}].
    permissions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    wallet_balance: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Bumped by "log out everywhere": access tokens of older generations are refused.
    token_generation: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: None: signed up, email not confirmed yet (login answers seed 001's code 7).
    email_confirmed_at: Mapped[datetime | None] = mapped_column(default=None)
    #: When the rider accepted the terms of use (at sign-up).
    terms_accepted_at: Mapped[datetime | None] = mapped_column(default=None)
    #: ISO 639-1; the language of the mails sent to the rider.
    lang: Mapped[str] = mapped_column(String(2), default="en")


class Badge(Base):
    __tablename__ = "badges"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: NFC UID (hex). None while a link request waits for the badge to be presented.
    uid: Mapped[str | None] = mapped_column(String(32), unique=True, default=None)
    name: Mapped[str] = mapped_column(String(30))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"))
    #: Link request: the cluster (and optionally spot) where the rider presents the badge.
    link_cluster_id: Mapped[int | None] = mapped_column(ForeignKey("clusters.id"), default=None)
    link_spot_id: Mapped[int | None] = mapped_column(ForeignKey("spots.id"), default=None)
    link_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Set by an operator: the badge opens nothing, online or (once the stations have the
    #: new list) offline.
    blocked_at: Mapped[datetime | None] = mapped_column(default=None)


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[DeviceKind] = mapped_column(_enum(DeviceKind, "device_kind"))
    #: Credential material (e.g. MQTT password hash, public key PEM); never a clear password.
    credentials: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    firmware_version: Mapped[str | None] = mapped_column(String(64), default=None)
    hardware_version: Mapped[str | None] = mapped_column(String(64), default=None)
    config_version: Mapped[int | None] = mapped_column(Integer, default=None)
    boot_id: Mapped[str | None] = mapped_column(String(64), default=None)
    last_seq: Mapped[int | None] = mapped_column(Integer, default=None)
    last_seen_at: Mapped[datetime | None] = mapped_column(default=None)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The heartbeat interval its last accepted BootReply gave it (SPEC §4.3): liveness
    #: (:mod:`kickstand.cloud.liveness`) counts silence in these.
    heartbeat_s: Mapped[int | None] = mapped_column(Integer, default=None)


class PricingRule(Base):
    """A week window [start_dow start_hod, end_dow end_hod) in network local time; 0 = Sunday."""

    __tablename__ = "pricing_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    start_dow: Mapped[int] = mapped_column(Integer)
    start_hod: Mapped[str] = mapped_column(String(8))  # "HH:MM:SS", "24:00:00" allowed as end
    end_dow: Mapped[int] = mapped_column(Integer)
    end_hod: Mapped[str] = mapped_column(String(8))
    unlock_price: Mapped[Decimal] = mapped_column(Money())
    unlock_included_time: Mapped[int] = mapped_column(Integer, default=0)
    use_per_minute_price: Mapped[Decimal] = mapped_column(Money())
    on_hold_price: Mapped[Decimal] = mapped_column(Money())
    freefloat_lock_price: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    # Versions (migration 0012): an edit closes the rule and adds its successor, so a trip
    # is priced with the rules valid when it started (kickstand.cloud.trips.rule_book).
    #: None: since always (rules older than versioning).
    valid_from: Mapped[datetime | None] = mapped_column(default=None)
    #: None: in force now.
    valid_until: Mapped[datetime | None] = mapped_column(default=None)
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("pricing_rules.id"), default=None)

    __table_args__ = (
        CheckConstraint("start_dow BETWEEN 0 AND 6 AND end_dow BETWEEN 0 AND 6", name="dow_range"),
    )


class Rent(Base):
    """A rider's (or a badge's) request to take a vehicle, before a trip exists."""

    __tablename__ = "rents"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), index=True)
    spot_id: Mapped[int | None] = mapped_column(ForeignKey("spots.id"), default=None, index=True)
    badge_id: Mapped[int | None] = mapped_column(ForeignKey("badges.id"), default=None)
    kind: Mapped[RentKind] = mapped_column(_enum(RentKind, "rent_kind"))
    status: Mapped[RentStatus] = mapped_column(_enum(RentStatus, "rent_status"))
    reason: Mapped[str | None] = mapped_column(String(200), default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    unlocked_at: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (
        # One vehicle, one open rent (the loser of a race gets an IntegrityError).
        Index(
            "uq_rents_vehicle_active",
            "vehicle_id",
            unique=True,
            postgresql_where=text(f"status IN {_in(ACTIVE_RENT_STATUSES)}"),
            sqlite_where=text(f"status IN {_in(ACTIVE_RENT_STATUSES)}"),
        ),
        UniqueConstraint("user_id", "idempotency_key", name="uq_rents_user_idempotency_key"),
    )


class Trip(Base):
    __tablename__ = "trips"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), index=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    rent_id: Mapped[int | None] = mapped_column(ForeignKey("rents.id"), unique=True, default=None)
    badge_id: Mapped[int | None] = mapped_column(ForeignKey("badges.id"), default=None)
    status: Mapped[TripStatus] = mapped_column(_enum(TripStatus, "trip_status"))
    free_floating_start: Mapped[bool] = mapped_column(Boolean, default=False)
    free_floating_end: Mapped[bool] = mapped_column(Boolean, default=False)
    start_spot_id: Mapped[int | None] = mapped_column(ForeignKey("spots.id"), default=None)
    end_spot_id: Mapped[int | None] = mapped_column(ForeignKey("spots.id"), default=None)
    start_cluster_id: Mapped[int | None] = mapped_column(ForeignKey("clusters.id"), default=None)
    end_cluster_id: Mapped[int | None] = mapped_column(ForeignKey("clusters.id"), default=None)
    start_latitude: Mapped[float | None] = mapped_column(Float, default=None)
    start_longitude: Mapped[float | None] = mapped_column(Float, default=None)
    end_latitude: Mapped[float | None] = mapped_column(Float, default=None)
    end_longitude: Mapped[float | None] = mapped_column(Float, default=None)
    #: Device times.
    started_at: Mapped[datetime] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    on_hold_since: Mapped[datetime | None] = mapped_column(default=None)
    #: Closed on-hold periods: [{"start": iso, "end": iso}], for billing.
    hold_periods: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    #: "Stop trip billing": nothing is billed after this instant.
    billing_stopped_at: Mapped[datetime | None] = mapped_column(default=None)
    cost: Mapped[Decimal | None] = mapped_column(Money(), default=None)
    currency: Mapped[str] = mapped_column(String(3))
    #: Cost breakdown from the billing engine (JSON-safe strings).
    cost_detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), default=None)
    #: Bumped on every change; outbox payloads carry it so consumers can order updates.
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        # One vehicle is never in two trips.
        Index(
            "uq_trips_vehicle_active",
            "vehicle_id",
            unique=True,
            postgresql_where=text(f"status IN {_in(ACTIVE_TRIP_STATUSES)}"),
            sqlite_where=text(f"status IN {_in(ACTIVE_TRIP_STATUSES)}"),
        ),
        # A replayed removal event can never start the same trip twice.
        UniqueConstraint("vehicle_id", "started_at", name="uq_trips_vehicle_started_at"),
    )


class WalletTransaction(Base):
    __tablename__ = "wallet_transactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[WalletTransactionKind] = mapped_column(
        _enum(WalletTransactionKind, "wallet_transaction_kind")
    )
    #: Signed: a trip charge is negative.
    amount: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    trip_id: Mapped[int | None] = mapped_column(ForeignKey("trips.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    # A trip is charged once, whatever retries happen.
    __table_args__ = (UniqueConstraint("trip_id", "kind", name="uq_wallet_tx_trip_kind"),)


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    #: sha256 hex of the opaque token; the token itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: All rotations of one login share a family; reuse of a rotated token revokes the family.
    family_id: Mapped[str] = mapped_column(String(36), index=True)
    #: The rider's phone/app id given at login (``LoginDevice.id``): seed 002 "Get users
    #: using given device" looks logins up by it (migration 0015).
    device_id: Mapped[str | None] = mapped_column(String(128), default=None, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class OutboxEvent(Base):
    """Everything others must hear of, written in the same transaction as the change.

    `topic` uses the seed 000 catalogue (`trip.created`, `dock.updated`, …).
    Consumers (webhooks, alerts) poll unpublished rows in id order and mark them.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    topic: Mapped[str] = mapped_column(String(64), index=True)
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (
        Index("ix_outbox_unpublished", "published_at", "id"),
        # A resource's history newest first (a station page's events; migration 0028).
        Index("ix_outbox_resource", "resource_type", "resource_id", "id"),
    )


class IdempotencyKey(Base):
    """A client's Idempotency-Key and the answer it got (replayed on retry)."""

    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    key: Mapped[str] = mapped_column(String(128))
    #: "POST /v1/rents" — a key is scoped to one operation.
    operation: Mapped[str] = mapped_column(String(64))
    request_hash: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int | None] = mapped_column(Integer, default=None)
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (
        UniqueConstraint("user_id", "operation", "key", name="uq_idempotency_user_op_key"),
    )


# ── rider accounts (kickstand.cloud.accounts) ─────────────────────────────────────────


class AccountTokenPurpose(StrEnum):
    EMAIL_CONFIRM = "email-confirm"
    EMAIL_CHANGE = "email-change"
    PASSWORD_RESET = "password-reset"


class AccountToken(Base):
    """A token mailed to a rider: single use, expiring; only its sha256 is stored."""

    __tablename__ = "account_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    purpose: Mapped[AccountTokenPurpose] = mapped_column(
        _enum(AccountTokenPurpose, "account_token_purpose")
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The address an email change moves to (EMAIL_CHANGE only).
    new_email: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class UserConsent(Base):
    """One consent of a rider (seed 001 types: ``emails.networkstatus``, …)."""

    __tablename__ = "user_consents"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class LoginThrottle(Base):
    """Failed logins of one key (``account:<email>`` or ``address:<ip>``) in a window.

    In the database, not in memory: every API process counts into the same row.
    """

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    window_started_at: Mapped[datetime] = mapped_column()
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(default=None)


class MailMessage(Base):
    """A mail to send, written in the transaction that needs it; sent after the commit
    over SMTP and retried until sent (``kickstand.cloud.accounts.mail``)."""

    __tablename__ = "mail_outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    to_address: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: A sender holds the row until then (another process skips it meanwhile).
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)

    __table_args__ = (Index("ix_mail_outbox_pending", "sent_at", "next_attempt_at"),)
