"""Small geometry helpers for the map endpoints (degrees, meters)."""

from __future__ import annotations

import math
from typing import Any

EARTH_RADIUS_M = 6_371_008.8


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


class BBox:
    """The seeds' area: a centre and the number of degrees it spans (height, width)."""

    def __init__(self, lat: float, lng: float, lat_deg: float, lng_deg: float) -> None:
        self.min_lat, self.max_lat = lat - lat_deg / 2, lat + lat_deg / 2
        self.min_lng, self.max_lng = lng - lng_deg / 2, lng + lng_deg / 2

    def contains(self, lat: float | None, lng: float | None) -> bool:
        if lat is None or lng is None:
            return False
        return self.min_lat <= lat <= self.max_lat and self.min_lng <= lng <= self.max_lng

    def intersects(self, min_lat: float, min_lng: float, max_lat: float, max_lng: float) -> bool:
        return not (
            max_lat < self.min_lat
            or min_lat > self.max_lat
            or max_lng < self.min_lng
            or min_lng > self.max_lng
        )


def outer_ring(geojson: dict[str, Any] | None) -> list[list[float]]:
    """The first outer ring of a Polygon / MultiPolygon, as [lng, lat] pairs."""
    if not geojson:
        return []
    coords = geojson.get("coordinates") or []
    try:
        if geojson.get("type") == "Polygon":
            return [[float(x), float(y)] for x, y, *_ in coords[0]]
        if geojson.get("type") == "MultiPolygon":
            return [[float(x), float(y)] for x, y, *_ in coords[0][0]]
    except (IndexError, TypeError, ValueError):
        return []
    return []


def all_points(geojson: dict[str, Any] | None) -> list[tuple[float, float]]:
    if not geojson:
        return []
    coords = geojson.get("coordinates") or []
    polygons = [coords] if geojson.get("type") == "Polygon" else coords
    points: list[tuple[float, float]] = []
    try:
        for polygon in polygons:
            for ring in polygon:
                points.extend((float(p[0]), float(p[1])) for p in ring)
    except (IndexError, TypeError, ValueError):
        return []
    return points
