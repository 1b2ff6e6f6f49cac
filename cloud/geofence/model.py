"""The zones of a network, with the seeds' field names (dashboard API, group Geofencing).

- network border: ``network_id``, ``shape`` and the border settings ``trigger_alert``,
  ``notify_user``, ``reduce_vehicle_speed``, ``play_vehicle_sound``, ``lock_vehicle``;
  plus ``outside_return_policy`` (:class:`OutsideReturnPolicy`, ours: what a free-float
  return outside the border does).
- speed zone: ``speed_zone_id``, ``network_id``, ``shape``, ``max_speed`` (km/h, 6..25).
- virtual parking: ``virtual_parking_id``, ``network_id``, ``cluster_id`` (or None),
  ``shape``, ``capacity`` (>= 0).
- forbidden zone: ``forbidden_zone_id``, ``network_id``, ``shape``, ``name`` (the seeds
  only name the event ``vehicule.position.forbidden``; the fields follow the others).

Shapes are shapely Polygon / MultiPolygon in lon/lat (EPSG:4326), validated on
construction. GeoJSON Features in and out: :meth:`NetworkZones.to_feature_collection`,
:meth:`NetworkZones.from_feature_collection`; each Feature carries ``zone_type`` and
the seed fields in ``properties``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import shapely
from shapely.geometry import MultiPolygon, Polygon

from kickstand.cloud.geofence.errors import (
    CoordinateOrderError,
    DuplicateZoneError,
    GeoJSONError,
    ZoneAttributeError,
    ZoneOutsideBorderError,
)
from kickstand.cloud.geofence.geojson import ZoneShape, parse_zone_shape, to_geojson, validate_shape

# The seeds' limits for a speed zone's ``max_speed`` (km/h).
MAX_SPEED_MIN = 6
MAX_SPEED_MAX = 25


class ZoneType(enum.StrEnum):
    """``zone_type`` in a Feature's properties."""

    BORDER = "border"
    SPEED_ZONE = "speed_zone"
    VIRTUAL_PARKING = "virtual_parking"
    FORBIDDEN_ZONE = "forbidden_zone"


class OutsideReturnPolicy(enum.StrEnum):
    """What a free-float return outside the network border does."""

    REFUSE = "refuse"  # the lock is refused; the trip keeps running
    ALERT = "alert"  # the trip ends, and a fleet alert is raised


def _shape(value: object, kind: ZoneType, zone_id: int | None) -> ZoneShape:
    if isinstance(value, Polygon | MultiPolygon):
        return validate_shape(value, zone_kind=kind.value, zone_id=zone_id)
    return parse_zone_shape(value, zone_kind=kind.value, zone_id=zone_id)


def _positive_id(name: str, value: object, kind: ZoneType) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ZoneAttributeError(name, value, "must be an integer >= 1", zone_kind=kind.value)
    return value


def _flag(name: str, value: object, kind: ZoneType) -> bool:
    if not isinstance(value, bool):
        raise ZoneAttributeError(name, value, "must be a boolean", zone_kind=kind.value)
    return value


@dataclass(frozen=True, slots=True)
class NetworkBorder:
    network_id: int
    shape: ZoneShape
    trigger_alert: bool = True
    notify_user: bool = True
    reduce_vehicle_speed: bool = False
    play_vehicle_sound: bool = False
    lock_vehicle: bool = False
    outside_return_policy: OutsideReturnPolicy = OutsideReturnPolicy.REFUSE

    def __post_init__(self) -> None:
        kind = ZoneType.BORDER
        _positive_id("network_id", self.network_id, kind)
        object.__setattr__(self, "shape", _shape(self.shape, kind, self.network_id))
        for name in (
            "trigger_alert",
            "notify_user",
            "reduce_vehicle_speed",
            "play_vehicle_sound",
            "lock_vehicle",
        ):
            _flag(name, getattr(self, name), kind)
        try:
            policy = OutsideReturnPolicy(self.outside_return_policy)
        except ValueError:
            raise ZoneAttributeError(
                "outside_return_policy",
                self.outside_return_policy,
                "must be 'refuse' or 'alert'",
                zone_kind=kind.value,
            ) from None
        object.__setattr__(self, "outside_return_policy", policy)

    def properties(self) -> dict[str, Any]:
        return {
            "zone_type": ZoneType.BORDER.value,
            "network_id": self.network_id,
            "trigger_alert": self.trigger_alert,
            "notify_user": self.notify_user,
            "reduce_vehicle_speed": self.reduce_vehicle_speed,
            "play_vehicle_sound": self.play_vehicle_sound,
            "lock_vehicle": self.lock_vehicle,
            "outside_return_policy": self.outside_return_policy.value,
        }


