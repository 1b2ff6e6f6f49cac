"""Errors of the geofencing package: one small tree, each class carrying what a caller needs.

Every class derives from :class:`GeofenceError`, itself a :class:`ValueError`, so an
API layer can map the whole tree to one "bad request" answer while still reading the
specific fields (``zone_kind``, ``zone_id``, ``index``, ``location``...).
"""

from __future__ import annotations


class GeofenceError(ValueError):
    """Root of the geofencing errors."""

    def __init__(
        self, message: str, *, zone_kind: str | None = None, zone_id: int | None = None
    ) -> None:
        where = ""
        if zone_kind is not None:
            where = f" ({zone_kind}" + (f" {zone_id}" if zone_id is not None else "") + ")"
        super().__init__(message + where)
        self.message = message
        self.zone_kind = zone_kind
        self.zone_id = zone_id


class GeoJSONError(GeofenceError):
    """The document is not GeoJSON we accept: wrong type, wrong nesting, non-numbers."""


class UnsupportedGeometryError(GeoJSONError):
    """A GeoJSON type other than Polygon / MultiPolygon (or a Feature holding one)."""

    def __init__(
        self, geometry_type: object, *, zone_kind: str | None = None, zone_id: int | None = None
    ) -> None:
        super().__init__(
            f"unsupported geometry type {geometry_type!r}: expected Polygon or MultiPolygon",
            zone_kind=zone_kind,
            zone_id=zone_id,
        )
        self.geometry_type = geometry_type


class EmptyGeometryError(GeofenceError):
    """No coordinates, an empty ring, or a shape that encloses no area."""


class CoordinateRangeError(GeofenceError):
    """A position outside lon [-180, 180] / lat [-90, 90], or not a finite number."""

    def __init__(
        self,
        message: str,
        *,
        lon: object,
        lat: object,
        index: int | None = None,
        zone_kind: str | None = None,
        zone_id: int | None = None,
    ) -> None:
        super().__init__(message, zone_kind=zone_kind, zone_id=zone_id)
        self.lon = lon
        self.lat = lat
        self.index = index


class CoordinateOrderError(CoordinateRangeError):
    """The positions look like [lat, lon] instead of GeoJSON's [lon, lat].

    Raised when a latitude is out of range but the swapped pair would be valid, or
    when a zone lies entirely outside its network border but its swapped shape does
    not (see :func:`kickstand.cloud.geofence.check_within_border`).
    """


class InvalidGeometryError(GeofenceError):
    """Shapely finds the polygon invalid (``reason`` is GEOS's explanation)."""

    def __init__(
        self,
        reason: str,
        *,
        location: tuple[float, float] | None = None,
        zone_kind: str | None = None,
        zone_id: int | None = None,
    ) -> None:
        super().__init__(f"invalid polygon: {reason}", zone_kind=zone_kind, zone_id=zone_id)
        self.reason = reason
        self.location = location


class SelfIntersectionError(InvalidGeometryError):
    """A ring crosses itself (or another ring); ``location`` is (lon, lat) of a crossing."""


class ZoneOutsideBorderError(GeofenceError):
    """A zone does not touch its network border at all."""

    def __init__(
        self,
        message: str,
        *,
        likely_swapped: bool,
        zone_kind: str | None = None,
        zone_id: int | None = None,
    ) -> None:
        super().__init__(message, zone_kind=zone_kind, zone_id=zone_id)
        self.likely_swapped = likely_swapped


class ZoneAttributeError(GeofenceError):
    """A zone field outside the seeds' limits (e.g. ``max_speed`` not in 6..25 km/h)."""

    def __init__(
        self,
        field: str,
        value: object,
        message: str,
        *,
        zone_kind: str | None = None,
        zone_id: int | None = None,
    ) -> None:
        super().__init__(f"{field}={value!r}: {message}", zone_kind=zone_kind, zone_id=zone_id)
        self.field = field
        self.value = value


class DuplicateZoneError(GeofenceError):
    """Two zones of the same kind share an identifier in one network."""
