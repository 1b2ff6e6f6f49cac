"""GeoJSON (RFC 7946) in and out for zone shapes, with validation.

Positions are ``[lon, lat]`` (an optional third altitude value is accepted and
dropped). Accepted input: a ``Polygon`` or ``MultiPolygon`` geometry, a ``Feature``
holding one, or the seeds' ``shape`` field (a plain list of ``[lon, lat]`` points
making one ring, at least 3 points, closed or not). Zones never cross the
antimeridian (a city network does not), so no splitting is done.

Everything that can go wrong raises a subclass of
:class:`~kickstand.cloud.geofence.errors.GeofenceError`; nothing else escapes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import shapely
from shapely.geometry import MultiPolygon, Polygon

from kickstand.cloud.geofence.errors import (
    CoordinateOrderError,
    CoordinateRangeError,
    EmptyGeometryError,
    GeoJSONError,
    InvalidGeometryError,
    SelfIntersectionError,
    UnsupportedGeometryError,
)

ZoneShape: TypeAlias = Polygon | MultiPolygon

# GEOS reports e.g. "Self-intersection[4.83 45.76]" or "Ring Self-intersection[...]".
_REASON_LOCATION = re.compile(r"^(?P<what>[^\[]+)\[(?P<x>\S+) (?P<y>\S+)\]$")
_SELF_INTERSECTION_REASONS = ("self-intersection", "ring self-intersection")


def parse_geometry(
    doc: object, *, zone_kind: str | None = None, zone_id: int | None = None
) -> ZoneShape:
    """A validated shapely Polygon / MultiPolygon from a GeoJSON mapping.

    ``doc`` may be a geometry or a Feature. ``zone_kind`` / ``zone_id`` only label errors.
    """
    ctx: dict[str, Any] = {"zone_kind": zone_kind, "zone_id": zone_id}
    if not isinstance(doc, Mapping):
        raise GeoJSONError(f"expected a GeoJSON object, got {type(doc).__name__}", **ctx)
    gtype = doc.get("type")
    if gtype == "Feature":
        return parse_geometry(doc.get("geometry"), zone_kind=zone_kind, zone_id=zone_id)
    if gtype not in ("Polygon", "MultiPolygon"):
        raise UnsupportedGeometryError(gtype, **ctx)
    if "coordinates" not in doc:
        raise GeoJSONError(f"{gtype} without 'coordinates'", **ctx)
    coords = doc["coordinates"]
    geom: ZoneShape
    if gtype == "Polygon":
        geom = _polygon(coords, close=False, ctx=ctx)
    else:
        if not isinstance(coords, Sequence) or isinstance(coords, str | bytes):
            raise GeoJSONError("MultiPolygon coordinates must be an array of polygons", **ctx)
        if len(coords) == 0:
            raise EmptyGeometryError("MultiPolygon has no polygons", **ctx)
        geom = MultiPolygon([_polygon(p, close=False, ctx=ctx) for p in coords])
    return validate_shape(geom, zone_kind=zone_kind, zone_id=zone_id)


def parse_shape(
    shape: object, *, zone_kind: str | None = None, zone_id: int | None = None
) -> Polygon:
    """A validated Polygon from the seeds' ``shape`` field: ``[[lon, lat], ...]``, ≥ 3 points."""
    ctx: dict[str, Any] = {"zone_kind": zone_kind, "zone_id": zone_id}
    ring = _ring(shape, close=True, ctx=ctx)
    geom = Polygon(ring)
    validated = validate_shape(geom, zone_kind=zone_kind, zone_id=zone_id)
    assert isinstance(validated, Polygon)
    return validated


def parse_zone_shape(
    value: object, *, zone_kind: str | None = None, zone_id: int | None = None
) -> ZoneShape:
    """Either form: a GeoJSON mapping, or the seeds' list-of-points ``shape``."""
    if isinstance(value, Mapping):
        return parse_geometry(value, zone_kind=zone_kind, zone_id=zone_id)
    return parse_shape(value, zone_kind=zone_kind, zone_id=zone_id)


def validate_shape(
    geom: object, *, zone_kind: str | None = None, zone_id: int | None = None
) -> ZoneShape:
    """Check a shapely geometry built elsewhere: type, emptiness, ranges, validity, area."""
    ctx: dict[str, Any] = {"zone_kind": zone_kind, "zone_id": zone_id}
    if not isinstance(geom, Polygon | MultiPolygon):
        raise UnsupportedGeometryError(getattr(geom, "geom_type", type(geom).__name__), **ctx)
    if geom.is_empty:
        raise EmptyGeometryError("geometry is empty", **ctx)
    coords = shapely.get_coordinates(geom)
    for i, (lon, lat) in enumerate(coords):
        _check_position(float(lon), float(lat), i, ctx)
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        what, location = _split_reason(reason)
        if what.strip().lower() in _SELF_INTERSECTION_REASONS:
            raise SelfIntersectionError(what.strip(), location=location, **ctx)
        raise InvalidGeometryError(what.strip(), location=location, **ctx)
    if not geom.area > 0.0:
        raise EmptyGeometryError("shape encloses no area", **ctx)
    return geom


