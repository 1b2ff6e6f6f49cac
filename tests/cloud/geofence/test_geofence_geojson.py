"""GeoJSON in and out: validation errors are typed, round trips are exact."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shapely.geometry import LineString, MultiPolygon, Polygon

from kickstand.cloud.geofence import (
    CoordinateOrderError,
    CoordinateRangeError,
    EmptyGeometryError,
    GeofenceError,
    GeoJSONError,
    InvalidGeometryError,
    SelfIntersectionError,
    UnsupportedGeometryError,
    parse_geometry,
    parse_shape,
    parse_zone_shape,
    to_geojson,
    to_shape,
    validate_shape,
)
from tests.cloud.geofence.geofence_lyon import polygon, rect


def test_polygon_parses_in_lon_lat_order() -> None:
    g = parse_geometry(polygon(4.825, 45.750, 4.840, 45.770))
    assert isinstance(g, Polygon)
    minx, miny, maxx, maxy = g.bounds
    assert (minx, miny, maxx, maxy) == (4.825, 45.750, 4.840, 45.770)


def test_feature_and_multipolygon_and_altitude() -> None:
    doc = {
        "type": "Feature",
        "properties": {},
        "geometry": {
            "type": "MultiPolygon",
            "coordinates": [
                [[[*p, 170.0] for p in rect(4.85, 45.76, 4.86, 45.77)]],
                [rect(4.87, 45.76, 4.88, 45.77)],
            ],
        },
    }
    g = parse_geometry(doc)
    assert isinstance(g, MultiPolygon)
    assert len(g.geoms) == 2
    assert not g.has_z


def test_seed_shape_form_is_closed_automatically() -> None:
    g = parse_shape([[4.825, 45.75], [4.84, 45.75], [4.84, 45.77]])
    assert isinstance(g, Polygon)
    assert g.exterior.coords[0] == g.exterior.coords[-1]
    assert to_shape(g) == [[4.825, 45.75], [4.84, 45.75], [4.84, 45.77]]
    assert parse_zone_shape([[4.825, 45.75], [4.84, 45.75], [4.84, 45.77]]).equals(g)


def test_self_intersecting_bowtie_is_refused_with_location() -> None:
    bowtie = {
        "type": "Polygon",
        "coordinates": [
            [[4.80, 45.70], [4.82, 45.72], [4.82, 45.70], [4.80, 45.72], [4.80, 45.70]]
        ],
    }
    with pytest.raises(SelfIntersectionError) as exc:
        parse_geometry(bowtie, zone_kind="speed_zone", zone_id=4)
    assert exc.value.location is not None
    lon, lat = exc.value.location
    assert lon == pytest.approx(4.81) and lat == pytest.approx(45.71)
    assert exc.value.zone_kind == "speed_zone" and exc.value.zone_id == 4
    assert isinstance(exc.value, InvalidGeometryError)
    assert "speed_zone 4" in str(exc.value)


def test_hole_outside_shell_is_invalid() -> None:
    doc = {
        "type": "Polygon",
        "coordinates": [rect(4.80, 45.70, 4.81, 45.71), rect(4.90, 45.70, 4.91, 45.71)],
    }
    with pytest.raises(InvalidGeometryError) as exc:
        parse_geometry(doc)
    assert not isinstance(exc.value, SelfIntersectionError)
    assert "hole" in exc.value.reason.lower()


def test_swapped_lat_lon_is_detected_when_latitude_out_of_range() -> None:
    # A network at lon 120 (e.g. Asia) sent as [lat, lon].
    swapped = {
        "type": "Polygon",
        "coordinates": [[[p[1], p[0]] for p in rect(120.0, 30.0, 120.1, 30.1)]],
    }
    with pytest.raises(CoordinateOrderError) as exc:
        parse_geometry(swapped)
    assert exc.value.index == 0
    assert exc.value.lat == 120.0


@pytest.mark.parametrize("position", [[200.0, 45.0], [-181.0, 0.0], [190.0, 95.0]])
def test_out_of_range_positions(position: list[float]) -> None:
    ring = [position, [4.8, 45.7], [4.9, 45.7], position]
    with pytest.raises(CoordinateRangeError) as exc:
        parse_geometry({"type": "Polygon", "coordinates": [ring]})
    assert not isinstance(exc.value, CoordinateOrderError)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_positions(value: float) -> None:
    with pytest.raises(CoordinateRangeError):
        parse_shape([[value, 45.7], [4.8, 45.7], [4.9, 45.8]])


@pytest.mark.parametrize(
    ("doc", "error"),
    [
        ({"type": "Polygon", "coordinates": []}, EmptyGeometryError),
        ({"type": "Polygon", "coordinates": [[]]}, EmptyGeometryError),
        ({"type": "MultiPolygon", "coordinates": []}, EmptyGeometryError),
        (
            {"type": "Polygon", "coordinates": [[[4.8, 45.7], [4.9, 45.7], [4.8, 45.7]]]},
            EmptyGeometryError,
        ),
        # collinear: a ring enclosing no area
        (
            {
                "type": "Polygon",
                "coordinates": [[[4.8, 45.7], [4.85, 45.7], [4.9, 45.7], [4.8, 45.7]]],
            },
            GeofenceError,
        ),
        ({"type": "Point", "coordinates": [4.8, 45.7]}, UnsupportedGeometryError),
        (
            {"type": "LineString", "coordinates": [[4.8, 45.7], [4.9, 45.7]]},
            UnsupportedGeometryError,
        ),
        ({"coordinates": [rect(4.8, 45.7, 4.9, 45.8)]}, UnsupportedGeometryError),
        ({"type": "Polygon"}, GeoJSONError),
        ({"type": "Polygon", "coordinates": "4.8,45.7"}, GeoJSONError),
        (
            {"type": "Polygon", "coordinates": [[[4.8, 45.7], [4.9, 45.7], [4.9, 45.8]]]},
            GeoJSONError,
        ),  # not closed
        (
            {
                "type": "Polygon",
                "coordinates": [[[4.8, "45.7"], [4.9, 45.7], [4.9, 45.8], [4.8, "45.7"]]],
            },
            GeoJSONError,
        ),
        (
            {
                "type": "Polygon",
                "coordinates": [[[4.8, True], [4.9, 45.7], [4.9, 45.8], [4.8, True]]],
            },
            GeoJSONError,
        ),
        (
            {"type": "Polygon", "coordinates": [[[4.8], [4.9, 45.7], [4.9, 45.8], [4.8]]]},
            GeoJSONError,
        ),
        ({"type": "Feature", "geometry": None}, GeoJSONError),
        ([1, 2, 3], GeoJSONError),
    ],
)
def test_malformed_geojson_raises_typed_errors(doc: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_zone_shape(doc) if isinstance(doc, dict) else parse_geometry(doc)


@pytest.mark.parametrize(
    "shape",
    [None, [], [[4.8, 45.7]], "abc", [[4.8, 45.7], [4.9, 45.7]], [[4.8, 45.7], None, [4.9, 45.8]]],
)
def test_malformed_seed_shapes(shape: Any) -> None:
    with pytest.raises(GeofenceError):
        parse_shape(shape)


def test_validate_shape_refuses_other_geometries() -> None:
    with pytest.raises(UnsupportedGeometryError):
        validate_shape(LineString([(4.8, 45.7), (4.9, 45.7)]))
    with pytest.raises(EmptyGeometryError):
        validate_shape(Polygon())


def test_to_shape_refuses_what_the_list_form_cannot_hold() -> None:
    holed = parse_geometry(
        {
            "type": "Polygon",
            "coordinates": [rect(4.80, 45.70, 4.90, 45.80), rect(4.84, 45.74, 4.86, 45.76)],
        }
    )
    with pytest.raises(GeoJSONError):
        to_shape(holed)


lons = st.floats(min_value=4.70, max_value=4.99, allow_nan=False)
lats = st.floats(min_value=45.65, max_value=45.85, allow_nan=False)
sizes = st.floats(min_value=1e-5, max_value=0.05, allow_nan=False)


@given(x=lons, y=lats, w=sizes, h=sizes, n=st.integers(min_value=1, max_value=3))
def test_geojson_round_trip_is_exact(x: float, y: float, w: float, h: float, n: int) -> None:
    polys = [polygon(x + i * 2 * w, y, x + i * 2 * w + w, y + h)["coordinates"] for i in range(n)]
    doc = (
        {"type": "Polygon", "coordinates": polys[0]}
        if n == 1
        else {"type": "MultiPolygon", "coordinates": polys}
    )
    g = parse_geometry(doc)
    out = to_geojson(g)
    assert out == doc
    assert parse_geometry(out).equals_exact(g, 0.0)