@dataclass(frozen=True, slots=True)
class SpeedZone:
    speed_zone_id: int
    network_id: int
    shape: ZoneShape
    max_speed: int

    def __post_init__(self) -> None:
        kind = ZoneType.SPEED_ZONE
        _positive_id("speed_zone_id", self.speed_zone_id, kind)
        _positive_id("network_id", self.network_id, kind)
        ms = self.max_speed
        if (
            isinstance(ms, bool)
            or not isinstance(ms, int)
            or not (MAX_SPEED_MIN <= ms <= MAX_SPEED_MAX)
        ):
            raise ZoneAttributeError(
                "max_speed",
                ms,
                f"must be an integer in {MAX_SPEED_MIN}..{MAX_SPEED_MAX}",
                zone_kind=kind.value,
                zone_id=self.speed_zone_id,
            )
        object.__setattr__(self, "shape", _shape(self.shape, kind, self.speed_zone_id))

    @property
    def zone_id(self) -> int:
        return self.speed_zone_id

    def properties(self) -> dict[str, Any]:
        return {
            "zone_type": ZoneType.SPEED_ZONE.value,
            "speed_zone_id": self.speed_zone_id,
            "network_id": self.network_id,
            "max_speed": self.max_speed,
        }


@dataclass(frozen=True, slots=True)
class VirtualParking:
    virtual_parking_id: int
    network_id: int
    shape: ZoneShape
    capacity: int = 0
    cluster_id: int | None = None

    def __post_init__(self) -> None:
        kind = ZoneType.VIRTUAL_PARKING
        _positive_id("virtual_parking_id", self.virtual_parking_id, kind)
        _positive_id("network_id", self.network_id, kind)
        if self.cluster_id is not None:
            _positive_id("cluster_id", self.cluster_id, kind)
        cap = self.capacity
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
            raise ZoneAttributeError(
                "capacity",
                cap,
                "must be an integer >= 0",
                zone_kind=kind.value,
                zone_id=self.virtual_parking_id,
            )
        object.__setattr__(self, "shape", _shape(self.shape, kind, self.virtual_parking_id))

    @property
    def zone_id(self) -> int:
        return self.virtual_parking_id

    def properties(self) -> dict[str, Any]:
        return {
            "zone_type": ZoneType.VIRTUAL_PARKING.value,
            "virtual_parking_id": self.virtual_parking_id,
            "network_id": self.network_id,
            "cluster_id": self.cluster_id,
            "capacity": self.capacity,
        }


@dataclass(frozen=True, slots=True)
class ForbiddenZone:
    forbidden_zone_id: int
    network_id: int
    shape: ZoneShape
    name: str = ""

    def __post_init__(self) -> None:
        kind = ZoneType.FORBIDDEN_ZONE
        _positive_id("forbidden_zone_id", self.forbidden_zone_id, kind)
        _positive_id("network_id", self.network_id, kind)
        if not isinstance(self.name, str) or len(self.name) > 128:
            raise ZoneAttributeError(
                "name",
                self.name,
                "must be a string of at most 128 chars",
                zone_kind=kind.value,
                zone_id=self.forbidden_zone_id,
            )
        object.__setattr__(self, "shape", _shape(self.shape, kind, self.forbidden_zone_id))

    @property
    def zone_id(self) -> int:
        return self.forbidden_zone_id

    def properties(self) -> dict[str, Any]:
        return {
            "zone_type": ZoneType.FORBIDDEN_ZONE.value,
            "forbidden_zone_id": self.forbidden_zone_id,
            "network_id": self.network_id,
            "name": self.name,
        }


Zone = SpeedZone | VirtualParking | ForbiddenZone


def check_within_border(
    border: ZoneShape, shape: ZoneShape, *, zone_kind: str | None = None, zone_id: int | None = None
) -> None:
    """Refuse a zone lying entirely outside the network border.

    When the zone's shape with each position swapped does touch the border, the
    client most likely sent [lat, lon]: :class:`CoordinateOrderError` (this is how a
    swapped Lyon polygon, whose swapped values are still in range, is caught).
    Otherwise :class:`ZoneOutsideBorderError`.
    """
    if shapely.intersects(border, shape):
        return
    swapped = shapely.transform(shape, lambda c: c[:, ::-1])
    if shapely.intersects(border, swapped):
        x, y = shapely.get_coordinates(shape)[0]
        raise CoordinateOrderError(
            "zone lies outside the network border but its [lat, lon]-swapped shape does not: "
            "positions must be [lon, lat]",
            lon=float(x),
            lat=float(y),
            index=0,
            zone_kind=zone_kind,
            zone_id=zone_id,
        )
    raise ZoneOutsideBorderError(
        "zone lies entirely outside the network border",
        likely_swapped=False,
        zone_kind=zone_kind,
        zone_id=zone_id,
    )


