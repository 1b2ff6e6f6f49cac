"""The station edge agent: ``StationAgent(StationSettings.load(path)).run()``."""

from kickstand.edge.station.agent import StationAgent
from kickstand.edge.station.config import StationSettings
from kickstand.edge.station.spots import SpotRecord

__all__ = ["SpotRecord", "StationAgent", "StationSettings"]
