"""Request and answer shapes of seed 002 Networks and Pricing (field names of the seed)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal
from zoneinfo import available_timezones

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field

from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.api.schemas import PricingRulePublic
from kickstand.cloud.api.views import money_str
from kickstand.cloud.models import Network, PricingRule, VehicleType
from kickstand.cloud.networks.models import (
    NetworkAccessRule,
    NetworkNotificationSetting,
    NetworkNotificationTarget,
    NetworkOutOfOrder,
)

#: Seed 002's currency enum (ISO 4217 codes).
CURRENCIES = (
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD",
    "BDT", "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN",
    "BYR", "BZD", "CAD", "CDF", "CHF", "CLF", "CLP", "CNY", "COP", "CRC", "CUC", "CUP",
    "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP",
    "GBP", "GEL", "GGP", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HRK",
    "HTG", "HUF", "IDR", "ILS", "IMP", "INR", "IQD", "IRR", "ISK", "JEP", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP",
    "LKR", "LRD", "LSL", "LTL", "LVL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT",
    "MOP", "MRO", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK",
    "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON",
    "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLL", "SOS",
    "SRD", "STD", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD",
    "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VEF", "VND", "VUV", "WST", "XAF",
    "XAG", "XAU", "XCD", "XDR", "XOF", "XPF", "YER", "ZAR", "ZMK", "ZMW", "ZWL",
)  # fmt: skip
Currency = Literal[CURRENCIES]  # type: ignore[valid-type]
_TIMEZONES = frozenset(available_timezones())


def _timezone(value: str) -> str:
    if value not in _TIMEZONES:
        raise ValueError("not an IANA time zone (e.g. Europe/Paris)")
    return value


Timezone = Annotated[Text, Field(max_length=64), AfterValidator(_timezone)]
#: Money as NUMERIC(14, 4) stores it.
Amount = Annotated[Decimal, Field(ge=0, le=Decimal("9999999999"), max_digits=14, decimal_places=4)]
Hod = Annotated[
    str,
    Field(
        pattern=r"^((([0-1]?\d|2[0-3]):[0-5]\d:[0-5]\d)|24:00:00)$",
        description="HH:MM:SS in network local time; 24:00:00 ends a day.",
    ),
]
Dow = Annotated[int, Field(ge=0, le=6, description="Day of week, 0 is Sunday.")]
Seconds = Annotated[int, Field(ge=0, le=2**31 - 1)]


def _money(amount: Decimal | None, network: Network) -> str | None:
    return money_str(amount, network.currency)


# ── networks ──────────────────────────────────────────────────────────────────────────


class NetworkCreate(BaseModel):
    name: Text = Field(min_length=1, max_length=200)
    default_vat: Decimal = Field(ge=0, le=1, max_digits=5, decimal_places=4)
    country_id: Id
    currency: Currency
    default_vehicle_guarantee: Amount
    trip_to_skip_pre_auth_guarantee: int = Field(ge=-1, le=2**31 - 1)
    timezone: Timezone
    third_party_id: Id | None = None
    app_label_id: Id


class NetworkItem(BaseModel):
    """Seed 002 "Get networks": a network with its indicators."""

    network_id: int
    name: str
    currency: str
    timezone: str
    #: The network's owner (seed: the third party owning it), if any.
    third_party_id: int | None
    created_at: datetime
    total_stations: int
    total_vehicles: int
    total_trips: int


class NetworkShort(BaseModel):
    network_id: int
    name: str


class NetworkDetail(BaseModel):
    network_id: int
    name: str
    currency: str
    timezone: str
    default_vat: str
    country_id: int | None
    third_party_id: int | None
    app_label_id: int | None
    default_vehicle_guarantee: str
    trip_to_skip_pre_auth_guarantee: int
    is_public: bool
    center_latitude: float | None
    center_longitude: float | None
    sponsoring_reward: str
    sponsored_reward: str
    created_at: datetime
    #: Out-of-order periods not over yet (seed 002 "Set out of order").
    out_of_orders: list[OutOfOrderPublic] = []

    @classmethod
    def of(cls, n: Network) -> NetworkDetail:
        return cls(
            network_id=n.id,
            name=n.name,
            currency=n.currency,
            timezone=n.timezone,
            default_vat=str(n.default_vat.normalize()),
            country_id=n.country_id,
            third_party_id=n.third_party_id,
            app_label_id=n.app_label_id,
            default_vehicle_guarantee=_money(n.default_vehicle_guarantee, n) or "0",
            trip_to_skip_pre_auth_guarantee=n.trip_to_skip_pre_auth_guarantee,
            is_public=n.is_public,
            center_latitude=n.center_latitude,
            center_longitude=n.center_longitude,
            sponsoring_reward=_money(n.sponsoring_reward, n) or "0",
            sponsored_reward=_money(n.sponsored_reward, n) or "0",
            created_at=n.created_at,
        )


# ── rent settings and timings ─────────────────────────────────────────────────────────


class RentSettingsUpdate(BaseModel):
    default_vehicle_guarantee: Amount
    trip_to_skip_pre_auth_guarantee: int = Field(ge=-1, le=2**31 - 1)
    first_purchase_required: bool
    min_battery_to_rent: int = Field(ge=10, le=95)
    max_simultaneous_rented_vehicle: int = Field(ge=1, le=10)
    trip_on_hold: bool
    credit_depletion_auto_lock: bool
    min_battery_to_auto_lock: int | None = Field(ge=1, le=50)


class RentTimingsUpdate(BaseModel):
    """All values in seconds (seed 002 bounds)."""

    trip_too_long_notifications: int = Field(ge=3600, le=604800)
    trip_too_long_notifications_frequency: int = Field(ge=900, le=604800)
    vehicle_stolen: int = Field(ge=43200, le=2592000)
    trip_auto_pause: int = Field(ge=0, le=604800)
    trip_max_pause: int = Field(ge=0, le=604800)
    trip_auto_lock: int = Field(ge=0, le=604800)


class RentSettingsPublic(BaseModel):
    """Seed 002 "Get rent settings": settings and timings (seconds)."""

    network_id: int
    default_vehicle_guarantee: str
    trip_to_skip_pre_auth_guarantee: int
    first_purchase_required: bool
    min_battery_to_rent: int
    max_simultaneous_rented_vehicle: int
    trip_on_hold: bool
    credit_depletion_auto_lock: bool
    min_battery_to_auto_lock: int | None
    trip_too_long_notifications: int
    trip_too_long_notifications_frequency: int
    vehicle_stolen: int
    trip_auto_pause: int
    trip_max_pause: int
    trip_auto_lock: int

    @classmethod
    def of(cls, n: Network) -> RentSettingsPublic:
        return cls(
            network_id=n.id,
            default_vehicle_guarantee=_money(n.default_vehicle_guarantee, n) or "0",
            trip_to_skip_pre_auth_guarantee=n.trip_to_skip_pre_auth_guarantee,
            first_purchase_required=n.first_purchase_required,
            min_battery_to_rent=n.min_battery_to_rent,
            max_simultaneous_rented_vehicle=n.max_simultaneous_rented_vehicle,
            trip_on_hold=n.trip_on_hold,
            credit_depletion_auto_lock=n.credit_depletion_auto_lock,
            min_battery_to_auto_lock=n.min_battery_to_auto_lock,
            trip_too_long_notifications=n.trip_too_long_notifications,
            trip_too_long_notifications_frequency=n.trip_too_long_notifications_frequency,
            vehicle_stolen=n.vehicle_stolen,
            trip_auto_pause=n.trip_auto_pause,
            trip_max_pause=n.trip_max_pause,
            trip_auto_lock=n.trip_auto_lock,
        )


# ── pricing ───────────────────────────────────────────────────────────────────────────


class PricingRuleFields(BaseModel):
    start_dow: Dow
    start_hod: Hod
    end_dow: Dow
    end_hod: Hod
    unlock_price: Amount
    unlock_included_time: Seconds
    freefloat_lock_price: Amount
    use_per_minute_price: Amount
    on_hold_price: Amount
    network_id: Id


class PricingRuleAdmin(PricingRulePublic):
    """A rule version as operators see it: since when it is in force, what it replaced."""

    valid_from: datetime | None
    replaces_id: int | None

    @classmethod
    def of(cls, r: PricingRule, n: Network) -> PricingRuleAdmin:
        return cls(
            pricing_id=r.id,
            network_id=n.id,
            start_dow=r.start_dow,
            start_hod=r.start_hod,
            end_dow=r.end_dow,
            end_hod=r.end_hod,
            unlock_price=_money(r.unlock_price, n) or "0",
            unlock_included_time=r.unlock_included_time,
            freefloat_lock_price=_money(r.freefloat_lock_price, n) or "0",
            use_per_minute_price=str(r.use_per_minute_price.normalize()),
            on_hold_price=str(r.on_hold_price.normalize()),
            currency=n.currency,
            valid_from=r.valid_from,
            replaces_id=r.replaces_id,
        )


# ── rewards ───────────────────────────────────────────────────────────────────────────

Reward = Annotated[Decimal, Field(ge=0, le=99999999, max_digits=14, decimal_places=4)]


class SponsorshipUpdate(BaseModel):
    sponsoring_reward: Reward
    sponsored_reward: Reward


class FreefloatRewardUpdate(BaseModel):
    """Fields left out keep their value; null clears one (no reward of that kind)."""

    freefloat_to_station_discount_per_km: Reward | None = None
    freefloat_to_station_free_credits: Reward | None = None
    freefloat_to_receiver_station_free_credits: Reward | None = None
    freefloat_to_station_min_battery: int | None = Field(default=None, ge=0, le=100)


class FreefloatRewardPublic(BaseModel):
    network_id: int
    freefloat_to_station_discount_per_km: str | None
    freefloat_to_station_free_credits: str | None
    freefloat_to_receiver_station_free_credits: str | None
    freefloat_to_station_min_battery: int | None

    @classmethod
    def of(cls, n: Network) -> FreefloatRewardPublic:
        return cls(
            network_id=n.id,
            freefloat_to_station_discount_per_km=_money(n.freefloat_to_station_discount_per_km, n),
            freefloat_to_station_free_credits=_money(n.freefloat_to_station_free_credits, n),
            freefloat_to_receiver_station_free_credits=_money(
                n.freefloat_to_receiver_station_free_credits, n
            ),
            freefloat_to_station_min_battery=n.freefloat_to_station_min_battery,
        )


# ── access rules ──────────────────────────────────────────────────────────────────────

EmailPattern = Annotated[
    Text,
    Field(
        min_length=1,
        max_length=255,
        pattern=r"^[a-zA-Z0-9@._(){}\[\]|*+?%#\\-]+$",
        description="A PostgreSQL pattern on the email of who may use the network.",
    ),
]


class AccessRuleCreate(BaseModel):
    """At least one property."""

    email_pattern: EmailPattern | None = None
    organization: Id | None = None
    app_label: Id | None = None


class AccessRuleUpdate(BaseModel):
    """Every property given (null: unused); at least one not null."""

    email_pattern: EmailPattern | None
    organization: Id | None
    app_label: Id | None


class AccessRulePublic(BaseModel):
    rule_id: int
    network_id: int
    email_pattern: str | None
    organization: int | None
    app_label: int | None

    @classmethod
    def of(cls, r: NetworkAccessRule) -> AccessRulePublic:
        return cls(
            rule_id=r.id,
            network_id=r.network_id,
            email_pattern=r.email_pattern,
            organization=r.organization_id,
            app_label=r.app_label_id,
        )


# ── vehicle speed settings ────────────────────────────────────────────────────────────

Speed = Annotated[int, Field(ge=1, le=100, description="km/h")]


class SpeedSettingsForm(BaseModel):
    """Seed 002's form, per vehicle type (default: kick scooters, which have speed modes)."""

    vehicle_type: VehicleType = VehicleType.KICK_SCOOTER
    default_low_speed: Speed
    default_medium_speed: Speed
    default_high_speed: Speed
    min_battery_to_slow_down: int | None = Field(ge=1, le=100)
    battery_slow_down_speed: Speed | None


