"""The vehicle edge agent (bike, e-bike, kick-scooter controller).

    from kickstand.edge.vehicle import VehicleAgent, VehicleSettings
    settings = VehicleSettings.load("vehicle.toml", mqtt_url="mqtt://127.0.0.1:1883")
    async with VehicleAgent(settings) as agent:
        ...

``python -m kickstand.edge.vehicle --config vehicle.toml`` runs it as a process.
"""

from kickstand.edge.vehicle.agent import VehicleAgent
from kickstand.edge.vehicle.config import VehicleSettings

__all__ = ["VehicleAgent", "VehicleSettings"]
