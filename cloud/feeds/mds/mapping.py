"""Our vehicle types, states and happenings in MDS 2.0's words (micromobility mode).

The tables here are the ones docs/feeds.md prints; tests check every value against the
lists of the MDS 2.0 specification (modes/micromobility.md, data-types.md).
"""

from __future__ import annotations

from datetime import datetime

from kickstand.cloud.feeds.repository import VehicleRow
from kickstand.cloud.liveness import is_online
from kickstand.cloud.models import VehicleState, VehicleType

#: MDS ``vehicle_type`` of each of ours (data-types.md "Vehicle Types").
VEHICLE_TYPE: dict[VehicleType, str] = {
    VehicleType.BIKE: "bicycle",
    VehicleType.E_BIKE: "bicycle",
    VehicleType.KICK_SCOOTER: "scooter_standing",
}

#: MDS ``propulsion_types`` (data-types.md "Propulsion Types").
PROPULSION: dict[VehicleType, list[str]] = {
    VehicleType.BIKE: ["human"],
    VehicleType.E_BIKE: ["human", "electric_assist"],
    VehicleType.KICK_SCOOTER: ["electric"],
}

#: What each of our happenings is in MDS: (vehicle_state after it, event_types).
EVENTS: dict[str, tuple[str, list[str]]] = {
    # a trip began: a removal from a spot, a free-floating unlock
    "trip-started": ("on_trip", ["trip_start"]),
    # a trip finished: docked, or locked free-floating
    "trip-finished": ("available", ["trip_end"]),
    # a trip cancelled (nobody rode: the rent ended without a ride)
    "trip-cancelled": ("available", ["trip_cancel"]),
    # an operator opened a maintenance of the vehicle
    "maintenance-started": ("non_operational", ["maintenance"]),
    # … and closed it
    "maintenance-stopped": ("available", ["maintenance"]),
    # the vehicle was decommissioned (seed 002 "Decommission vehicle")
    "decommissioned": ("removed", ["decommissioned"]),
    # the vehicle controller went offline (its death, or silence)
    "comms-lost": ("non_contactable", ["comms_lost"]),
    # … and came back
    "comms-restored": ("available", ["comms_restored"]),
}


def current_state(
    v: VehicleRow,
    *,
    now: datetime,
    out_of_order: bool,
    min_battery_to_rent: int,
    trip_ended: bool,
) -> tuple[str, list[str]]:
    """The vehicle's MDS state now, with the event type that best explains it."""
    if v.state == VehicleState.DECOMMISSIONED:
        return "removed", ["decommissioned"]
    if v.state == VehicleState.LOST_OR_STOLEN:
        return "missing", ["not_located"]
    if v.on_trip or v.state == VehicleState.RENTED:
        return "on_trip", ["trip_start"]
    if v.device_id is not None and v.station_id is None and not is_online(v.presence, now):
        return "non_contactable", ["comms_lost"]
    if v.reserved:
        return "reserved", ["reservation_start"]
    if v.state == VehicleState.MAINTENANCE or v.in_maintenance:
        return "non_operational", ["maintenance"]
    if out_of_order:
        return "non_operational", ["system_suspend"]
    level = v.assist_battery_level if v.vehicle_type == VehicleType.E_BIKE else v.battery_level
    if v.vehicle_type != VehicleType.BIKE and level is not None and level < min_battery_to_rent:
        return "non_operational", ["battery_low"]
    return "available", ["trip_end"] if trip_ended else ["provider_drop_off"]


__all__ = ["EVENTS", "PROPULSION", "VEHICLE_TYPE", "current_state"]
