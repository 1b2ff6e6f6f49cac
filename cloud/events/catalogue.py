"""The event catalogue: every topic that leaves the system, defined once.

A definition names the topic (seed 000 ``resource.event`` names where the seed has one,
its French resource names kept: *vehicule*, *boitier*), the resource its outbox row is
keyed by (webhook order per resource), the typed payload and what the topic means.
The payload's model carries the network scope (:mod:`kickstand.cloud.events.payloads`),
so :func:`kickstand.cloud.outbox.emit` cannot be called without it, and webhook
delivery reads the scope through :func:`networks_of`.

Adding a topic: a definition here (and, for a new shape, a model in ``payloads.py``),
emitted with ``outbox.emit(session, THE_TOPIC, resource_id, Model(...))``; then
``python -m kickstand.cloud.events.docs --write`` (docs/webhook-topics.md; a test fails
while it is stale). CONTRIBUTING.md, "One event catalogue".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from kickstand.cloud.events import payloads as p

P = TypeVar("P", bound=p.EventPayload)


@dataclass(frozen=True)
class EventType(Generic[P]):
    topic: str
    #: The resource the outbox row is keyed by (``resource_type:resource_id``).
    resource_type: str
    payload: type[P]
    description: str

    @property
    def resource(self) -> str:
        """The seed's resource: the topic's first word (``boitier``, ``vehicule``…)."""
        return self.topic.split(".", 1)[0]


_ALL: list[EventType[Any]] = []


def _define(topic: str, resource_type: str, payload: type[P], description: str) -> EventType[P]:
    event = EventType(topic, resource_type, payload, description)
    _ALL.append(event)
    return event


# ── trips and rents ───────────────────────────────────────────────────────────────────
TRIP_CREATED = _define("trip.created", "trip", p.TripEvent, "Occurs whenever a trip is created.")
TRIP_UPDATED = _define(
    "trip.updated",
    "trip",
    p.TripEvent,
    "Occurs whenever a trip's properties have been updated (hold, resume, billing).",
)
TRIP_TERMINATED = _define(
    "trip.terminated", "trip", p.TripEvent, "Occurs whenever a trip is completed."
)
TRIP_RETURN_REFUSED = _define(
    "trip.return.refused",
    "trip",
    p.TripReturnRefused,
    "Occurs whenever a free-floating vehicule is locked outside the network's border where "
    "returns are refused: the trip keeps running.",
)
RENT_CREATED = _define(
    "rent.created", "rent", p.RentEvent, "Occurs whenever a rider asks to unlock a vehicle."
)
RENT_UPDATED = _define(
    "rent.updated",
    "rent",
    p.RentEvent,
    "Occurs whenever a rent is unlocked, refused, expired or started.",
)

# ── stations, docks, vehicles ─────────────────────────────────────────────────────────
STATION_UPDATED = _define(
    "station.updated",
    "station",
    p.StationEvent,
    "Occurs whenever a station's properties have been updated (its mainboard came online "
    "or went offline).",
)
STATION_CREATED = _define(
    "station.created",
    "station",
    p.StationRecord,
    "Occurs whenever a station is created (an operator commissioned it in a cluster).",
)
STATION_DELETED = _define(
    "station.deleted",
    "station",
    p.StationRecord,
    "Occurs whenever a station is deleted (an operator decommissioned it: off the map, its "
    "device refused).",
)
DOCK_UPDATED = _define(
    "dock.updated",
    "spot",
    p.DockEvent,
    "Occurs whenever a dock's properties have been updated (vehicle docked or removed, lock "
    "status, maintenance).",
)
VEHICLE_UPDATED = _define(
    "vehicule.updated",
    "vehicle",
    p.VehicleEvent,
    "Occurs whenever a vehicule's properties have been updated (state, spot, position, "
    "online, taken without a rent).",
)
VEHICLE_CREATED = _define(
    "vehicule.created",
    "vehicle",
    p.VehicleEvent,
    "Occurs whenever a vehicule is created (an operator registered it).",
)
VEHICLE_DELETED = _define(
    "vehicule.deleted",
    "vehicle",
    p.VehicleEvent,
    "Occurs whenever a vehicule is deleted (an operator decommissioned it: never rentable "
    "again, off the map; its history is kept).",
)
VEHICULE_BATTERY_LOW = _define(
    "vehicule.battery.low",
    "vehicle",
    p.BatteryLow,
    "Occurs whenever a vehicule internal battery is low (reported by the vehicle controller).",
)
VEHICULE_BATTERY_VAE_LOW = _define(
    "vehicule.battery_vae.low",
    "vehicle",
    p.BatteryLow,
    "Occurs whenever a vehicule electrical assistance battery is low.",
)
VEHICLE_POSITION_FORBIDDEN = _define(
    "vehicule.position.forbidden",
    "vehicle",
    p.PositionForbidden,
    "Occurs whenever a vehicule with a running trip just went into a forbidden zone.",
)
VEHICLE_POSITION_OUT_OF_NETWORK = _define(
    "vehicule.position.out_of_network",
    "vehicle",
    p.PositionOutOfNetwork,
    "Occurs whenever a vehicule leaves the network's border.",
)
BOITIER_LOCKED = _define(
    "boitier.locked",
    "vehicle",
    p.ChainEvent,
    "Occurs whenever a chain is added into a vehicule lock.",
)
BOITIER_UNLOCKED = _define(
    "boitier.unlocked",
    "vehicle",
    p.ChainRemoved,
    "Occurs whenever a chain is removed from a vehicule lock.",
)
BOITIER_CHAIN_TYPE_UPDATED = _define(
    "boitier.chain_type.updated",
    "vehicle",
    p.ChainEvent,
    "Occurs whenever the vehicule chain reading has changed.",
)
BOITIER_PASS_UNRECOGNIZED = _define(
    "boitier.pass.unrecognized",
    "vehicle",
    p.PassUnrecognized,
    "Occurs whenever an NFC card swiped on a vehicule is not recognised by the system.",
)
BOITIER_PIN_INCORRECT = _define(
    "boitier.pin.incorrect",
    "vehicle",
    p.PinIncorrect,
    "Occurs whenever an incorrect pin is typed on a vehicule.",
)
DEVICE_EVENT = _define(
    "device.event",
    "device",
    p.DeviceEvent,
    "Occurs for every event a station or vehicle controller reported (its type in `event`, "
    "its fields in `data`), once ingest applied it.",
)

# ── riders (kickstand.cloud.accounts) ─────────────────────────────────────────────────
CYCLIST_CREATED = _define(
    "cyclist.created",
    "user",
    p.CyclistEvent,
    "Occurs whenever a cyclist is created (a rider signed up; the email is not confirmed yet).",
)
CYCLIST_CONFIRMED = _define(
    "cyclist.confirmed",
    "user",
    p.CyclistEvent,
    "Occurs whenever a cyclist has confirmed their email address.",
)
CYCLIST_UPDATED = _define(
    "cyclist.updated",
    "user",
    p.CyclistEvent,
    "Occurs whenever a cyclist's properties have been updated (a confirmed email change).",
)

# ── passes, zones, alerts, webhooks ───────────────────────────────────────────────────
PASS_ASSOCIATED = _define(
    "pass.associated", "pass", p.PassEvent, "Occurs whenever a pass is associated to a user."
)
PASS_DISASSOCIATED = _define(
    "pass.disassociated",
    "pass",
    p.PassEvent,
    "Occurs whenever a pass is disassociated from a user.",
)
ZONE_CREATED = _define("zone.created", "zone", p.ZoneEvent, "Occurs whenever a zone is created.")
ZONE_UPDATED = _define(
    "zone.updated", "zone", p.ZoneEvent, "Occurs whenever a zone's properties have been updated."
)
ZONE_DELETED = _define("zone.deleted", "zone", p.ZoneEvent, "Occurs whenever a zone is deleted.")
ALERT_CREATED = _define(
    "fleet_alert.created", "fleet_alert", p.AlertEvent, "Occurs whenever a fleet alert is raised."
)
ALERT_UPDATED = _define(
    "fleet_alert.updated",
    "fleet_alert",
    p.AlertEvent,
    "Occurs whenever the cause of an open fleet alert recurs (occurrences counted, severity "
    "raised) or a recently stopped alert reopens.",
)
ALERT_RESOLVED = _define(
    "fleet_alert.resolved",
    "fleet_alert",
    p.AlertEvent,
    "Occurs whenever an operator resolves a fleet alert.",
)
ALERT_ESCALATED = _define(
    "fleet_alert.escalated",
    "fleet_alert",
    p.AlertEvent,
    "Occurs whenever an operator escalates a fleet alert.",
)
ALERT_SILENCED = _define(
    "fleet_alert.silenced",
    "fleet_alert",
    p.AlertEvent,
    "Occurs whenever an operator silences a fleet alert.",
)
ALERT_STOPPED = _define(
    "fleet_alert.stopped",
    "fleet_alert",
    p.AlertEvent,
    "Occurs whenever the condition of a fleet alert clears by itself.",
)
# ── firmware campaigns (kickstand.cloud.firmware) ─────────────────────────────────────
FIRMWARE_CAMPAIGN_STARTED = _define(
    "firmware_campaign.started",
    "firmware_campaign",
    p.FirmwareCampaignEvent,
    "Occurs whenever an operator starts a firmware campaign (its canary wave begins).",
)
FIRMWARE_CAMPAIGN_WAVE_STARTED = _define(
    "firmware_campaign.wave_started",
    "firmware_campaign",
    p.FirmwareCampaignEvent,
    "Occurs whenever a wave of a firmware campaign begins (the previous one passed its "
    "success threshold).",
)
FIRMWARE_CAMPAIGN_WAVE_COMPLETED = _define(
    "firmware_campaign.wave_completed",
    "firmware_campaign",
    p.FirmwareCampaignEvent,
    "Occurs whenever every device of a wave has confirmed, failed or rolled back, and the "
    "wave passed its success threshold.",
)
FIRMWARE_CAMPAIGN_COMPLETED = _define(
    "firmware_campaign.completed",
    "firmware_campaign",
    p.FirmwareCampaignEvent,
    "Occurs whenever the last wave of a firmware campaign completed.",
)
FIRMWARE_CAMPAIGN_STOPPED = _define(
    "firmware_campaign.stopped",
    "firmware_campaign",
    p.FirmwareCampaignEvent,
    "Occurs whenever a firmware campaign stops by itself (`reason`: the error threshold "
    "crossed, a wave under its success threshold).",
)
FIRMWARE_CAMPAIGN_PAUSED = _define(
    "firmware_campaign.paused",
    "firmware_campaign",
    p.FirmwareCampaignEvent,
    "Occurs whenever an operator pauses a firmware campaign (updates under way go on).",
)
FIRMWARE_CAMPAIGN_RESUMED = _define(
    "firmware_campaign.resumed",
    "firmware_campaign",
    p.FirmwareCampaignEvent,
    "Occurs whenever an operator resumes a paused firmware campaign.",
)
FIRMWARE_CAMPAIGN_CANCELLED = _define(
    "firmware_campaign.cancelled",
    "firmware_campaign",
    p.FirmwareCampaignEvent,
    "Occurs whenever an operator cancels a firmware campaign (nothing more is sent).",
)
FIRMWARE_UPDATE_CONFIRMED = _define(
    "firmware_update.confirmed",
    "device",
    p.FirmwareUpdateEvent,
    "Occurs whenever a device confirms its new firmware (booted, reached the cloud, passed "
    "its self-check).",
)
FIRMWARE_UPDATE_FAILED = _define(
    "firmware_update.failed",
    "device",
    p.FirmwareUpdateEvent,
    "Occurs whenever a device's firmware update fails (download, verification, install, or "
    "no progress within the campaign's device timeout): it still runs its old firmware.",
)
FIRMWARE_UPDATE_ROLLED_BACK = _define(
    "firmware_update.rolled_back",
    "device",
    p.FirmwareUpdateEvent,
    "Occurs whenever a device's new firmware did not confirm itself and the device went "
    "back to its previous firmware.",
)
WEBHOOK_ENDPOINT_DISABLED = _define(
    "webhook_endpoint.disabled",
    "webhook_endpoint",
    p.EndpointEvent,
    "Occurs whenever a webhook endpoint is disabled because its deliveries keep failing.",
)

#: Every topic by name (what endpoints subscribe to, what the docs list).
CATALOGUE: Mapping[str, EventType[Any]] = {e.topic: e for e in sorted(_ALL, key=lambda e: e.topic)}
if len(CATALOGUE) != len(_ALL):  # a topic defined twice would shadow the first
    raise RuntimeError("a topic is defined twice in the event catalogue")


def definition(topic: str) -> EventType[Any] | None:
    return CATALOGUE.get(topic)


def networks_of(topic: str, payload: Mapping[str, Any]) -> frozenset[int]:
    """The networks a stored event is about, by its definition (empty: installation-wide,
    delivered to unscoped endpoints only). A topic outside the catalogue (a row written
    before it existed) is read by the network key it would carry."""
    event = CATALOGUE.get(topic)
    data = dict(payload)
    if event is not None:
        return event.payload.networks_of(data)
    return p.NetworkEvent.networks_of(data) | p.NetworksEvent.networks_of(data)
