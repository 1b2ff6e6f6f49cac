"""A small, realistic Lyon network for the geofencing tests (lon/lat, EPSG:4326).

Rectangles keep the edges exactly representable, so "on the edge" is exact.

- border: lon 4.77..4.92, lat 45.70..45.81 (Lyon + Villeurbanne), policy refuse
- speed zone 1, Presqu'île: lon 4.825..4.840, lat 45.750..45.770, 15 km/h
- speed zone 2, Place Bellecour (inside zone 1): lon 4.830..4.834, lat 45.756..45.759, 8 km/h
- speed zone 3, Part-Dieu: lon 4.850..4.865, lat 45.755..45.765, 20 km/h
- virtual parking 10, Bellecour south: lon 4.8310..4.8320, lat 45.7560..45.7565
- virtual parking 11, Part-Dieu: MultiPolygon (two squares either side of the station)
- forbidden zone 20, Parc de la Tête d'Or: lon 4.845..4.860, lat 45.770..45.785, with a
  hole (the lake, allowed) lon 4.851..4.853, lat 45.775..45.780
- default max speed 25 km/h

Near Lyon, 0.001° of longitude ≈ 77.7 m and 0.001° of latitude ≈ 111.2 m.
"""

from __future__ import annotations

from typing import Any

from kickstand.cloud.geofence import (
    ForbiddenZone,
    NetworkBorder,
    NetworkZones,
    OutsideReturnPolicy,
    SpeedZone,
    VirtualParking,
)

NETWORK_ID = 7


def rect(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    """A closed GeoJSON ring, counter-clockwise, [lon, lat]."""
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def polygon(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [rect(x0, y0, x1, y1)]}


BORDER = polygon(4.77, 45.70, 4.92, 45.81)


def lyon_zones(
    policy: OutsideReturnPolicy = OutsideReturnPolicy.REFUSE, **border_settings: bool
) -> NetworkZones:
    n = NETWORK_ID
    return NetworkZones(
        network_id=n,
        border=NetworkBorder(
            network_id=n, shape=BORDER, outside_return_policy=policy, **border_settings
        ),
        speed_zones=(
            SpeedZone(1, n, polygon(4.825, 45.750, 4.840, 45.770), max_speed=15),
            SpeedZone(2, n, polygon(4.830, 45.756, 4.834, 45.759), max_speed=8),
            SpeedZone(3, n, polygon(4.850, 45.755, 4.865, 45.765), max_speed=20),
        ),
        virtual_parkings=(
            VirtualParking(10, n, polygon(4.8310, 45.7560, 4.8320, 45.7565), capacity=20),
            VirtualParking(
                11,
                n,
                {
                    "type": "MultiPolygon",
                    "coordinates": [
                        [rect(4.8550, 45.7600, 4.8560, 45.7605)],
                        [rect(4.8600, 45.7600, 4.8610, 45.7605)],
                    ],
                },
                capacity=40,
                cluster_id=3,
            ),
        ),
        forbidden_zones=(
            ForbiddenZone(
                20,
                n,
                {
                    "type": "Polygon",
                    "coordinates": [
                        rect(4.845, 45.770, 4.860, 45.785),
                        rect(4.851, 45.775, 4.853, 45.780)[::-1],
                    ],
                },
                name="Parc de la Tête d'Or",
            ),
        ),
        default_max_speed=25,
        version=1,
    )