class SpeedSettingsPublic(BaseModel):
    vehicle_type: VehicleType
    default_low_speed: int
    default_medium_speed: int
    default_high_speed: int
    min_battery_to_slow_down: int | None
    battery_slow_down_speed: int | None


class NetworkSpeedSettingsPublic(BaseModel):
    network_id: int
    #: One entry per vehicle type with settings (none: the vehicles' own defaults).
    vehicle_types: list[SpeedSettingsPublic]


# ── notification settings ─────────────────────────────────────────────────────────────

NotificationType = Literal[
    "fleet-alert", "vehicle-fault", "station-down", "support-report", "support-message"
]
NotifiedAlertType = Literal[
    "unexpected-unlock", "spot-identify-fail", "spot-high-temperature", "station-power-cut",
    "station-alarm-triggered", "vehicle-illegal-moving", "vehicle-dismantling",
    "vehicle-lifted", "vehicle-fallen", "vehicle-out-of-network-area",
]  # fmt: skip
Severity = Literal["low", "high", "critical"]


class NotificationFields(BaseModel):
    notification_type: NotificationType
    alert_types: list[NotifiedAlertType] = Field(min_length=1, max_length=10)
    alert_severities: list[Severity] = Field(min_length=1, max_length=3)
    check_interval: Seconds = 0
    check_delay: Seconds = 0


