"""Vehicle simulator: the controller's peripherals emulated at the wire.

    from kickstand.simulators.vehicle import SimulatedVehicle, VehicleFleet, CoverageProxy, Route
"""

from kickstand.simulators.vehicle.coverage import CoverageProxy
from kickstand.simulators.vehicle.errors import ScenarioError, SimulatorError
from kickstand.simulators.vehicle.fleet import VehicleFleet
from kickstand.simulators.vehicle.route import LYON_RIDE, Route
from kickstand.simulators.vehicle.vehicle import SimulatedVehicle, VehiclePorts, wait_until

__all__ = [
    "LYON_RIDE",
    "CoverageProxy",
    "Route",
    "ScenarioError",
    "SimulatedVehicle",
    "SimulatorError",
    "VehicleFleet",
    "VehiclePorts",
    "wait_until",
]
