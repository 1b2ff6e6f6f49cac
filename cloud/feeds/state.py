"""The availability the feeds publish, from our rows: one rule for GBFS and MDS.

- A vehicle is offered when :func:`kickstand.cloud.rentable.refusal` finds nothing (the
  rule of the map and the rents), it is on no trip and held by no rent, and it can be
  reached: a docked vehicle through its station (online, renting), a free-floating one
  through its own controller (online, :mod:`kickstand.cloud.liveness`).
- A station rents and takes returns when its mainboard is online, no open maintenance
  takes it out of service, the network is not out of order, and one of its spots is
  active. An offline station is not renting: its vehicles count as disabled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from kickstand.cloud.feeds.repository import SpotRow, StationRow, VehicleRow
from kickstand.cloud.liveness import is_online
from kickstand.cloud.models import SpotState, VehicleType
from kickstand.cloud.rentable import refusal


def vehicle_offered(v: VehicleRow, *, min_battery_to_rent: int, out_of_order: bool) -> bool:
    """Rentable by the rule, on no trip, held by no rent (reachability aside)."""
    if v.on_trip or v.reserved:
        return False
    return (
        refusal(
            network_out_of_order=out_of_order,
            state=v.state,
            in_maintenance=v.in_maintenance,
            vehicle_type=v.vehicle_type,
            battery_level=v.assist_battery_level
            if v.vehicle_type == VehicleType.E_BIKE
            else v.battery_level,
            spot_state=v.spot_state,
            min_battery_to_rent=min_battery_to_rent,
        )
        is None
    )


@dataclass
class StationState:
    station: StationRow
    online: bool
    in_maintenance: bool
    is_renting: bool
    is_returning: bool
    capacity: int
    docks_available: int
    docks_disabled: int
    available: Counter[VehicleType] = field(default_factory=Counter)
    disabled: Counter[VehicleType] = field(default_factory=Counter)
    vehicle_ids: list[int] = field(default_factory=list)

    @property
    def num_vehicles_available(self) -> int:
        return sum(self.available.values())

    @property
    def num_vehicles_disabled(self) -> int:
        return sum(self.disabled.values())


def station_states(
    stations: Sequence[StationRow],
    spots: Iterable[SpotRow],
    vehicles: Iterable[VehicleRow],
    *,
    stations_in_maintenance: set[int],
    min_battery_to_rent: int,
    out_of_order: bool,
    now: datetime,
) -> dict[int, StationState]:
    by_id = {v.id: v for v in vehicles}
    states: dict[int, StationState] = {}
    station_spots: dict[int, list[SpotRow]] = {}
    for spot in spots:
        station_spots.setdefault(spot.station_id, []).append(spot)
    for station in stations:
        own = station_spots.get(station.id, [])
        online = is_online(station.presence, now)
        in_maintenance = station.id in stations_in_maintenance
        active = [s for s in own if s.state == SpotState.ACTIVE]
        working = online and not in_maintenance and not out_of_order and bool(active)
        state = StationState(
            station=station,
            online=online,
            in_maintenance=in_maintenance,
            is_renting=working,
            is_returning=working,
            capacity=len(own),
            # A spot is a free dock when it is active and empty; out of order ones are not.
            docks_available=sum(1 for s in active if s.vehicle_id is None) if working else 0,
            docks_disabled=len(own) - len(active) if working else len(own),
        )
        for spot in own:
            vehicle = by_id.get(spot.vehicle_id) if spot.vehicle_id is not None else None
            if vehicle is None:
                continue
            state.vehicle_ids.append(vehicle.id)
            offered = working and vehicle_offered(
                vehicle, min_battery_to_rent=min_battery_to_rent, out_of_order=out_of_order
            )
            (state.available if offered else state.disabled)[vehicle.vehicle_type] += 1
        states[station.id] = state
    return states


def free_vehicle_offered(
    v: VehicleRow, *, min_battery_to_rent: int, out_of_order: bool, now: datetime
) -> bool:
    """A free-floating vehicle is offered when the rule allows and its controller is online
    (a vehicle without a controller cannot be unlocked away from a station)."""
    return (
        v.device_id is not None
        and is_online(v.presence, now)
        and vehicle_offered(v, min_battery_to_rent=min_battery_to_rent, out_of_order=out_of_order)
    )


__all__ = ["StationState", "free_vehicle_offered", "station_states", "vehicle_offered"]
