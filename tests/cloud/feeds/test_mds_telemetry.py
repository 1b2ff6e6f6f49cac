"""MDS 2.0 ``/mds/telemetry`` publishes every GPS point a vehicle streamed during a trip
(one row per point, with the trip's id), read from the telemetry store: the local store and
InfluxDB. A trip that crosses the hour gives each hour its own points; positions outside a
trip stay out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kickstand.cloud.telemetry import VehiclePosition, ns_from_datetime
from tests.cloud.api_telemetry.conftest import TelemetryApi, tapi
from tests.cloud.feeds.conftest import City
from tests.cloud.feeds.test_mds import check_telemetry, issue, mds

__all__ = ["tapi"]


async def test_ride_points_from_the_telemetry_store(tapi: TelemetryApi) -> None:
    city = City(tapi.app, tapi.client, tapi.maker, tapi.demo)
    await city.network_since(days=2)
    hour = (datetime.now(UTC) - timedelta(hours=4)).replace(minute=0, second=0, microsecond=0)
    net = str(tapi.demo.network_id)

    def position(serial: str, at: datetime, speed: float | None = None) -> None:
        tapi.store.write(
            VehiclePosition(serial, 45.76, 4.84, ns_from_datetime(at), speed=speed,
                            heading=90.0 if speed else None, network=net)
        )  # fmt: skip

    # LY0001 rides 10:10 → 10:22; LY0002 rides 10:55 → 11:05 (across the hour).
    first = await city.ride("LY0001", start=("st-0001", 1), end=("st-0003", 4),
                            at=hour + timedelta(minutes=10), minutes=12)  # fmt: skip
    second = await city.ride("LY0002", start=("st-0001", 2), end=("st-0003", 4),
                             at=hour + timedelta(minutes=55), minutes=10)  # fmt: skip
    ride_1 = [hour + timedelta(minutes=m) for m in (11, 14, 18)]
    for at in ride_1:
        position("LY0001", at, speed=18.0)
    position("LY0001", hour + timedelta(minutes=5))  # parked before its trip
    position("LY0001", hour + timedelta(minutes=30))  # docked after it
    position("LY0003", hour + timedelta(minutes=12))  # on no trip at all
    position("LY0002", hour + timedelta(minutes=58), speed=12.0)
    position("LY0002", hour + timedelta(minutes=62), speed=12.0)
    await tapi.settle()
    token = await issue(city)

    def ms(at: datetime) -> int:
        return int(at.timestamp() * 1000)

    label = hour.strftime("%Y-%m-%dT%H")
    rows = (await mds(city, "/telemetry", token, telemetry_time=label))["telemetry"]
    for t in rows:
        check_telemetry(t, "telemetry")
    trips = {t["trip_ids"][0] for t in rows if t["trip_ids"]}
    assert len(trips) == 2
    by_trip = {
        trip: sorted(t["timestamp"] for t in rows if t["trip_ids"] == [trip]) for trip in trips
    }
    ends = [ms(hour + timedelta(minutes=10)), ms(hour + timedelta(minutes=22))]
    one = next(trip for trip, stamps in by_trip.items() if stamps[0] == ends[0])
    # The trip's two ends and the three points streamed between them.
    assert by_trip[one] == sorted([*ends, *(ms(at) for at in ride_1)])
    streamed = [t for t in rows if t["trip_ids"] == [one] and "speed" in t["location"]]
    assert len(streamed) == 3
    assert all(t["location"]["speed"] == 5.0 and t["location"]["heading"] == 90.0
               for t in streamed)  # fmt: skip
    # LY0002 started in this hour: its start and its point at :58, not the one at 11:02.
    other = (trips - {one}).pop()
    assert by_trip[other] == [ms(hour + timedelta(minutes=55)), ms(hour + timedelta(minutes=58))]
    assert len({t["telemetry_id"] for t in rows}) == len(rows)

    later = (hour + timedelta(hours=1)).strftime("%Y-%m-%dT%H")
    rows = (await mds(city, "/telemetry", token, telemetry_time=later))["telemetry"]
    assert sorted(t["timestamp"] for t in rows if t["trip_ids"] == [other]) == [
        ms(hour + timedelta(minutes=62)),
        ms(hour + timedelta(minutes=65)),
    ]
    assert first != second