@dataclass(frozen=True, slots=True)
class NetworkZones:
    """All zones of one network: what a :class:`GeofenceIndex` is built from.

    ``default_max_speed`` is the speed sent to a vehicle leaving its last speed zone
    (km/h; None means "the vehicle's own configured maximum"). ``version`` is any
    value that changes when a zone changes (e.g. a max ``updated_at``), carried by the
    index so callers can tell a stale one.
    """

    network_id: int
    border: NetworkBorder | None = None
    speed_zones: tuple[SpeedZone, ...] = ()
    virtual_parkings: tuple[VirtualParking, ...] = ()
    forbidden_zones: tuple[ForbiddenZone, ...] = ()
    default_max_speed: int | None = None
    version: int = 0

    def __post_init__(self) -> None:
        _positive_id("network_id", self.network_id, ZoneType.BORDER)
        for name in ("speed_zones", "virtual_parkings", "forbidden_zones"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.default_max_speed is not None:
            dms = self.default_max_speed
            if isinstance(dms, bool) or not isinstance(dms, int) or dms < MAX_SPEED_MIN:
                raise ZoneAttributeError(
                    "default_max_speed", dms, f"must be None or an integer >= {MAX_SPEED_MIN}"
                )
        if self.border is not None and self.border.network_id != self.network_id:
            raise ZoneAttributeError(
                "network_id",
                self.border.network_id,
                f"border belongs to another network than {self.network_id}",
                zone_kind=ZoneType.BORDER.value,
            )
        for zones, kind in (
            (self.speed_zones, ZoneType.SPEED_ZONE),
            (self.virtual_parkings, ZoneType.VIRTUAL_PARKING),
            (self.forbidden_zones, ZoneType.FORBIDDEN_ZONE),
        ):
            seen: set[int] = set()
            for z in zones:
                if z.network_id != self.network_id:
                    raise ZoneAttributeError(
                        "network_id",
                        z.network_id,
                        f"zone belongs to another network than {self.network_id}",
                        zone_kind=kind.value,
                        zone_id=z.zone_id,
                    )
                if z.zone_id in seen:
                    raise DuplicateZoneError(
                        f"duplicate {kind.value} id {z.zone_id}",
                        zone_kind=kind.value,
                        zone_id=z.zone_id,
                    )
                seen.add(z.zone_id)
                if self.border is not None:
                    check_within_border(
                        self.border.shape, z.shape, zone_kind=kind.value, zone_id=z.zone_id
                    )

    def zones(self) -> Iterable[Zone]:
        yield from self.speed_zones
        yield from self.virtual_parkings
        yield from self.forbidden_zones

    def to_feature_collection(self) -> dict[str, Any]:
        """GeoJSON FeatureCollection of every zone (border first), ``[lon, lat]`` positions."""
        features: list[dict[str, Any]] = []
        if self.border is not None:
            features.append(_feature(self.border.shape, self.border.properties()))
        features.extend(_feature(z.shape, z.properties()) for z in self.zones())
        return {
            "type": "FeatureCollection",
            "properties": {
                "network_id": self.network_id,
                "default_max_speed": self.default_max_speed,
                "version": self.version,
            },
            "features": features,
        }

    @classmethod
    def from_feature_collection(cls, doc: object, *, network_id: int | None = None) -> NetworkZones:
        """Inverse of :meth:`to_feature_collection`; typed errors on anything malformed."""
        if not isinstance(doc, Mapping) or doc.get("type") != "FeatureCollection":
            raise GeoJSONError("expected a GeoJSON FeatureCollection")
        top = doc.get("properties") or {}
        if not isinstance(top, Mapping):
            raise GeoJSONError("FeatureCollection properties must be an object")
        nid = network_id if network_id is not None else top.get("network_id")
        if isinstance(nid, bool) or not isinstance(nid, int):
            raise GeoJSONError(f"network_id must be an integer, got {nid!r}")
        feats = doc.get("features")
        if not isinstance(feats, list):
            raise GeoJSONError("FeatureCollection 'features' must be an array")
        border: NetworkBorder | None = None
        speed: list[SpeedZone] = []
        parkings: list[VirtualParking] = []
        forbidden: list[ForbiddenZone] = []
        for f in feats:
            if not isinstance(f, Mapping) or f.get("type") != "Feature":
                raise GeoJSONError("every member of 'features' must be a Feature")
            props = f.get("properties")
            if not isinstance(props, Mapping):
                raise GeoJSONError("a zone Feature needs 'properties' with 'zone_type'")
            p = dict(props)
            ztype = p.pop("zone_type", None)
            p.setdefault("network_id", nid)
            geom = f.get("geometry")
            try:
                if ztype == ZoneType.BORDER:
                    if border is not None:
                        raise DuplicateZoneError(
                            "more than one border Feature", zone_kind=ZoneType.BORDER.value
                        )
                    border = NetworkBorder(shape=geom, **p)
                elif ztype == ZoneType.SPEED_ZONE:
                    speed.append(SpeedZone(shape=geom, **p))
                elif ztype == ZoneType.VIRTUAL_PARKING:
                    parkings.append(VirtualParking(shape=geom, **p))
                elif ztype == ZoneType.FORBIDDEN_ZONE:
                    forbidden.append(ForbiddenZone(shape=geom, **p))
                else:
                    raise GeoJSONError(f"unknown zone_type {ztype!r}")
            except TypeError as exc:  # unknown or missing property names
                raise GeoJSONError(f"bad properties for {ztype!r}: {exc}") from None
        return cls(
            network_id=nid,
            border=border,
            speed_zones=tuple(speed),
            virtual_parkings=tuple(parkings),
            forbidden_zones=tuple(forbidden),
            default_max_speed=top.get("default_max_speed"),
            version=top.get("version", 0),
        )


def _feature(shape: ZoneShape, props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "geometry": to_geojson(shape), "properties": props}
