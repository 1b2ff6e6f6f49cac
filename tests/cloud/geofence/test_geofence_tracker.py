"""VehicleZoneTracker: transitions become events; GPS jitter at edges does not."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kickstand.cloud.geofence import (
    CoordinateRangeError,
    ForbiddenZoneEntered,
    ForbiddenZoneLeft,
    GeofenceIndex,
    NetworkAreaEntered,
    NetworkAreaLeft,
    NetworkZones,
    SpeedZoneEntered,
    SpeedZoneLeft,
    VehicleZoneTracker,
    ZoneEvent,
)
from tests.cloud.geofence.geofence_lyon import NETWORK_ID, lyon_zones

M_LAT = 1 / 111_195.0  # degrees of latitude per metre
M_LON = M_LAT / math.cos(math.radians(45.755))  # degrees of longitude per metre at Lyon
T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def feed(
    tracker: VehicleZoneTracker, points: list[tuple[float, float]], vehicle: str = "KS123456"
) -> list[ZoneEvent]:
    events: list[ZoneEvent] = []
    for lon, lat in points:
        events += tracker.update(vehicle, lon, lat)
    return events


def kinds(events: list[ZoneEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_first_position_sets_state_at_once(index: GeofenceIndex) -> None:
    t = VehicleZoneTracker(index)
    events = t.update("KS1", 4.8315, 45.7562, T0)  # Bellecour: zones 1 and 2
    assert kinds(events) == ["SpeedZoneEntered", "SpeedZoneEntered"]
    assert [e.speed_zone_id for e in events] == [1, 2]
    assert all(e.max_speed == 8 for e in events)
    assert events[0].vehicle_id == "KS1" and events[0].at == T0


def test_ride_through_nested_speed_zones(index: GeofenceIndex) -> None:
    t = VehicleZoneTracker(index)
    assert feed(t, [(4.80, 45.7575)]) == []  # start west of the Presqu'île
    # Ride east along lat 45.7575 at ~25 m steps into zone 1, then 2, then out of both.
    lons = [4.80 + i * 25 * M_LON for i in range(int((4.845 - 4.80) / (25 * M_LON)))]
    events = feed(t, [(x, 45.7575) for x in lons])
    assert [
        (type(e).__name__, getattr(e, "speed_zone_id", None), getattr(e, "max_speed", None))
        for e in events
    ] == [
        ("SpeedZoneEntered", 1, 15),
        ("SpeedZoneEntered", 2, 8),
        ("SpeedZoneLeft", 2, 15),
        ("SpeedZoneLeft", 1, 25),  # the network default once out of every zone
    ]
    # Each entry came one report after the first position inside (confirmations=2).
    entered_1 = events[0]
    assert entered_1.lon > 4.825 + 25 * M_LON * 0.99
    # The exit from zone 2 waited until the vehicle was > 10 m out.
    assert events[2].lon > 4.834 + 10 * M_LON


def test_riding_along_an_edge_does_not_flip_flop(index: GeofenceIndex) -> None:
    rng = random.Random(7)
    # Along speed zone 3's east edge (lon 4.865), GPS jitter ±6 m across it.
    path = [(4.865 + rng.uniform(-6, 6) * M_LON, 45.756 + i * 5 * M_LAT) for i in range(150)]
    debounced = feed(VehicleZoneTracker(index), [(4.875, 45.756), *path])
    assert kinds(debounced) == ["SpeedZoneEntered"]
    naive = feed(
        VehicleZoneTracker(index, hysteresis_m=0.0, confirmations=1), [(4.875, 45.756), *path]
    )
    assert len(naive) > 20  # without the debounce it flips on every other fix


def test_single_stray_fix_into_forbidden_zone_is_ignored(index: GeofenceIndex) -> None:
    t = VehicleZoneTracker(index)
    outside = (4.847, 45.7695)  # 55 m south of the park
    inside = (4.847, 45.7705)
    assert feed(t, [outside, inside, outside, outside]) == []
    events = feed(t, [inside, inside])
    assert kinds(events) == ["ForbiddenZoneEntered"]
    e = events[0]
    assert isinstance(e, ForbiddenZoneEntered) and e.forbidden_zone_id == 20
    assert e.webhook_topic == "vehicule.position.forbidden"
    left = feed(t, [outside, outside])
    assert kinds(left) == ["ForbiddenZoneLeft"]
    assert isinstance(left[0], ForbiddenZoneLeft)


def test_leaving_and_reentering_the_network_area() -> None:
    index = GeofenceIndex(
        lyon_zones(trigger_alert=True, reduce_vehicle_speed=True, lock_vehicle=False)
    )
    t = VehicleZoneTracker(index)
    assert feed(t, [(4.78, 45.75)]) == []
    # 5 m outside the west border (4.77): inside the hysteresis band, nothing.
    assert feed(t, [(4.77 - 5 * M_LON, 45.75)] * 3) == []
    events = feed(t, [(4.77 - 50 * M_LON, 45.75)] * 2)
    assert kinds(events) == ["NetworkAreaLeft"]
    left = events[0]
    assert isinstance(left, NetworkAreaLeft)
    assert left.alert_type == "vehicle-out-of-network-area"
    assert left.trigger_alert and left.reduce_vehicle_speed and not left.lock_vehicle
    assert left.max_speed == 6
    back = feed(t, [(4.7705, 45.75)] * 2)
    assert kinds(back) == ["NetworkAreaEntered"]
    assert isinstance(back[0], NetworkAreaEntered) and back[0].max_speed == 25


def test_first_position_outside_the_network(index: GeofenceIndex) -> None:
    events = VehicleZoneTracker(index).update("KS9", 4.60, 45.75)
    assert kinds(events) == ["NetworkAreaLeft"]
    assert events[0].max_speed is None


def test_stale_positions_are_ignored(index: GeofenceIndex) -> None:
    t = VehicleZoneTracker(index, confirmations=1)
    assert t.update("KS1", 4.80, 45.75, T0) == []
    assert t.update("KS1", 4.8315, 45.7562, T0 - timedelta(seconds=30)) == []
    assert t.update("KS1", 4.8315, 45.7562, T0) == []
    assert t.stale_positions == 2
    assert kinds(t.update("KS1", 4.8315, 45.7562, T0 + timedelta(seconds=5))) == [
        "SpeedZoneEntered",
        "SpeedZoneEntered",
    ]


def test_bad_position_raises_and_keeps_state(index: GeofenceIndex) -> None:
    t = VehicleZoneTracker(index)
    t.update("KS1", 4.8315, 45.7562)
    before = t.state("KS1")
    with pytest.raises(CoordinateRangeError):
        t.update("KS1", 45.7562, 200.0)
    assert t.state("KS1") == before


def test_state_snapshot_and_forget(index: GeofenceIndex) -> None:
    t = VehicleZoneTracker(index)
    assert t.state("KS1") is None
    t.update("KS1", 4.8315, 45.7562, T0)
    s = t.state("KS1")
    assert s is not None
    assert (s.in_network, s.speed_zone_ids, s.forbidden_zone_ids, s.max_speed, s.at) == (
        True,
        frozenset({1, 2}),
        frozenset(),
        8,
        T0,
    )
    assert s.last_verdict.virtual_parking_id == 10
    assert len(t) == 1
    t.forget("KS1")
    assert t.state("KS1") is None and len(t) == 0
    assert len(t.update("KS1", 4.8315, 45.7562)) == 2  # afresh


def test_index_swap_leaves_a_deleted_zone(zones: NetworkZones) -> None:
    t = VehicleZoneTracker(GeofenceIndex(zones))
    t.update("KS1", 4.86, 45.76)  # speed zone 3
    without_3 = NetworkZones(
        NETWORK_ID,
        border=zones.border,
        speed_zones=zones.speed_zones[:2],
        default_max_speed=25,
        version=2,
    )
    t.set_index(GeofenceIndex(without_3))
    assert t.update("KS1", 4.86, 45.76) == []  # still confirming
    events = t.update("KS1", 4.86, 45.76)
    assert isinstance(events[0], SpeedZoneLeft)
    assert (events[0].speed_zone_id, events[0].max_speed) == (3, 25)
    with pytest.raises(ValueError):
        t.set_index(GeofenceIndex(NetworkZones(NETWORK_ID + 1)))


def test_parameters_are_checked(index: GeofenceIndex) -> None:
    with pytest.raises(ValueError):
        VehicleZoneTracker(index, confirmations=0)
    with pytest.raises(ValueError):
        VehicleZoneTracker(index, hysteresis_m=-1.0)


def test_vehicles_are_tracked_independently(index: GeofenceIndex) -> None:
    t = VehicleZoneTracker(index, confirmations=1)
    assert kinds(t.update("A", 4.86, 45.76)) == ["SpeedZoneEntered"]
    assert t.update("B", 4.80, 45.75) == []
    assert kinds(t.update("A", 4.80, 45.75)) == ["SpeedZoneLeft"]


LYON_INDEX = GeofenceIndex(lyon_zones())
# Points around the Bellecour / Presqu'île edges and the park, so transitions happen.
points = st.tuples(st.floats(4.822, 4.850), st.floats(45.748, 45.772))


@settings(max_examples=150, deadline=None)
@given(
    path=st.lists(points, min_size=1, max_size=60),
    confirmations=st.integers(1, 3),
    hysteresis=st.sampled_from([0.0, 5.0, 10.0, 30.0]),
)
def test_events_alternate_and_match_the_state(
    path: list[tuple[float, float]], confirmations: int, hysteresis: float
) -> None:
    t = VehicleZoneTracker(LYON_INDEX, hysteresis_m=hysteresis, confirmations=confirmations)
    inside: set[tuple[str, int]] = set()
    for lon, lat in path:
        for e in t.update("V", lon, lat):
            if isinstance(e, SpeedZoneEntered | SpeedZoneLeft):
                key = ("s", e.speed_zone_id)
            elif isinstance(e, ForbiddenZoneEntered | ForbiddenZoneLeft):
                key = ("f", e.forbidden_zone_id)
            else:
                continue
            if isinstance(e, SpeedZoneEntered | ForbiddenZoneEntered):
                assert key not in inside  # never entered twice without leaving
                inside.add(key)
            else:
                assert key in inside
                inside.remove(key)
        s = t.state("V")
        assert s is not None
        assert {i for k, i in inside if k == "s"} == s.speed_zone_ids
        expected = LYON_INDEX.max_speed_for(s.speed_zone_ids) or 25
        assert s.max_speed == expected
        # The debounce only ever delays: a vehicle far from every zone edge agrees with
        # its position once `confirmations` fixes have passed (checked at the end below).
    for _ in range(confirmations):
        t.update("V", 4.80, 45.74)  # far from every zone
    s = t.state("V")
    assert s is not None and s.speed_zone_ids == frozenset() and s.forbidden_zone_ids == frozenset()