class NotificationTarget(BaseModel):
    """One of ``user_id`` or ``email``."""

    user_id: Id | None = None
    email: Annotated[Text, Field(max_length=255, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")] | None = (
        None
    )


class NotificationPublic(NotificationFields):
    notification_id: int
    network_id: int
    target_user_ids: list[int]
    target_emails: list[str]

    @classmethod
    def of(
        cls, s: NetworkNotificationSetting, targets: list[NetworkNotificationTarget]
    ) -> NotificationPublic:
        # Validated: the stored strings are the enums' (written through this schema).
        return cls.model_validate(
            {
                "notification_id": s.id,
                "network_id": s.network_id,
                "notification_type": s.notification_type,
                "alert_types": s.alert_types,
                "alert_severities": s.alert_severities,
                "check_interval": s.check_interval,
                "check_delay": s.check_delay,
                "target_user_ids": sorted(t.user_id for t in targets if t.user_id is not None),
                "target_emails": sorted(t.email for t in targets if t.email is not None),
            }
        )


class EstimatePublic(BaseModel):
    """Seed 002 "Get estimate": the average duration of the fastest trips between two
    clusters, and what such a trip costs with the network's current pricing."""

    donor_cluster_id: int
    receiver_cluster_id: int
    fastest_trip_percentage: int
    #: Finished trips between the two clusters, and how many of the fastest were averaged.
    trips_count: int
    sample_size: int
    #: Seconds; null without any trip between the clusters.
    average_duration: int | None
    #: A trip of that duration starting now, priced by the billing engine (null: no trip,
    #: or no pricing rule in force).
    estimated_price: str | None
    currency: str


# ── out of order ──────────────────────────────────────────────────────────────────────

#: Dates a period may name (bounded: a year 9999 or 0001 is a typo, not a plan).
EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


def _bounded(value: datetime) -> datetime:
    if not EARLIEST <= value <= LATEST:
        raise ValueError("must be between 2000 and 2100")
    return value


PeriodDate = Annotated[AwareDatetime, AfterValidator(_bounded)]


class OutOfOrderCreate(BaseModel):
    type: Literal["other", "winter"]
    reason: Text | None = Field(default=None, min_length=1, max_length=100)
    start_date: PeriodDate
    end_date: PeriodDate | None = None


class OutOfOrderPublic(BaseModel):
    out_of_order_id: int
    network_id: int
    type: str
    reason: str | None
    start_date: datetime
    end_date: datetime | None

    @classmethod
    def of(cls, o: NetworkOutOfOrder) -> OutOfOrderPublic:
        return cls(
            out_of_order_id=o.id,
            network_id=o.network_id,
            type=o.type,
            reason=o.reason,
            start_date=o.start_date,
            end_date=o.end_date,
        )


# ── cluster balancing ─────────────────────────────────────────────────────────────────


class BalancingCreate(BaseModel):
    cluster_id: Id
    target_count: int = Field(ge=0, le=100000)
    balancing_type: Literal["donor", "receiver"]


class BalancingUpdate(BaseModel):
    cluster_id: Id
    target_count: int = Field(ge=0, le=100000)


class BalancingPublic(BalancingCreate):
    network_id: int


class DiscountUpdate(BaseModel):
    donor_cluster_id: Id
    receiver_cluster_id: Id
    discount_amount: Amount


class DiscountPublic(BaseModel):
    network_id: int
    donor_cluster_id: int
    receiver_cluster_id: int
    discount_amount: str


# ── vehicle models ────────────────────────────────────────────────────────────────────


class VehicleModelSettingsForm(BaseModel):
    auto_light: bool
    #: 1 ECO, 2 NORMAL, 3 SPORT; left out: the rider chooses.
    speed_mode: int | None = Field(default=None, ge=1, le=3)


class VehicleModelGuaranteeForm(BaseModel):
    guarantee: Amount
    pre_auth: Amount


class VehicleModelSettingsPublic(BaseModel):
    model_id: int
    auto_light: bool
    speed_mode: int | None


class VehicleModelGuaranteePublic(BaseModel):
    model_id: int
    guarantee: str
    pre_auth: str


class VehiclesReset(BaseModel):
    """Seed 002 "Reset vehicles settings": how many vehicle controllers were sent their
    settings, and what they answered (``done``, ``offline``, ``timeout``, ``rejected``,
    ``failed``: counts)."""

    network_id: int
    vehicles: int
    outcomes: dict[str, int]
