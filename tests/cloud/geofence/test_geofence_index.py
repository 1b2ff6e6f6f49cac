"""GeofenceIndex against the Lyon network and against a naive shapely oracle."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Point

from kickstand.cloud.geofence import (
    CoordinateRangeError,
    GeofenceIndex,
    GeofenceVerdict,
    NetworkZones,
    SpeedZone,
    VirtualParking,
    ZoneType,
)
from tests.cloud.geofence.geofence_lyon import NETWORK_ID, lyon_zones, polygon


def test_outside_every_zone_but_inside_border(index: GeofenceIndex) -> None:
    assert index.check(4.80, 45.75) == GeofenceVerdict(inside_network=True)


def test_outside_border(index: GeofenceIndex) -> None:
    v = index.check(4.60, 45.75)  # Craponne-ish, west of the border
    assert not v.inside_network
    assert v.max_speed is None and v.virtual_parking_id is None


def test_lowest_of_overlapping_speed_zones_applies(index: GeofenceIndex) -> None:
    v = index.check(4.8315, 45.7562)  # Bellecour: zones 1 (15) and 2 (8), parking 10
    assert v.speed_zone_ids == (1, 2)
    assert v.max_speed == 8 and v.speed_zone_id == 2
    assert v.virtual_parking_id == 10
    v = index.check(4.827, 45.765)  # Presqu'île north: zone 1 only
    assert (v.max_speed, v.speed_zone_id, v.speed_zone_ids) == (15, 1, (1,))


def test_multipolygon_parking_both_parts_and_the_gap(index: GeofenceIndex) -> None:
    assert index.check(4.8555, 45.7602).virtual_parking_id == 11
    assert index.check(4.8605, 45.7602).virtual_parking_id == 11
    gap = index.check(4.8580, 45.7602)
    assert gap.virtual_parking_id is None and gap.max_speed == 20


def test_hole_in_forbidden_zone_is_allowed(index: GeofenceIndex) -> None:
    assert index.check(4.847, 45.777).forbidden_zone_id == 20
    assert index.check(4.852, 45.777).forbidden_zone_id is None  # on the lake


@pytest.mark.parametrize(
    ("lon", "lat"),
    [
        (4.825, 45.760),
        (4.840, 45.760),
        (4.830, 45.750),
        (4.830, 45.770),  # edges
        (4.825, 45.750),
        (4.840, 45.770),
    ],  # corners
)
def test_points_on_edges_are_in_the_zone(index: GeofenceIndex, lon: float, lat: float) -> None:
    assert 1 in index.check(lon, lat).speed_zone_ids


def test_point_on_the_border_edge_is_inside(index: GeofenceIndex) -> None:
    assert index.check(4.77, 45.75).inside_network
    assert index.check(4.92, 45.81).inside_network
    assert not index.check(math.nextafter(4.77, 0.0), 45.75).inside_network


def test_point_on_the_hole_edge_is_in_the_forbidden_zone(index: GeofenceIndex) -> None:
    assert index.check(4.851, 45.777).forbidden_zone_id == 20
    assert index.check(math.nextafter(4.851, 5.0), 45.777).forbidden_zone_id is None


@pytest.mark.parametrize(
    ("lon", "lat"),
    [
        (181.0, 45.0),
        (4.8, 91.0),
        (math.nan, 45.0),
        (4.8, math.inf),
        (-180.5, 0.0),
        (None, 45.0),
        ("4.8", 45.0),
    ],
)
def test_impossible_positions_raise(index: GeofenceIndex, lon: float, lat: float) -> None:
    with pytest.raises(CoordinateRangeError):
        index.check(lon, lat)
    with pytest.raises(CoordinateRangeError):
        index.check_many([4.8, lon], [45.7, lat])


def test_index_is_immutable(index: GeofenceIndex) -> None:
    with pytest.raises(AttributeError):
        index._tree = None
    with pytest.raises(ValueError):
        index._ids[0] = 99


def test_index_does_not_prepare_the_callers_shapes(zones: NetworkZones) -> None:
    assert not shapely.is_prepared(zones.speed_zones[0].shape)


def test_network_without_border_or_zones() -> None:
    idx = GeofenceIndex(NetworkZones(network_id=3))
    assert idx.check(4.8, 45.7) == GeofenceVerdict(inside_network=True)
    assert idx.check_many([4.8], [45.7]) == [GeofenceVerdict(inside_network=True)]
    assert idx.border_distance_m(4.8, 45.7) == 0.0
    assert idx.nearest_parking(4.8, 45.7, 100.0) is None
    assert len(idx) == 0


def test_lookups_and_properties(index: GeofenceIndex) -> None:
    assert index.network_id == NETWORK_ID and index.version == 1 and len(index) == 6
    assert index.speed_zone(2).max_speed == 8
    assert index.virtual_parking(11).cluster_id == 3
    assert index.forbidden_zone(20).name.startswith("Parc")
    assert index.max_speed_for([1, 3]) == 15
    assert index.max_speed_for([99]) is None
    with pytest.raises(KeyError):
        index.speed_zone(99)
    assert "zones=6" in repr(index)


def test_distances_in_metres(index: GeofenceIndex) -> None:
    # 0.001° of latitude north of speed zone 3's north edge ≈ 111 m.
    assert index.distance_m(ZoneType.SPEED_ZONE, 3, 4.86, 45.766) == pytest.approx(111.2, rel=0.01)
    # 0.001° of longitude east of it ≈ 77.7 m at Lyon's latitude.
    assert index.distance_m("speed_zone", 3, 4.866, 45.76) == pytest.approx(77.7, rel=0.01)
    assert index.distance_m(ZoneType.SPEED_ZONE, 3, 4.86, 45.76) == 0.0
    assert index.border_distance_m(4.921, 45.75) == pytest.approx(77.7, rel=0.01)
    assert index.distance_m(ZoneType.BORDER, 0, 4.80, 45.75) == 0.0
    with pytest.raises(KeyError):
        index.distance_m(ZoneType.FORBIDDEN_ZONE, 99, 4.8, 45.7)
    near = index.nearest_parking(4.8310, 45.7559, 20.0)  # 0.0001° south of parking 10
    assert near is not None and near[0] == 10 and near[1] == pytest.approx(11.1, rel=0.02)
    assert index.nearest_parking(4.8310, 45.7550, 20.0) is None


# -- against a naive oracle: random zones, random points -----------------------------------


def _random_network(seed: int, n: int) -> NetworkZones:
    rng = np.random.default_rng(seed)
    speed, parkings = [], []
    for i in range(n):
        cx, cy = rng.uniform(4.78, 4.91), rng.uniform(45.71, 45.80)
        k = int(rng.integers(3, 12))
        angles = np.sort(rng.uniform(0, 2 * np.pi, k))
        r = rng.uniform(0.0005, 0.01, k)
        ring = [
            [float(cx + r[j] * np.cos(angles[j])), float(cy + r[j] * np.sin(angles[j]))]
            for j in range(k)
        ]
        shape: Any = shapely.Polygon(ring)
        if not shape.is_valid or shape.area == 0:
            shape = polygon(cx, cy, cx + 0.002, cy + 0.002)
        if i % 3 == 0:
            parkings.append(VirtualParking(i + 1, 5, shape))
        else:
            speed.append(SpeedZone(i + 1, 5, shape, max_speed=int(rng.integers(6, 26))))
    return NetworkZones(5, speed_zones=tuple(speed), virtual_parkings=tuple(parkings))


RANDOM = _random_network(42, 120)
RANDOM_INDEX = GeofenceIndex(RANDOM)


def _oracle(zones: NetworkZones, lon: float, lat: float) -> tuple[tuple[int, ...], ...]:
    p = Point(lon, lat)
    speed = tuple(sorted(z.speed_zone_id for z in zones.speed_zones if z.shape.covers(p)))
    park = tuple(sorted(z.virtual_parking_id for z in zones.virtual_parkings if z.shape.covers(p)))
    return speed, park


@settings(max_examples=300, deadline=None)
@given(lon=st.floats(4.77, 4.92), lat=st.floats(45.70, 45.81))
def test_index_agrees_with_naive_loop(lon: float, lat: float) -> None:
    v = RANDOM_INDEX.check(lon, lat)
    speed, park = _oracle(RANDOM, lon, lat)
    assert (v.speed_zone_ids, v.virtual_parking_ids) == (speed, park)
    expected = min(
        (z.max_speed for z in RANDOM.speed_zones if z.speed_zone_id in speed), default=None
    )
    assert v.max_speed == expected


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(4.77, 4.92), st.floats(45.70, 45.81)), max_size=40))
def test_check_many_equals_check(points: list[tuple[float, float]]) -> None:
    lons = [p[0] for p in points]
    lats = [p[1] for p in points]
    assert RANDOM_INDEX.check_many(lons, lats) == [RANDOM_INDEX.check(x, y) for x, y in points]


def test_vertices_of_random_zones_are_inside() -> None:
    for z in RANDOM.speed_zones[:30]:
        for x, y in z.shape.exterior.coords:
            assert z.speed_zone_id in RANDOM_INDEX.check(x, y).speed_zone_ids


def test_rebuilt_index_sees_changed_zones(zones: NetworkZones) -> None:
    before = GeofenceIndex(zones)
    changed = lyon_zones()
    changed = NetworkZones(
        network_id=changed.network_id,
        border=changed.border,
        speed_zones=(
            *changed.speed_zones[:2],
            SpeedZone(3, NETWORK_ID, polygon(4.850, 45.755, 4.865, 45.765), 12),
        ),
        version=2,
    )
    after = GeofenceIndex(changed)
    assert before.check(4.86, 45.76).max_speed == 20
    assert after.check(4.86, 45.76).max_speed == 12
    assert after.check(4.8315, 45.7562).virtual_parking_id is None
    assert after.version == 2


@settings(max_examples=300, deadline=None)
@given(
    zone=st.integers(0, len(RANDOM.speed_zones) - 1),
    t=st.floats(0.0, 1.0),
    jitter=st.sampled_from([0.0, 1e-12, -1e-12, 1e-9, -1e-9]),
)
def test_points_on_and_near_zone_edges_agree_with_shapely(
    zone: int, t: float, jitter: float
) -> None:
    # Exactly on (or within a rounding error of) an edge is where a grid or a tree
    # could miss a zone; the index must still agree with shapely point by point.
    z = RANDOM.speed_zones[zone]
    p = z.shape.exterior.interpolate(t, normalized=True)
    lon, lat = p.x + jitter, p.y - jitter
    speed, park = _oracle(RANDOM, lon, lat)
    v = RANDOM_INDEX.check(lon, lat)
    assert (v.speed_zone_ids, v.virtual_parking_ids) == (speed, park)


def test_grid_cell_boundaries_and_outer_edges() -> None:
    # Walk a fine lattice across Lyon's zones and border, including the exact
    # border edges, comparing with shapely for each position.
    zones = lyon_zones()
    idx = GeofenceIndex(zones)
    border = zones.border.shape if zones.border else None
    for lon in np.linspace(4.77, 4.92, 151):
        for lat in np.linspace(45.70, 45.81, 111):
            x, y = float(lon), float(lat)
            v = idx.check(x, y)
            p = Point(x, y)
            assert v.inside_network == (border is None or border.covers(p))
            assert v.speed_zone_ids == tuple(
                sorted(z.speed_zone_id for z in zones.speed_zones if z.shape.covers(p))
            )
            assert v.forbidden_zone_ids == tuple(
                sorted(z.forbidden_zone_id for z in zones.forbidden_zones if z.shape.covers(p))
            )
