"""The typed payloads of the events that leave the system (the ``data`` of a webhook).

One model per shape, shared by the topics that carry it (``trip.created`` /
``trip.updated`` / ``trip.terminated`` are one :class:`TripEvent`). Every model names
its network scope with a required field, so no emitter can forget it:

* :class:`NetworkEvent`: ``network_id`` (``None`` only for a resource in no network yet:
  such an event reaches unscoped endpoints only);
* :class:`NetworksEvent`: ``network_ids`` (an event about several networks, e.g. a
  webhook endpoint; ``None`` = every network, unscoped endpoints only).

Field names follow the seeds; values are what :func:`kickstand.cloud.outbox.jsonable`
writes (datetimes ISO 8601, money as decimal strings).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field


class EventPayload(BaseModel):
    """Base of every payload: closed (an unknown key is a drift) and immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    #: The payload key holding the event's network scope (see the subclasses).
    SCOPE_FIELD: ClassVar[str]

    @classmethod
    def networks_of(cls, data: dict[str, Any]) -> frozenset[int]:
        """The networks a stored payload is about (empty: none, installation-wide)."""
        value = data.get(cls.SCOPE_FIELD)
        if isinstance(value, int):
            return frozenset({value})
        if isinstance(value, list):
            return frozenset(v for v in value if isinstance(v, int))
        return frozenset()


class NetworkEvent(EventPayload):
    """An event about one network's resource."""

    SCOPE_FIELD: ClassVar[str] = "network_id"
    network_id: int | None


class NetworksEvent(EventPayload):
    """An event about several networks (``None``: not scoped to any)."""

    SCOPE_FIELD: ClassVar[str] = "network_ids"
    network_ids: list[int] | None


# ── trips and rents ───────────────────────────────────────────────────────────────────


class TripEvent(NetworkEvent):
    """``trip.created`` / ``trip.updated`` / ``trip.terminated`` (seed 000 `trip.*`)."""

    trip_id: int
    user_id: int | None  # None: a badge ride of no known rider
    vehicle_id: int
    serial_number: str | None
    rent_id: int | None
    status: str
    started_at: datetime
    ended_at: datetime | None
    start_spot_id: int | None
    end_spot_id: int | None
    start_cluster_id: int | None
    end_cluster_id: int | None
    on_hold_since: datetime | None
    billing_stopped_at: datetime | None
    cost: Decimal | None
    currency: str
    version: int


class TripReturnRefused(TripEvent):
    """``trip.return.refused``: the trip as it stands, and why the return was refused."""

    locked_at: datetime
    # "return" is a Python keyword: the field is ``return_`` in code, "return" on the wire.
    return_: dict[str, Any] = Field(
        validation_alias=AliasChoices("return", "return_"), serialization_alias="return"
    )
    message: str


class RentEvent(NetworkEvent):
    """``rent.created`` / ``rent.updated`` (ours): a rider's or a badge's unlock request."""

    rent_id: int
    user_id: int
    vehicle_id: int
    spot_id: int | None
    kind: str
    status: str
    reason: str | None
    created_at: datetime
    unlocked_at: datetime | None
    expires_at: datetime | None
    ended_at: datetime | None


# ── stations, docks, vehicles ─────────────────────────────────────────────────────────


class StationEvent(NetworkEvent):
    """``station.updated``: the station's mainboard came online or went offline."""

    station_id: int
    device_id: str
    online: bool
    at: datetime


class StationRecord(NetworkEvent):
    """``station.created`` / ``station.deleted``: an operator commissioned a station (its
    mainboard's device id, its cluster, its spots) or decommissioned it."""

    station_id: int
    device_id: str
    cluster_id: int
    name: str
    spot_count: int
    commissioned_at: datetime | None
    decommissioned_at: datetime | None


class DockEvent(NetworkEvent):
    """``dock.updated``: one spot as it stands after the change (one shape for every
    cause: a vehicle docked or removed, a lock status, a maintenance decision)."""

    spot_id: int
    station_id: int
    station_device_id: str
    displayed_number: int
    lock_status: int
    state: str
    maintenance_source: str | None
    contained_vehicle_id: int | None
    serial_number: str | None
    status_at: datetime | None
    #: The station's fault with a status (None: none reported with this change).
    fault: str | None = None
    #: The operator's reason with a maintenance decision.
    reason: str | None = None


class VehicleEvent(NetworkEvent):
    """``vehicule.updated`` / ``vehicule.created`` / ``vehicule.deleted`` (seed spelling):
    the vehicle as it stands after the change."""

    vehicle_id: int
    serial_number: str
    device_id: str | None
    state: str
    spot_id: int | None
    latitude: float | None
    longitude: float | None
    #: Set when the change is the controller coming online / going offline.
    online: bool | None = None
    #: True: taken from its spot or lock without a rent.
    unauthorized_removal: bool = False
    #: Device time of the change, when a device reported it.
    at: datetime | None = None