def to_geojson(geom: ZoneShape) -> dict[str, Any]:
    """The GeoJSON geometry mapping of a zone shape, ``[lon, lat]`` positions, rings closed."""
    if isinstance(geom, Polygon):
        return {"type": "Polygon", "coordinates": _polygon_coords(geom)}
    return {
        "type": "MultiPolygon",
        "coordinates": [_polygon_coords(p) for p in geom.geoms],
    }


def to_shape(geom: ZoneShape) -> list[list[float]]:
    """The seeds' ``shape`` field (exterior ring of a Polygon, not closed).

    Only Polygons without holes fit that form; others raise :class:`GeoJSONError`
    (use :func:`to_geojson`).
    """
    if not isinstance(geom, Polygon) or len(geom.interiors) > 0:
        raise GeoJSONError("only a Polygon without holes fits the list-of-points shape form")
    ring = [[float(x), float(y)] for x, y in geom.exterior.coords]
    return ring[:-1]


# -- internals -----------------------------------------------------------------------------


def _polygon_coords(p: Polygon) -> list[list[list[float]]]:
    rings = [p.exterior, *p.interiors]
    return [[[float(x), float(y)] for x, y in r.coords] for r in rings]


def _split_reason(reason: str) -> tuple[str, tuple[float, float] | None]:
    m = _REASON_LOCATION.match(reason)
    if m is None:
        return reason, None
    try:
        return m.group("what"), (float(m.group("x")), float(m.group("y")))
    except ValueError:
        return m.group("what"), None


def _is_array(v: object) -> bool:
    return isinstance(v, Sequence) and not isinstance(v, str | bytes)


def _polygon(coords: object, *, close: bool, ctx: dict[str, Any]) -> Polygon:
    if not _is_array(coords):
        raise GeoJSONError("Polygon coordinates must be an array of rings", **ctx)
    assert isinstance(coords, Sequence)
    if len(coords) == 0:
        raise EmptyGeometryError("Polygon has no rings", **ctx)
    rings = [_ring(r, close=close, ctx=ctx) for r in coords]
    return Polygon(rings[0], rings[1:])


def _ring(ring: object, *, close: bool, ctx: dict[str, Any]) -> list[tuple[float, float]]:
    if not _is_array(ring):
        raise GeoJSONError("a ring must be an array of [lon, lat] positions", **ctx)
    assert isinstance(ring, Sequence)
    if len(ring) == 0:
        raise EmptyGeometryError("ring has no positions", **ctx)
    points = [_position(p, i, ctx) for i, p in enumerate(ring)]
    if close:
        if points[0] != points[-1]:
            points.append(points[0])
    elif points[0] != points[-1]:
        raise GeoJSONError("a GeoJSON ring must be closed (first position == last)", **ctx)
    if len(points) < 4:
        raise EmptyGeometryError(
            f"a ring needs at least 3 distinct positions, got {len(points) - 1}", **ctx
        )
    return points


def _position(p: object, index: int, ctx: dict[str, Any]) -> tuple[float, float]:
    if not _is_array(p):
        raise GeoJSONError(f"position {index} is not an array [lon, lat]", **ctx)
    assert isinstance(p, Sequence)
    if len(p) not in (2, 3):
        raise GeoJSONError(f"position {index} has {len(p)} values, expected [lon, lat]", **ctx)
    for v in p:
        # bool is an int subclass; true/false in a coordinate is a client bug.
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise GeoJSONError(f"position {index} holds a non-number {v!r}", **ctx)
    lon, lat = float(p[0]), float(p[1])
    _check_position(lon, lat, index, ctx)
    return lon, lat


def _check_position(lon: float, lat: float, index: int, ctx: dict[str, Any]) -> None:
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise CoordinateRangeError(
            f"position {index} is not finite", lon=lon, lat=lat, index=index, **ctx
        )
    lon_ok = -180.0 <= lon <= 180.0
    lat_ok = -90.0 <= lat <= 90.0
    if lon_ok and lat_ok:
        return
    if not lat_ok and -90.0 <= lon <= 90.0 and -180.0 <= lat <= 180.0:
        raise CoordinateOrderError(
            f"position {index} [{lon}, {lat}]: latitude out of range; "
            "positions must be [lon, lat] (GeoJSON order), this looks like [lat, lon]",
            lon=lon,
            lat=lat,
            index=index,
            **ctx,
        )
    raise CoordinateRangeError(
        f"position {index} [{lon}, {lat}] outside lon [-180, 180] / lat [-90, 90]",
        lon=lon,
        lat=lat,
        index=index,
        **ctx,
    )
