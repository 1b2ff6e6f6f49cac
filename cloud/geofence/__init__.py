"""Geofencing: network border, speed zones, virtual parkings, forbidden zones.

Build a :class:`GeofenceIndex` once per network from its :class:`NetworkZones`
(rebuild on any zone change), check positions against it, track vehicles' zone
transitions with :class:`VehicleZoneTracker`, and judge free-float returns with
:func:`return_verdict`.
"""

from kickstand.cloud.geofence.errors import (
    CoordinateOrderError,
    CoordinateRangeError,
    DuplicateZoneError,
    EmptyGeometryError,
    GeofenceError,
    GeoJSONError,
    InvalidGeometryError,
    SelfIntersectionError,
    UnsupportedGeometryError,
    ZoneAttributeError,
    ZoneOutsideBorderError,
)
from kickstand.cloud.geofence.geojson import (
    ZoneShape,
    parse_geometry,
    parse_shape,
    parse_zone_shape,
    to_geojson,
    to_shape,
    validate_shape,
)
from kickstand.cloud.geofence.index import GeofenceIndex, GeofenceVerdict
from kickstand.cloud.geofence.model import (
    MAX_SPEED_MAX,
    MAX_SPEED_MIN,
    ForbiddenZone,
    NetworkBorder,
    NetworkZones,
    OutsideReturnPolicy,
    SpeedZone,
    VirtualParking,
    Zone,
    ZoneType,
    check_within_border,
)
from kickstand.cloud.geofence.returns import ReturnKind, ReturnVerdict, return_verdict
from kickstand.cloud.geofence.tracker import (
    ForbiddenZoneEntered,
    ForbiddenZoneLeft,
    NetworkAreaEntered,
    NetworkAreaLeft,
    SpeedZoneEntered,
    SpeedZoneLeft,
    VehicleZoneState,
    VehicleZoneTracker,
    ZoneEvent,
)

__all__ = [
    "MAX_SPEED_MAX",
    "MAX_SPEED_MIN",
    "CoordinateOrderError",
    "CoordinateRangeError",
    "DuplicateZoneError",
    "EmptyGeometryError",
    "ForbiddenZone",
    "ForbiddenZoneEntered",
    "ForbiddenZoneLeft",
    "GeoJSONError",
    "GeofenceError",
    "GeofenceIndex",
    "GeofenceVerdict",
    "InvalidGeometryError",
    "NetworkAreaEntered",
    "NetworkAreaLeft",
    "NetworkBorder",
    "NetworkZones",
    "OutsideReturnPolicy",
    "ReturnKind",
    "ReturnVerdict",
    "SelfIntersectionError",
    "SpeedZone",
    "SpeedZoneEntered",
    "SpeedZoneLeft",
    "UnsupportedGeometryError",
    "VehicleZoneState",
    "VehicleZoneTracker",
    "VirtualParking",
    "Zone",
    "ZoneAttributeError",
    "ZoneEvent",
    "ZoneOutsideBorderError",
    "ZoneShape",
    "ZoneType",
    "check_within_border",
    "parse_geometry",
    "parse_shape",
    "parse_zone_shape",
    "return_verdict",
    "to_geojson",
    "to_shape",
    "validate_shape",
]
