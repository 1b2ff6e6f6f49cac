"""Zone model: seed field names and limits, border checks, FeatureCollection in and out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kickstand.cloud.geofence import (
    CoordinateOrderError,
    DuplicateZoneError,
    ForbiddenZone,
    GeofenceIndex,
    GeoJSONError,
    NetworkBorder,
    NetworkZones,
    OutsideReturnPolicy,
    SpeedZone,
    VirtualParking,
    ZoneAttributeError,
    ZoneOutsideBorderError,
    check_within_border,
    parse_geometry,
)
from tests.cloud.geofence.geofence_lyon import BORDER, NETWORK_ID, lyon_zones, polygon, rect

PRESQUILE = polygon(4.825, 45.750, 4.840, 45.770)


@pytest.mark.parametrize("max_speed", [5, 26, 0, -1, 12.5, True, "10"])
def test_speed_zone_max_speed_limits(max_speed: Any) -> None:
    with pytest.raises(ZoneAttributeError) as exc:
        SpeedZone(1, NETWORK_ID, PRESQUILE, max_speed=max_speed)
    assert exc.value.field == "max_speed"


@pytest.mark.parametrize("max_speed", [6, 25])
def test_speed_zone_limits_inclusive(max_speed: int) -> None:
    assert SpeedZone(1, NETWORK_ID, PRESQUILE, max_speed=max_speed).max_speed == max_speed


def test_other_attribute_errors() -> None:
    with pytest.raises(ZoneAttributeError):
        VirtualParking(1, NETWORK_ID, PRESQUILE, capacity=-1)
    with pytest.raises(ZoneAttributeError):
        VirtualParking(0, NETWORK_ID, PRESQUILE)
    with pytest.raises(ZoneAttributeError):
        ForbiddenZone(1, NETWORK_ID, PRESQUILE, name="x" * 129)
    with pytest.raises(ZoneAttributeError):
        NetworkBorder(NETWORK_ID, BORDER, lock_vehicle="yes")
    with pytest.raises(ZoneAttributeError):
        NetworkBorder(NETWORK_ID, BORDER, outside_return_policy="ignore")
    with pytest.raises(ZoneAttributeError):
        NetworkZones(NETWORK_ID, default_max_speed=3)


def test_policy_accepts_its_string_value() -> None:
    b = NetworkBorder(NETWORK_ID, BORDER, outside_return_policy="alert")
    assert b.outside_return_policy is OutsideReturnPolicy.ALERT


def test_duplicate_ids_and_foreign_zones_are_refused() -> None:
    with pytest.raises(DuplicateZoneError):
        NetworkZones(
            NETWORK_ID,
            speed_zones=(
                SpeedZone(1, NETWORK_ID, PRESQUILE, 10),
                SpeedZone(1, NETWORK_ID, PRESQUILE, 12),
            ),
        )
    with pytest.raises(ZoneAttributeError):
        NetworkZones(NETWORK_ID, speed_zones=(SpeedZone(1, NETWORK_ID + 1, PRESQUILE, 10),))
    with pytest.raises(ZoneAttributeError):
        NetworkZones(NETWORK_ID, border=NetworkBorder(NETWORK_ID + 1, BORDER))


def test_swapped_lyon_zone_is_caught_against_the_border() -> None:
    # [lat, lon] for Lyon is still in range ([45.76, 4.83]); only the border can tell.
    swapped = {
        "type": "Polygon",
        "coordinates": [[[p[1], p[0]] for p in rect(4.825, 45.750, 4.840, 45.770)]],
    }
    zone = SpeedZone(4, NETWORK_ID, swapped, max_speed=10)  # valid on its own
    border = NetworkBorder(NETWORK_ID, BORDER)
    with pytest.raises(CoordinateOrderError) as exc:
        NetworkZones(NETWORK_ID, border=border, speed_zones=(zone,))
    assert exc.value.zone_kind == "speed_zone" and exc.value.zone_id == 4


def test_zone_far_outside_the_border() -> None:
    paris = parse_geometry(polygon(2.33, 48.85, 2.36, 48.87))
    with pytest.raises(ZoneOutsideBorderError) as exc:
        check_within_border(parse_geometry(BORDER), paris, zone_kind="virtual_parking", zone_id=2)
    assert not exc.value.likely_swapped
    # A zone straddling the border is fine (the border decides outside of it).
    check_within_border(parse_geometry(BORDER), parse_geometry(polygon(4.91, 45.75, 4.95, 45.76)))


def test_seed_shape_form_accepted_for_zones() -> None:
    z = SpeedZone(9, NETWORK_ID, [[4.825, 45.75], [4.84, 45.75], [4.84, 45.77]], max_speed=10)
    assert z.shape.area > 0


def test_feature_collection_round_trip_through_json() -> None:
    zones = lyon_zones(OutsideReturnPolicy.ALERT, lock_vehicle=True)
    doc = json.loads(json.dumps(zones.to_feature_collection()))
    assert [f["properties"]["zone_type"] for f in doc["features"]] == [
        "border",
        "speed_zone",
        "speed_zone",
        "speed_zone",
        "virtual_parking",
        "virtual_parking",
        "forbidden_zone",
    ]
    assert doc["features"][1]["properties"] == {
        "zone_type": "speed_zone",
        "speed_zone_id": 1,
        "network_id": NETWORK_ID,
        "max_speed": 15,
    }
    back = NetworkZones.from_feature_collection(doc)
    assert back == zones
    a, b = GeofenceIndex(zones), GeofenceIndex(back)
    for p in [(4.8315, 45.7562), (4.8605, 45.7602), (4.847, 45.777), (4.6, 45.7)]:
        assert a.check(*p) == b.check(*p)


@pytest.mark.parametrize(
    "doc",
    [
        {"type": "Feature"},
        {"type": "FeatureCollection", "features": {}},
        {"type": "FeatureCollection", "features": [{"type": "Polygon"}]},
        {
            "type": "FeatureCollection",
            "properties": {"network_id": 1},
            "features": [{"type": "Feature", "geometry": PRESQUILE}],
        },
        {
            "type": "FeatureCollection",
            "properties": {"network_id": 1},
            "features": [
                {"type": "Feature", "geometry": PRESQUILE, "properties": {"zone_type": "lake"}}
            ],
        },
        {
            "type": "FeatureCollection",
            "properties": {"network_id": 1},
            "features": [
                {
                    "type": "Feature",
                    "geometry": PRESQUILE,
                    "properties": {
                        "zone_type": "speed_zone",
                        "speed_zone_id": 1,
                        "max_speed": 10,
                        "colour": "red",
                    },
                }
            ],
        },
        {"type": "FeatureCollection", "properties": {"network_id": "one"}, "features": []},
        {
            "type": "FeatureCollection",
            "properties": {"network_id": 1},
            "features": [
                {
                    "type": "Feature",
                    "geometry": None,
                    "properties": {"zone_type": "speed_zone", "speed_zone_id": 1, "max_speed": 10},
                }
            ],
        },
    ],
)
def test_malformed_feature_collections(doc: dict[str, Any]) -> None:
    with pytest.raises(GeoJSONError):
        NetworkZones.from_feature_collection(doc)
