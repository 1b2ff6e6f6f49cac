"""Request and response schemas (seed 001 field names). Money is a decimal string."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kickstand.cloud.api.ids import Id, Text

T = TypeVar("T")


class Envelope(BaseModel, Generic[T]):
    code: int = 0
    data: T


class Page(BaseModel, Generic[T]):
    """A keyset page (:mod:`kickstand.cloud.keyset`)."""

    code: int = 0
    data: list[T]
    #: All items matching the filters, where the listing counts them (None: not counted).
    total: int | None = None
    #: Pass as ``last_primary_key`` to get the next page; None on the last page.
    next_primary_key: int | None = None


class OkEnvelope(BaseModel):
    code: int = 0


class HealthPublic(BaseModel):
    status: Literal["ok"]


# ── auth ──────────────────────────────────────────────────────────────────────────────


class LoginDevice(BaseModel):
    id: Text | None = Field(default=None, max_length=128)
    os: Text | None = Field(default=None, max_length=32)
    model: Text | None = Field(default=None, max_length=64)
    app_version: Text | None = Field(default=None, max_length=32)


class LoginRequest(BaseModel):
    email: Text = Field(min_length=3, max_length=255, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    password: Text = Field(min_length=8, max_length=255)
    scope: Literal["app", "dashboard"] = "app"
    device: LoginDevice | None = None
    app_label: Text | None = Field(default=None, min_length=1, max_length=20)


class PermissionOu(BaseModel):
    id: int
    networks: list[int] = []
    clusters: list[dict[str, int]] = []
    app_labels: list[int] = []
    organizations: list[int] = []


class Permission(BaseModel):
    perm_key: str
    write: bool
    #: None: a global grant (every network).
    ou: PermissionOu | None


class LoginData(BaseModel):
    token: str
    refresh_token: str
    user_id: int
    permissions: list[Permission]
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class RefreshData(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class LogoutRequest(BaseModel):
    refresh_token: Text = Field(min_length=10, max_length=200)


class CheckData(BaseModel):
    user_id: int
    permissions: list[Permission]


# ── networks, clusters, spots, vehicles ───────────────────────────────────────────────


class NetworkPublic(BaseModel):
    network_id: int
    name: str
    #: Border outer ring as [lng, lat] pairs (GeoJSON order).
    shape: list[list[float]]
    center_latitude: float | None
    center_longitude: float | None
    currency: str
    timezone: str
    max_simultaneous_rented_vehicle: int


class NetworkByDistance(NetworkPublic):
    #: Meters from the given position to the network's centre.
    distance: int


class NetworkDetail(BaseModel):
    network_id: int
    allow_trip_on_hold: bool
    max_simultaneous_rented_vehicle: int
    trip_too_long: int
    trip_auto_pause: int
    trip_max_pause: int
    trip_auto_lock: int


class PricingRulePublic(BaseModel):
    """A pricing rule (seeds' "Get pricing"): a week window in network local time, 0 = Sunday."""

    pricing_id: int
    network_id: int
    start_dow: int
    start_hod: str
    end_dow: int
    end_hod: str
    unlock_price: str
    unlock_included_time: int
    freefloat_lock_price: str
    use_per_minute_price: str
    on_hold_price: str
    currency: str


class BillingRule(BaseModel):
    """How the rules above price a trip (``kickstand.cloud.billing.BILLING_RULE``)."""

    timezone: Text = Field(description="The network's time zone: the windows' local time.")
    currency: str
    minor_unit: int = Field(description="Decimal places the total is rounded to.")
    window: Text = Field(description="Which rule is in force at an instant.")
    unlock: Text = Field(description="Unlock price and included time.")
    minutes: Text = Field(description="Per-minute prices, across windows and on hold.")
    rounding: Text = Field(description="Started minutes and the rounding of the total.")
    end: Text = Field(description="When billing ends; the free-floating lock price.")


class PricingEnvelope(BaseModel):
    """The seeds' "Get pricing" answer (``code``, ``data``: the rules), and beside it
    ``billing_rule``: how a trip is priced with them."""

    code: int = 0
    data: list[PricingRulePublic]
    billing_rule: BillingRule


class ExceptionalOutOfOrder(BaseModel):
    """Seeds 001/002: the network's out-of-order period on now (nothing can be rented)."""

    exceptional_out_of_order_id: int
    type: str
    reason: str | None = None
    custom_reason: str | None = None


class ClusterPublic(BaseModel):
    cluster_id: int
    latitude: float
    longitude: float
    name: str
    available_vehicles: int
    total_spots: int
    free_spots: int
    cluster_is_down: bool
    network_id: int
    description: str | None = None
    cluster_is_accessible: bool
    has_badge_reader: bool
    commissioning_date: datetime | None = None
    exceptional_out_of_order: ExceptionalOutOfOrder | None = None


class ClusterNearby(ClusterPublic):
    distance: int


#: The protocol's LockState codes (SPEC §4.4), the same number the station sends.
LOCK_STATUS_DOC = "0 locked, 1 open, 2 jammed (the protocol's LockState code)"


class SpotPublic(BaseModel):
    spot_id: int
    station_id: int
    displayed_number: int
    lock_status: int = Field(description=LOCK_STATUS_DOC)
    in_maintenance: bool
    is_accessible: bool
    vehicle_id: int | None


class ClusterVehicle(BaseModel):
    vehicle_id: int
    serial_number: str
    battery_level: int | None
    vehicle_type: str
    vehicle_online: bool
    spot_id: int | None
    station_id: int | None
    displayed_number: int | None
    in_maintenance: bool
    is_accessible: bool


class MapVehicle(BaseModel):
    vehicle_id: int
    serial_number: str
    latitude: float | None
    longitude: float | None
    connected: bool
    network_id: int
    battery_level: int | None
    vehicle_type: str
    state: str
    is_accessible: bool
    is_available: bool
    exceptional_out_of_order: ExceptionalOutOfOrder | None = None


# ── badges ────────────────────────────────────────────────────────────────────────────


class BadgeLinkRequest(BaseModel):
    cluster_id: Id
    name: Text = Field(min_length=1, max_length=30)
    spot_id: Id | None = None


class BadgeRename(BaseModel):
    name: Text = Field(min_length=1, max_length=30)


class BadgePublic(BaseModel):
    badge_id: int
    name: str
    network_id: int
    #: False while the link request waits for the badge at the station's reader.
    linked: bool
    #: The last 4 hex digits of the UID (the full UID is never sent back).
    uid_suffix: str | None
    link_expires_at: datetime | None


# ── rents and trips ───────────────────────────────────────────────────────────────────


class RentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spot_id: Id | None = None
    vehicle_id: Id | None = None

    @model_validator(mode="after")
    def _one_target(self) -> RentCreate:
        if self.spot_id is None and self.vehicle_id is None:
            raise ValueError("give spot_id (docked vehicle) or vehicle_id (free-floating)")
        return self


class RentPublic(BaseModel):
    """A current rent (seed 001 ``rents`` item) — a pending unlock or a trip in progress."""

    rent_id: int | None
    status: str
    vehicle_id: int
    serial_number: str
    vehicle_type: str
    free_floating: bool
    being_rented: bool
    spot_id: int | None = None
    displayed_number: int | None = None
    lock_status: int | None = Field(default=None, description=LOCK_STATUS_DOC)
    trip_id: int | None = None
    time_start: datetime | None = None
    billing_time_stop: datetime | None = None
    on_hold_since: datetime | None = None
    on_hold_activated: bool = False
    network_id: int
    battery_level: int | None = None
    expires_at: datetime | None = None
    reason: str | None = None
    cost_so_far: str | None = None
    currency: str | None = None


class TripPublic(BaseModel):
    trip_id: int
    state: str
    vehicle_id: int
    serial_number: str
    vehicle_type: str
    network_id: int
    start_date: datetime
    end_date: datetime | None
    duration: int
    cluster_start_id: int | None
    cluster_end_id: int | None
    free_floating_end: bool
    cost: str | None
    currency: str


class TripDetail(TripPublic):
    billing_time_stop: datetime | None
    on_hold_since: datetime | None
    hold_periods: list[dict[str, str]]
    start_latitude: float | None
    start_longitude: float | None
    end_latitude: float | None
    end_longitude: float | None
    #: Billing engine breakdown: unlock price, minutes per rule and kind, rounding.
    cost_detail: dict[str, Any] | None
    pricing_note: str
