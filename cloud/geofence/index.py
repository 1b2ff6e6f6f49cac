"""GeofenceIndex: every zone of one network, queried for a position in microseconds.

Built once per network (and again whenever its zones change; the index itself never
changes) from a :class:`NetworkZones`:

- the zones' shapes (copies) are prepared and put in an STRtree;
- from the tree, with vectorised queries, a uniform grid over the network (cells of
  at least 25 m, at most 256 per side) records per cell the zones touching it, each
  flagged when it covers the whole cell, and whether the border covers, cuts or
  misses the cell.

:meth:`GeofenceIndex.check` then costs two multiplications, a dict lookup and a
prepared point-in-polygon test only for the zones whose edge crosses the position's
cell: a few microseconds, however many zones (``benchmarks/geofence_check.py``).
:meth:`GeofenceIndex.check_many` queries the STRtree for a whole batch at once.

Zones are closed sets: a position exactly on a zone's edge is in the zone (inside
the border, inside a parking, inside a speed zone...).

Distances (for the tracker's hysteresis and the parking tolerance) are in metres in
a local equirectangular frame centred on the network, accurate to well under 1 %
over a city.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry import Point

from kickstand.cloud.geofence.errors import CoordinateRangeError
from kickstand.cloud.geofence.geojson import ZoneShape
from kickstand.cloud.geofence.model import (
    ForbiddenZone,
    NetworkBorder,
    NetworkZones,
    SpeedZone,
    VirtualParking,
    ZoneType,
)

EARTH_RADIUS_M = 6_371_008.8

_SPEED, _PARKING, _FORBIDDEN = 0, 1, 2
_KIND_CODE = {
    ZoneType.SPEED_ZONE: _SPEED,
    ZoneType.VIRTUAL_PARKING: _PARKING,
    ZoneType.FORBIDDEN_ZONE: _FORBIDDEN,
}


@dataclass(frozen=True, slots=True)
class GeofenceVerdict:
    """Where a position stands in a network's zones.

    ``max_speed`` is the lowest ``max_speed`` of the speed zones containing the
    position (``speed_zone_id`` is the zone imposing it), None outside every speed
    zone. When zones of one kind overlap, the single-id fields give the lowest id and
    the ``*_ids`` tuples (sorted) give them all.
    """

    inside_network: bool
    max_speed: int | None = None
    speed_zone_id: int | None = None
    virtual_parking_id: int | None = None
    forbidden_zone_id: int | None = None
    speed_zone_ids: tuple[int, ...] = ()
    virtual_parking_ids: tuple[int, ...] = ()
    forbidden_zone_ids: tuple[int, ...] = ()


_IN = GeofenceVerdict(inside_network=True)
_OUT = GeofenceVerdict(inside_network=False)

# Grid cell states against the border.
_NONE, _FULL, _PARTIAL = 0, 1, 2
# Grid sizing: cells of at least this many metres, at most this many per side.
GRID_MIN_CELL_M = 25.0
GRID_MAX_SIDE = 256
# Cells are widened by this much (degrees, ~0.1 mm) when classified, so a position
# whose cell index is off by a rounding error still finds every zone it is in.
_CELL_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class _Grid:
    """A uniform grid over the network: per cell, the zones touching it, each flagged
    "covers the whole cell" (no point-in-polygon test needed), and the border's state.

    Built from the STRtree with vectorised queries; lets :meth:`GeofenceIndex.check`
    skip the tree query and, for most positions, every GEOS call.
    """

    minx: float
    miny: float
    inv_cw: float
    inv_ch: float
    nx: int
    ny: int
    cells: dict[int, tuple[tuple[int, bool], ...]]
    border_state: bytes

    @staticmethod
    def build(
        geoms: np.ndarray, tree: shapely.STRtree, border: Any, kx: float, ky: float
    ) -> _Grid | None:
        parts = [shapely.total_bounds(geoms)] if len(geoms) else []
        if border is not None:
            parts.append(np.asarray(shapely.bounds(border)))
        if not parts:
            return None
        b = np.array(parts)
        pad = 1e-6  # degrees: positions on the outermost edges stay inside the grid
        minx, miny = float(b[:, 0].min()) - pad, float(b[:, 1].min()) - pad
        maxx, maxy = float(b[:, 2].max()) + pad, float(b[:, 3].max()) + pad
        w_m, h_m = (maxx - minx) * kx, (maxy - miny) * ky
        cell_m = max(GRID_MIN_CELL_M, max(w_m, h_m) / GRID_MAX_SIDE)
        nx = max(1, math.ceil(w_m / cell_m))
        ny = max(1, math.ceil(h_m / cell_m))
        cw, ch = (maxx - minx) / nx, (maxy - miny) / ny
        gi, gj = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
        ii, jj = gi.ravel(), gj.ravel()  # cell key = i * ny + j, matching ravel order
        boxes = shapely.box(
            minx + ii * cw - _CELL_EPS,
            miny + jj * ch - _CELL_EPS,
            minx + (ii + 1) * cw + _CELL_EPS,
            miny + (jj + 1) * ch + _CELL_EPS,
        )
        cells: dict[int, list[tuple[int, bool]]] = {}
        if len(geoms):
            box_idx, rows = tree.query(boxes, predicate="intersects")
            full = shapely.covers(geoms[rows], boxes[box_idx])
            for k, r, f in zip(box_idx.tolist(), rows.tolist(), full.tolist(), strict=True):
                cells.setdefault(k, []).append((r, f))
        if border is not None:
            state = np.where(
                shapely.covers(border, boxes),
                _FULL,
                np.where(shapely.intersects(border, boxes), _PARTIAL, _NONE),
            )
            border_state = state.astype(np.uint8).tobytes()
        else:
            border_state = b""
        return _Grid(
            minx,
            miny,
            1.0 / cw,
            1.0 / ch,
            nx,
            ny,
            {k: tuple(v) for k, v in cells.items()},
            border_state,
        )


def _check_lon_lat(lon: float, lat: float) -> None:
    # Chained comparisons are False for NaN, so this also refuses NaN.
    try:
        ok = -180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0
    except TypeError:  # None, a string...
        ok = False
    if not ok:
        raise CoordinateRangeError(
            f"position [{lon}, {lat}] outside lon [-180, 180] / lat [-90, 90]", lon=lon, lat=lat
        )


class GeofenceIndex:
    """Immutable spatial index over one network's zones. See the module docstring."""

    __slots__ = (
        "_border",
        "_border_geom",
        "_border_metric",
        "_frozen",
        "_geom_list",
        "_geoms",
        "_grid",
        "_ids",
        "_kinds",
        "_kx",
        "_ky",
        "_lat0",
        "_lon0",
        "_max_speeds",
        "_metric",
        "_parking_metric_tree",
        "_parking_rows",
        "_row_info",
        "_rows_by_key",
        "_tree",
        "_zones",
    )

    def __init__(self, zones: NetworkZones) -> None:
        self._zones = zones
        self._border: NetworkBorder | None = zones.border
        entries: list[tuple[int, int, ZoneShape, int]] = []
        for z in zones.speed_zones:
            entries.append((_SPEED, z.speed_zone_id, z.shape, z.max_speed))
        for p in zones.virtual_parkings:
            entries.append((_PARKING, p.virtual_parking_id, p.shape, 0))
        for f in zones.forbidden_zones:
            entries.append((_FORBIDDEN, f.forbidden_zone_id, f.shape, 0))
        # Copies, so preparing them never touches the caller's shapes.
        geoms = np.array([shapely.from_wkb(shapely.to_wkb(e[2])) for e in entries], dtype=object)
        shapely.prepare(geoms)
        self._geoms = geoms
        self._kinds = np.array([e[0] for e in entries], dtype=np.int8)
        self._ids = np.array([e[1] for e in entries], dtype=np.int64)
        self._max_speeds = np.array([e[3] for e in entries], dtype=np.int64)
        for arr in (self._geoms, self._kinds, self._ids, self._max_speeds):
            arr.flags.writeable = False
        self._tree = shapely.STRtree(geoms)
        self._rows_by_key = {
            (int(k), int(i)): row
            for row, (k, i) in enumerate(zip(self._kinds, self._ids, strict=True))
        }

        if self._border is not None:
            border_geom = shapely.from_wkb(shapely.to_wkb(self._border.shape))
            shapely.prepare(border_geom)
            self._border_geom: Any = border_geom
            bounds = shapely.bounds(border_geom)
        else:
            self._border_geom = None
            bounds = shapely.total_bounds(geoms) if len(geoms) else np.array([0.0, 0.0, 0, 0])
        self._lon0 = float(bounds[0] + bounds[2]) / 2.0
        self._lat0 = float(bounds[1] + bounds[3]) / 2.0
        self._ky = EARTH_RADIUS_M * math.pi / 180.0
        self._kx = self._ky * math.cos(math.radians(self._lat0))
        self._metric = np.array([self._to_metric(g) for g in geoms], dtype=object)
        self._metric.flags.writeable = False
        self._border_metric = self._to_metric(border_geom) if self._border is not None else None
        self._parking_rows = np.flatnonzero(self._kinds == _PARKING)
        self._parking_metric_tree = shapely.STRtree(self._metric[self._parking_rows])
        self._geom_list: list[Any] = list(geoms)
        self._row_info: list[tuple[int, int, int]] = [(e[0], e[1], e[3]) for e in entries]
        self._grid = _Grid.build(geoms, self._tree, self._border_geom, self._kx, self._ky)
        self._frozen = True

    def __setattr__(self, name: str, value: object) -> None:
        if getattr(self, "_frozen", False):
            raise AttributeError("GeofenceIndex is immutable; build a new one from the zones")
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return (
            f"GeofenceIndex(network_id={self.network_id}, version={self.version}, "
            f"zones={len(self._ids)}, border={self._border is not None})"
        )

    # -- what it was built from ------------------------------------------------------------

    @classmethod
    def build(cls, zones: NetworkZones) -> GeofenceIndex:
        return cls(zones)

    @property
    def zones(self) -> NetworkZones:
        return self._zones

    @property
    def network_id(self) -> int:
        return self._zones.network_id

    @property
    def version(self) -> int:
        return self._zones.version

    @property
    def border(self) -> NetworkBorder | None:
        return self._border

    @property
    def default_max_speed(self) -> int | None:
        return self._zones.default_max_speed

    def __len__(self) -> int:
        return len(self._ids)

    def speed_zone(self, speed_zone_id: int) -> SpeedZone:
        """The speed zone with this id (KeyError if none)."""
        for z in self._zones.speed_zones:
            if z.speed_zone_id == speed_zone_id:
                return z
        raise KeyError(speed_zone_id)

    def virtual_parking(self, virtual_parking_id: int) -> VirtualParking:
        for p in self._zones.virtual_parkings:
            if p.virtual_parking_id == virtual_parking_id:
                return p
        raise KeyError(virtual_parking_id)

    def forbidden_zone(self, forbidden_zone_id: int) -> ForbiddenZone:
        for f in self._zones.forbidden_zones:
            if f.forbidden_zone_id == forbidden_zone_id:
                return f
        raise KeyError(forbidden_zone_id)

    def max_speed_for(self, speed_zone_ids: Sequence[int] | frozenset[int]) -> int | None:
        """The lowest ``max_speed`` among these speed zones (unknown ids ignored), or None."""
        speeds = [
            int(self._max_speeds[row])
            for i in speed_zone_ids
            if (row := self._rows_by_key.get((_SPEED, i))) is not None
        ]
        return min(speeds) if speeds else None

    # -- the hot path ----------------------------------------------------------------------

    def check(self, lon: float, lat: float) -> GeofenceVerdict:
        """Where (lon, lat) stands; :class:`CoordinateRangeError` on an impossible position."""
        try:
            ok = -180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0
        except TypeError:
            ok = False
        if not ok:
            _check_lon_lat(lon, lat)
        g = self._grid
        if g is None:  # no border and no zones
            return _IN
        fx = (lon - g.minx) * g.inv_cw
        fy = (lat - g.miny) * g.inv_ch
        if not (0.0 <= fx < g.nx and 0.0 <= fy < g.ny):
            # The grid spans every zone and the border, with a margin.
            return _IN if self._border_geom is None else _OUT
        key = int(fx) * g.ny + int(fy)
        if self._border_geom is None:
            inside = True
        else:
            state = g.border_state[key]
            inside = state == _FULL or (
                state == _PARTIAL and bool(shapely.intersects_xy(self._border_geom, lon, lat))
            )
        cands = g.cells.get(key)
        if cands is None:
            return _IN if inside else _OUT
        geoms = self._geom_list
        rows = [row for row, full in cands if full or shapely.intersects_xy(geoms[row], lon, lat)]
        return self._verdict(inside, rows)

    def check_many(
        self, lons: Sequence[float] | np.ndarray, lats: Sequence[float] | np.ndarray
    ) -> list[GeofenceVerdict]:
        """:meth:`check` for many positions at once (one vectorised tree query)."""
        x, y = np.asarray(lons), np.asarray(lats)
        for arr in (x, y):
            if arr.size and arr.dtype.kind not in "fiu":
                raise CoordinateRangeError(
                    f"positions must be numbers, got dtype {arr.dtype}", lon=lons, lat=lats
                )
        x, y = x.astype(float, copy=False), y.astype(float, copy=False)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError("lons and lats must be 1-D sequences of the same length")
        bad = ~((x >= -180.0) & (x <= 180.0) & (y >= -90.0) & (y <= 90.0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise CoordinateRangeError(
                f"position {i} [{x[i]}, {y[i]}] out of range",
                lon=float(x[i]),
                lat=float(y[i]),
                index=i,
            )
        if self._border_geom is None:
            inside = np.ones(len(x), dtype=bool)
        else:
            inside = shapely.intersects_xy(self._border_geom, x, y)
        per_point: list[list[int]] = [[] for _ in range(len(x))]
        if len(self._ids):
            pts, rows = self._tree.query(shapely.points(x, y), predicate="intersects")
            for p, r in zip(pts.tolist(), rows.tolist(), strict=True):
                per_point[p].append(r)
        return [self._verdict(bool(inside[i]), per_point[i]) for i in range(len(x))]

    def _verdict(self, inside: bool, rows: Any) -> GeofenceVerdict:
        if len(rows) == 0:
            return _IN if inside else _OUT
        speed: list[tuple[int, int]] = []
        parking: list[int] = []
        forbidden: list[int] = []
        info = self._row_info
        for row in rows:
            kind, zone_id, max_speed_ = info[row]
            if kind == _SPEED:
                speed.append((max_speed_, zone_id))
            elif kind == _PARKING:
                parking.append(zone_id)
            else:
                forbidden.append(zone_id)
        max_speed = speed_zone_id = None
        if speed:
            max_speed, speed_zone_id = min(speed)
        parking.sort()
        forbidden.sort()
        return GeofenceVerdict(
            inside_network=inside,
            max_speed=max_speed,
            speed_zone_id=speed_zone_id,
            virtual_parking_id=parking[0] if parking else None,
            forbidden_zone_id=forbidden[0] if forbidden else None,
            speed_zone_ids=tuple(sorted(i for _, i in speed)),
            virtual_parking_ids=tuple(parking),
            forbidden_zone_ids=tuple(forbidden),
        )

    # -- distances (off the hot path) ------------------------------------------------------

    def _to_metric(self, geom: Any) -> Any:
        lon0, lat0, kx, ky = self._lon0, self._lat0, self._kx, self._ky
        return shapely.transform(
            geom, lambda c: np.column_stack(((c[:, 0] - lon0) * kx, (c[:, 1] - lat0) * ky))
        )

    def _metric_point(self, lon: float, lat: float) -> Point:
        return Point((lon - self._lon0) * self._kx, (lat - self._lat0) * self._ky)

    def distance_m(self, zone_type: ZoneType | str, zone_id: int, lon: float, lat: float) -> float:
        """Metres from (lon, lat) to the zone (0 inside or on its edge). KeyError if unknown.

        ``zone_type`` ``border`` measures to the border (``zone_id`` ignored; 0 when the
        network has none).
        """
        _check_lon_lat(lon, lat)
        zt = ZoneType(zone_type)
        if zt is ZoneType.BORDER:
            return self.border_distance_m(lon, lat)
        row = self._rows_by_key[(_KIND_CODE[zt], zone_id)]
        return float(shapely.distance(self._metric[row], self._metric_point(lon, lat)))

    def border_distance_m(self, lon: float, lat: float) -> float:
        """Metres outside the border (0 inside it, on it, or when the network has none)."""
        _check_lon_lat(lon, lat)
        if self._border_metric is None:
            return 0.0
        return float(shapely.distance(self._border_metric, self._metric_point(lon, lat)))

    def nearest_parking(
        self, lon: float, lat: float, max_distance_m: float
    ) -> tuple[int, float] | None:
        """(virtual_parking_id, metres) of the closest parking within ``max_distance_m``."""
        _check_lon_lat(lon, lat)
        if len(self._parking_rows) == 0 or not max_distance_m >= 0.0:
            return None
        pt = self._metric_point(lon, lat)
        hits, dists = self._parking_metric_tree.query_nearest(
            pt, max_distance=max_distance_m, return_distance=True, all_matches=True
        )
        if len(hits) == 0:
            return None
        best = min(zip(dists.tolist(), self._ids[self._parking_rows[hits]].tolist(), strict=True))
        return int(best[1]), float(best[0])
