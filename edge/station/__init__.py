"""The station edge agent: ``StationAgent(StationSettings.load(path)).run()``."""

from kickstand.edge.station.agent import SpotRecord, StationAgent
from kickstand.edge.station.config import StationSettings

__all__ = ["SpotRecord", "StationAgent", "StationSettings"]
