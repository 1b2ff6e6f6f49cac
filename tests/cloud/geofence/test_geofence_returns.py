"""return_verdict: where a free-float trip may end, and at what price class."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kickstand.cloud.geofence import (
    CoordinateRangeError,
    GeofenceIndex,
    NetworkZones,
    OutsideReturnPolicy,
    ReturnKind,
    return_verdict,
)
from tests.cloud.geofence.geofence_lyon import lyon_zones

M_LAT = 1 / 111_195.0


def test_inside_a_parking_is_normal(index: GeofenceIndex) -> None:
    r = return_verdict(index, 4.8315, 45.7562)
    assert r.kind is ReturnKind.NORMAL and r.virtual_parking_id == 10
    assert not r.refused and not r.free_float_fee_applies
    assert return_verdict(index, 4.8605, 45.7602).virtual_parking_id == 11  # multipolygon part


def test_on_the_parking_edge_is_normal(index: GeofenceIndex) -> None:
    assert return_verdict(index, 4.8310, 45.7560).kind is ReturnKind.NORMAL


def test_inside_border_outside_parkings_costs_the_free_float_price(index: GeofenceIndex) -> None:
    r = return_verdict(index, 4.80, 45.75)
    assert r.kind is ReturnKind.OUTSIDE_PARKING and r.kind.value == "outside-parking"
    assert r.free_float_fee_applies and not r.refused and r.virtual_parking_id is None


def test_in_a_forbidden_zone_is_reported(index: GeofenceIndex) -> None:
    r = return_verdict(index, 4.847, 45.777)
    assert r.kind is ReturnKind.OUTSIDE_PARKING and r.forbidden_zone_id == 20


@pytest.mark.parametrize(
    ("policy", "refused"), [(OutsideReturnPolicy.REFUSE, True), (OutsideReturnPolicy.ALERT, False)]
)
def test_outside_the_network_follows_the_policy(policy: OutsideReturnPolicy, refused: bool) -> None:
    r = return_verdict(GeofenceIndex(lyon_zones(policy)), 4.60, 45.75)
    assert r.kind is ReturnKind.OUTSIDE_NETWORK and r.kind.value == "outside-network"
    assert r.policy is policy and r.refused is refused
    assert r.free_float_fee_applies is (not refused)


def test_parking_tolerance(index: GeofenceIndex) -> None:
    just_south = (4.8315, 45.7560 - 5 * M_LAT)  # 5 m south of parking 10
    assert return_verdict(index, *just_south).kind is ReturnKind.OUTSIDE_PARKING
    r = return_verdict(index, *just_south, parking_tolerance_m=8.0)
    assert r.kind is ReturnKind.NORMAL and r.virtual_parking_id == 10
    assert r.parking_distance_m == pytest.approx(5.0, rel=0.02)
    far = (4.8315, 45.7560 - 20 * M_LAT)
    assert return_verdict(index, *far, parking_tolerance_m=8.0).kind is ReturnKind.OUTSIDE_PARKING


def test_network_without_border_never_outside() -> None:
    r = return_verdict(GeofenceIndex(NetworkZones(1)), -70.0, -33.0)
    assert r.kind is ReturnKind.OUTSIDE_PARKING


def test_bad_position(index: GeofenceIndex) -> None:
    with pytest.raises(CoordinateRangeError):
        return_verdict(index, math.nan, 45.0)


LYON = GeofenceIndex(lyon_zones())


@given(lon=st.floats(4.6, 5.1), lat=st.floats(45.6, 45.9))
def test_verdict_is_consistent_with_check(lon: float, lat: float) -> None:
    v = LYON.check(lon, lat)
    r = return_verdict(LYON, lon, lat)
    if not v.inside_network:
        assert r.kind is ReturnKind.OUTSIDE_NETWORK and r.refused
    elif v.virtual_parking_id is not None:
        assert r.kind is ReturnKind.NORMAL and r.virtual_parking_id == v.virtual_parking_id
    else:
        assert r.kind is ReturnKind.OUTSIDE_PARKING
