"""Line protocol encoding and point validation (unit), and escaping checked
against the real InfluxDB: what we encode is what InfluxDB stores."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kickstand.cloud.telemetry import (
    InvalidPointError,
    Point,
    SpotStatus,
    StationEnergy,
    Temperature,
    VehicleBattery,
    VehiclePosition,
    datetime_from_ns,
    encode,
    encode_many,
    ns_from_datetime,
)
from kickstand.testing import InfluxService

T = 1_700_000_000_123_456_789


def test_vehicle_position_line() -> None:
    p = VehiclePosition("AB12345", 48.8566, 2.3522, T, speed=17.5, heading=270.0,
                        network="5", trip="981", device="ctl-7")
    assert encode(p) == (
        "vehicle_position,device=ctl-7,network=5,trip=981,vehicle=AB12345 "
        "lat=48.8566,lon=2.3522,speed=17.5,heading=270.0 1700000000123456789"
    )


def test_optional_tags_and_fields_are_left_out() -> None:
    p = VehiclePosition("AB12345", -33.5, 151.25, T)
    assert encode(p) == "vehicle_position,vehicle=AB12345 lat=-33.5,lon=151.25 " + str(T)
    b = VehicleBattery("AB12345", T, vae_pct=42.0)
    assert encode(b) == f"vehicle_battery,vehicle=AB12345 vae_pct=42.0 {T}"


@pytest.mark.parametrize(
    ("precision", "stamp"),
    [("ns", T), ("u", T // 1_000), ("ms", T // 1_000_000), ("s", T // 1_000_000_000)],
)
def test_precision(precision: str, stamp: int) -> None:
    line = encode(Temperature("S1", 21.5, T, spot="3"), precision)
    assert line == f"temperature,spot=3,station=S1 celsius=21.5 {stamp}"


def test_escaping_rules() -> None:
    p = Point(
        "my measure,x",
        {"tag key": "a,b=c d", "z": "plain"},
        {"field,key": 'say "hi" \\ bye', "n": 3, "ok": True, "f": 1.0},
        T,
    )
    assert encode(p) == (
        r"my\ measure\,x,tag\ key=a\,b\=c\ d,z=plain "
        r'field\,key="say \"hi\" \\ bye",n=3i,ok=true,f=1.0 ' + str(T)
    )


def test_every_point_kind_encodes() -> None:
    points = [
        StationEnergy("S1", 1234.5, T, power_w=80.0, network="5"),
        SpotStatus("S1", "4", 1, T, vehicle="AB12345"),
        SpotStatus("S1", "5", 0, T),
    ]
    assert encode_many(points).splitlines() == [
        f"station_energy,network=5,station=S1 energy_wh=1234.5,power_w=80.0 {T}",
        f'spot_status,spot=4,station=S1 lock_status=1.0,vehicle="AB12345" {T}',
        f'spot_status,spot=5,station=S1 lock_status=0.0,vehicle="" {T}',
    ]


@pytest.mark.parametrize(
    "make",
    [
        lambda: VehiclePosition("AB1", 91.0, 0.0, T),
        lambda: VehiclePosition("AB1", 0.0, -180.5, T),
        lambda: VehiclePosition("AB1", math.nan, 0.0, T),
        lambda: VehiclePosition("", 0.0, 0.0, T),
        lambda: VehiclePosition("AB1", 0.0, 0.0, T, speed=math.inf),
        lambda: VehicleBattery("AB1", T),
        lambda: VehicleBattery("AB1", T, internal_pct=101.0),
        lambda: Temperature("S1", 20.0, 1.5),
        lambda: SpotStatus("S1", "1", True, T),
        lambda: Point("m", {}, {}, T),
        lambda: Point("", {}, {"v": 1.0}, T),
    ],
)
def test_bad_points_are_refused_when_built(make: object) -> None:
    with pytest.raises(InvalidPointError):
        make()  # type: ignore[operator]


@pytest.mark.parametrize(
    "point",
    [
        Point("m", {"t": "a\nb"}, {"v": 1.0}, T),
        Point("m", {"t": "back\\slash"}, {"v": 1.0}, T),
        Point("m", {"t": "x"}, {"v": math.nan}, T),
        Point("m", {"t": "x"}, {"s": "two\nlines"}, T),
        Point("#comment", {}, {"v": 1.0}, T),
        Point("m", {"t": 5}, {"v": 1.0}, T),
        Point("m", {}, {"v": [1]}, T),
        VehiclePosition("AB\n1", 0.0, 0.0, T),
    ],
)
def test_unencodable_points_raise_a_typed_error(point: Point) -> None:
    with pytest.raises(InvalidPointError) as info:
        encode(point)
    assert info.value.measurement


def test_time_conversions() -> None:
    moment = datetime(2026, 3, 29, 1, 30, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    ns = ns_from_datetime(moment)
    assert ns == 1_774_744_200_123_456_000
    assert datetime_from_ns(ns) == moment.astimezone(UTC)
    assert datetime_from_ns(ns + 999) == moment  # sub-microsecond digits are cut
    with pytest.raises(ValueError):
        ns_from_datetime(datetime(2026, 1, 1))  # naive


def test_escaped_values_round_trip_through_influxdb(influx: InfluxService,
                                                    influx_fresh: str) -> None:
    tricky = "a,b=c d\u00e9\u6771"
    text = 'quote " backslash \\ comma, equals= end\\'
    point = Point("esc test", {"tag key": tricky}, {"field key": text, "n": 7}, T)
    influx.write(encode(point) + "\n", database=influx_fresh)
    response = httpx.get(
        f"{influx.url}/query",
        params={"db": influx_fresh, "epoch": "ns",
                "q": 'SELECT "field key", "n", "tag key" FROM "esc test"'},
    )
    (series,) = response.json()["results"][0]["series"]
    assert series["values"] == [[T, text, 7, tricky]]


_ids = st.text(alphabet=st.characters(exclude_characters="\\\n\r",
                                      exclude_categories=["Cs"]), min_size=1, max_size=12)
_opt_ids = st.none() | _ids


@settings(max_examples=200, deadline=None)
@given(
    vehicle=_ids, device=_opt_ids, network=_opt_ids, trip=_opt_ids, station=_ids, spot=_ids,
    lat=st.floats(-90, 90), lon=st.floats(-180, 180), pct=st.none() | st.floats(0, 100),
    value=st.floats(0, 1e9), time_ns=st.integers(-(2**62), 2**62),
    lock=st.integers(-5, 5),
)
def test_fast_path_matches_the_generic_encoder(
    vehicle: str, device: str | None, network: str | None, trip: str | None, station: str,
    spot: str, lat: float, lon: float, pct: float | None, value: float, time_ns: int, lock: int,
) -> None:
    points = [
        VehiclePosition(vehicle, lat, lon, time_ns, speed=pct, heading=pct, network=network,
                        device=device, trip=trip),
        VehicleBattery(vehicle, time_ns, internal_pct=pct, vae_pct=50.0, voltage=pct,
                       network=network, device=device),
        Temperature(station, 21.0, time_ns, spot=trip, network=network),
        StationEnergy(station, value, time_ns, power_w=pct, network=network),
        SpotStatus(station, spot, lock, time_ns, vehicle=device, network=network),
    ]
    for point in points:
        for precision in ("ns", "ms"):
            assert encode(point, precision) == encode(point.to_point(), precision)
