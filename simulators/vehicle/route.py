"""Routes: lon/lat waypoints followed at a speed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kickstand.edge.transports.gps import distance_m


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return (math.degrees(math.atan2(x, y)) + 360) % 360


@dataclass(frozen=True, slots=True)
class Route:
    """``waypoints`` are (lon, lat) pairs, as GeoJSON writes them."""

    waypoints: tuple[tuple[float, float], ...]
    _cumulative: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.waypoints) < 1:
            raise ValueError("a route needs at least one waypoint")
        for lon, lat in self.waypoints:
            if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                raise ValueError(f"waypoint ({lon}, {lat}) is not lon/lat")
        total = [0.0]
        for (lo1, la1), (lo2, la2) in zip(self.waypoints, self.waypoints[1:], strict=False):
            total.append(total[-1] + distance_m(la1, lo1, la2, lo2))
        object.__setattr__(self, "_cumulative", tuple(total))

    @classmethod
    def of(cls, points: list[tuple[float, float]] | tuple[tuple[float, float], ...]) -> Route:
        return cls(tuple((float(lon), float(lat)) for lon, lat in points))

    @property
    def length_m(self) -> float:
        return self._cumulative[-1]

    def at(self, distance: float) -> tuple[float, float, float]:
        """(lat, lon, heading) after ``distance`` metres along the route (clamped to its end)."""
        pts, cum = self.waypoints, self._cumulative
        if len(pts) == 1:
            return pts[0][1], pts[0][0], 0.0
        distance = max(0.0, min(distance, cum[-1]))
        for i in range(1, len(pts)):
            if distance <= cum[i] or i == len(pts) - 1:
                seg = cum[i] - cum[i - 1]
                f = 0.0 if seg == 0 else (distance - cum[i - 1]) / seg
                (lo1, la1), (lo2, la2) = pts[i - 1], pts[i]
                return la1 + (la2 - la1) * f, lo1 + (lo2 - lo1) * f, bearing_deg(la1, lo1, la2, lo2)
        raise AssertionError("unreachable")


# A short ride in Lyon (Bellecour → Terreaux → Part-Dieu), for demos and tests.
LYON_RIDE = Route.of(
    [
        (4.832011, 45.757814),
        (4.834160, 45.762400),
        (4.833400, 45.767300),
        (4.840300, 45.767900),
        (4.852300, 45.761000),
        (4.859600, 45.760500),
    ]
)
