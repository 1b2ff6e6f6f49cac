"""What "available to rent" means: the one rule the map, the clusters and the rents use.

A vehicle can be rented when its network is not out of order (seed 002 "Set out of
order": a period is on), it is ``available`` and not in maintenance, its spot (if it
is docked) is active, and, for a vehicle with a battery (e-bike, kick-scooter), the
battery is at least the network's ``min_battery_to_rent`` (an unknown level does not
refuse: the rent's unlock asks the device). A rent checks the rider's side on top
(wallet, how many rents, a lock to command) in :mod:`kickstand.cloud.rents`.

The counts read rows and apply :func:`refusal` in Python (they read the rows anyway);
a feed that needs the rule in SQL should add its form here, next to this one.
"""

from __future__ import annotations

from typing import NamedTuple

from kickstand.cloud.models import SpotState, Vehicle, VehicleState, VehicleType


class Refusal(NamedTuple):
    """Why a vehicle cannot be rented: a stable ``reason`` and a message for the rider."""

    reason: str
    message: str


VEHICLE_UNAVAILABLE = Refusal("vehicle-unavailable", "this vehicle is not available right now")
SPOT_UNAVAILABLE = Refusal("spot-unavailable", "this spot is out of order; pick another one")
BATTERY_LOW = Refusal("battery-low", "this vehicle's battery is too low to rent")
NETWORK_OUT_OF_ORDER = Refusal(
    "network-out-of-order", "this network is out of order: no vehicle can be rented for now"
)


def refusal(
    *,
    network_out_of_order: bool = False,
    state: VehicleState,
    in_maintenance: bool,
    vehicle_type: VehicleType,
    battery_level: int | None,
    spot_state: SpotState | None,
    min_battery_to_rent: int,
) -> Refusal | None:
    """The first reason the vehicle cannot be rented, or None (``spot_state``: the state
    of the spot it is docked in, None when free-floating; ``network_out_of_order``: a
    period of the vehicle's network is on, :func:`kickstand.cloud.networks.repository.
    out_of_order_on`)."""
    if network_out_of_order:
        return NETWORK_OUT_OF_ORDER
    if state != VehicleState.AVAILABLE or in_maintenance:
        return VEHICLE_UNAVAILABLE
    if spot_state is not None and spot_state != SpotState.ACTIVE:
        return SPOT_UNAVAILABLE
    if (
        vehicle_type != VehicleType.BIKE
        and battery_level is not None
        and battery_level < min_battery_to_rent
    ):
        return BATTERY_LOW
    return None


def is_rentable(
    vehicle: Vehicle,
    spot_state: SpotState | None,
    min_battery_to_rent: int,
    *,
    network_out_of_order: bool = False,
) -> bool:
    """:func:`refusal` of a vehicle row is None."""
    return (
        refusal(
            network_out_of_order=network_out_of_order,
            state=vehicle.state,
            in_maintenance=vehicle.in_maintenance,
            vehicle_type=vehicle.vehicle_type,
            battery_level=vehicle.battery_level,
            spot_state=spot_state,
            min_battery_to_rent=min_battery_to_rent,
        )
        is None
    )


__all__ = ["NETWORK_OUT_OF_ORDER", "Refusal", "is_rentable", "refusal"]
