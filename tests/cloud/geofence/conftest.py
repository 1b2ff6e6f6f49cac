"""Fixtures: the Lyon network of ``geofence_lyon`` and its index."""

from __future__ import annotations

import pytest

from kickstand.cloud.geofence import GeofenceIndex, NetworkZones
from tests.cloud.geofence.geofence_lyon import lyon_zones


@pytest.fixture(scope="session")
def zones() -> NetworkZones:
    return lyon_zones()


@pytest.fixture(scope="session")
def index(zones: NetworkZones) -> GeofenceIndex:
    return GeofenceIndex(zones)