class VehicleDeviceEvent(NetworkEvent):
    """What the vehicle controller reported (``vehicule.battery*``, ``boitier.*``)."""

    vehicle_id: int
    serial_number: str
    device_id: str | None


class BatteryLow(VehicleDeviceEvent):
    """``vehicule.battery.low`` / ``vehicule.battery_vae.low``."""

    level_pct: int | None
    battery: str  # "internal" | "vae"


class ChainEvent(VehicleDeviceEvent):
    """``boitier.locked`` / ``boitier.chain_type.updated``."""

    chain_type: str


class ChainRemoved(VehicleDeviceEvent):
    """``boitier.unlocked``."""


class PassUnrecognized(VehicleDeviceEvent):
    """``boitier.pass.unrecognized``."""

    badge_uid: str
    offline: bool


class PinIncorrect(VehicleDeviceEvent):
    """``boitier.pin.incorrect``."""

    attempts: int


class PositionForbidden(NetworkEvent):
    """``vehicule.position.forbidden``: a vehicle on a running trip entered a forbidden zone."""

    vehicle_id: int
    serial_number: str
    trip_id: int
    user_id: int | None
    forbidden_zone_id: int
    latitude: float
    longitude: float
    at: datetime


class PositionOutOfNetwork(NetworkEvent):
    """``vehicule.position.out_of_network``: a vehicle left its network's border."""

    vehicle_id: int
    serial_number: str
    trip_id: int | None
    user_id: int | None
    notify_user: bool
    play_vehicle_sound: bool
    latitude: float
    longitude: float
    at: datetime


class DeviceEvent(NetworkEvent):
    """``device.event``: every event a device reported, as ingest applied it."""

    device_id: str
    event: str
    at: datetime
    boot_id: int
    seq: int
    data: dict[str, Any]


# ── riders ────────────────────────────────────────────────────────────────────────────


class CyclistEvent(NetworkEvent):
    """``cyclist.created`` / ``cyclist.confirmed`` / ``cyclist.updated`` (seed 000
    `cyclist.*`). A rider account belongs to no network: ``network_id`` is None and the
    event reaches unscoped endpoints only. No email address: webhooks carry no more
    personal data than an integration needs (it can ask for the user)."""

    user_id: int
    lang: str
    email_confirmed: bool
    created_at: datetime


# ── passes, zones, alerts, webhooks ───────────────────────────────────────────────────


class PassEvent(NetworkEvent):
    """``pass.associated`` / ``pass.disassociated`` (seed 000; a pass is a badge)."""

    badge_id: int
    user_id: int
    name: str
    linked: bool


class ZoneEvent(NetworkEvent):
    """``zone.*``: a geofencing zone; the id field present is the one of its type."""

    zone_type: str
    shape: dict[str, Any]
    speed_zone_id: int | None = None
    max_speed: int | None = None
    virtual_parking_id: int | None = None
    cluster_id: int | None = None
    capacity: int | None = None
    forbidden_zone_id: int | None = None
    name: str | None = None
    created_at: datetime | None
    updated_at: datetime | None
    deleted_at: datetime | None


class AlertEvent(NetworkEvent):
    """``fleet_alert.*``: a fleet alert (seed 003 fields)."""

    id: int
    uuid: str
    alert_type: str
    alert_severity: str
    state: str
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
    creation_date: datetime | None
    modified: datetime | None
    last_seen_at: datetime | None
    resolved_at: datetime | None
    escalated_at: datetime | None
    silenced_at: datetime | None
    silenced_until: datetime | None
    stopped_at: datetime | None
    operator_id: int | None
    note: str | None


class FirmwareCampaignEvent(NetworkEvent):
    """``firmware_campaign.*``: a campaign and its counts when it changed (issue 18)."""

    campaign_id: int
    name: str
    image_id: int
    target: str
    version: str
    state: str
    #: The wave under way (1 = the canary), and how many there are.
    current_wave: int
    waves: int
    #: Why it stopped (the threshold crossed, the operator's word).
    reason: str | None
    devices: int
    confirmed: int
    failed: int


class FirmwareUpdateEvent(NetworkEvent):
    """``firmware_update.*``: one device's update ended (confirmed, failed, rolled back)."""

    #: None: a status no campaign of the cloud asked for (a technician's update).
    campaign_id: int | None
    device_id: str
    #: 0: the mainboard or controller; n: spot board n.
    spot: int
    version: str
    state: str
    #: The last stage the device reported ("downloading", …, "rolled_back").
    stage: str | None
    reason: str | None
    station_id: int | None
    vehicle_id: int | None
    at: datetime


class EndpointEvent(NetworksEvent):
    """``webhook_endpoint.disabled``: an endpoint (never its secret)."""

    id: int
    url: str
    description: str | None
    topics: list[str]
    livemode: bool
    is_active: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    consecutive_failures: int
    failing_since: datetime | None
    last_success_at: datetime | None
    last_failure_at: datetime | None
    created_at: datetime | None
