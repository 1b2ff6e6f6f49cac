"""The four dashboard queries, on InfluxDB (the harness's 1.6) and on the local
SQLite store, with the same data and the same expectations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from kickstand.cloud.telemetry import (
    BoundingBox,
    DailyEnergy,
    InfluxTelemetryStore,
    LocalTelemetryStore,
    Point,
    QueryRangeError,
    SpotStatus,
    StationEnergy,
    TelemetryStore,
    Temperature,
    VehicleBattery,
    VehiclePosition,
    WriterClosedError,
    ns_from_datetime,
    open_telemetry_store,
)

PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
SEC = 1_000_000_000


@pytest.fixture(params=["influx", "local"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TelemetryStore]:
    if request.param == "influx":
        influx = request.getfixturevalue("influx")
        database = request.getfixturevalue("influx_fresh")
        opened = open_telemetry_store(
            influx.url, database, spool_dir=tmp_path / "spool", local_path=tmp_path / "unused",
            flush_interval=0.05,
        )
        assert isinstance(opened, InfluxTelemetryStore)
    else:
        opened = open_telemetry_store(
            None, "unused", spool_dir=tmp_path / "unused", local_path=tmp_path / "t.sqlite3"
        )
        assert isinstance(opened, LocalTelemetryStore)
    async with opened as running:
        yield running
        assert running.stats.quarantined == 0
        assert running.stats.dropped == 0


async def settle(store: TelemetryStore) -> None:
    await store.flush()
    if isinstance(store, InfluxTelemetryStore):
        await store.writer.drain()


def at(seconds: float) -> int:
    return ns_from_datetime(T0) + int(seconds * SEC)


async def test_vehicle_timeline(store: TelemetryStore) -> None:
    for i in range(10):  # a trip: one fix every 5 s
        store.write(VehiclePosition("AB12345", 45.75 + i / 1000, 4.85, at(i * 5), speed=12.0 + i,
                                    heading=90.0, network="5", trip="T1"))
        store.write(VehiclePosition("ZZ99999", 45.0, 4.0, at(i * 5), network="5", trip="T2"))
    for i in range(5):  # parked afterwards: no trip, no speed
        store.write(VehiclePosition("AB12345", 45.76, 4.85, at(100 + i), network="5"))
    await settle(store)

    everything = await store.vehicle_timeline("AB12345", T0, T0 + timedelta(hours=1))
    assert len(everything) == 15
    assert [s.time_ns for s in everything] == sorted(s.time_ns for s in everything)
    first = everything[0]
    assert (first.lat, first.lon, first.speed, first.heading, first.trip) == (
        45.75, 4.85, 12.0, 90.0, "T1")
    assert everything[-1].trip is None and everything[-1].speed is None
    assert first.time == T0

    trip = await store.vehicle_timeline("AB12345", T0, T0 + timedelta(hours=1), trip="T1")
    assert [round(s.lat, 3) for s in trip] == [round(45.75 + i / 1000, 3) for i in range(10)]

    # Both ends are inclusive: [5 s, 15 s] holds the fixes at 5, 10 and 15 s.
    window = await store.vehicle_timeline("AB12345", T0 + timedelta(seconds=5),
                                          T0 + timedelta(seconds=15))
    assert [s.time_ns for s in window] == [at(5), at(10), at(15)]
    assert len(await store.vehicle_timeline("AB12345", T0, T0, limit=1)) == 1
    assert await store.vehicle_timeline("NOPE", T0, T0 + timedelta(hours=1)) == []

    with pytest.raises(QueryRangeError):
        await store.vehicle_timeline("AB12345", T0, T0 - timedelta(seconds=1))
    with pytest.raises(QueryRangeError):
        await store.vehicle_timeline("AB12345", T0.replace(tzinfo=None), T0)


async def test_rewriting_a_point_does_not_duplicate_it(store: TelemetryStore) -> None:
    for _ in range(3):
        store.write(VehiclePosition("AB12345", 45.0, 4.0, at(0), network="5"))
        await settle(store)
    assert len(await store.vehicle_timeline("AB12345", T0, T0 + timedelta(minutes=1))) == 1


async def test_battery_history(store: TelemetryStore) -> None:
    store.write(VehicleBattery("AB12345", at(0), internal_pct=99.0, vae_pct=80.5, voltage=36.9))
    store.write(VehicleBattery("AB12345", at(60), internal_pct=98.0))
    store.write(VehicleBattery("AB12345", at(120), vae_pct=79.0, voltage=36.7))
    store.write(VehicleBattery("OTHER01", at(60), internal_pct=10.0))
    await settle(store)
    history = await store.battery_history("AB12345", T0, T0 + timedelta(minutes=5))
    assert [(b.internal_pct, b.vae_pct, b.voltage) for b in history] == [
        (99.0, 80.5, 36.9), (98.0, None, None), (None, 79.0, 36.7)]
    assert [b.time_ns for b in history] == [at(0), at(60), at(120)]


def write_meter(store: TelemetryStore, station: str, start: datetime, end: datetime) -> None:
    """A meter that counts 100 Wh per hour, read every 30 minutes."""
    # In UTC: adding 30 minutes to a Paris wall clock would walk into the DST gap.
    moment, counter = start.astimezone(UTC), 5_000.0
    while moment < end:
        store.write(StationEnergy(station, counter, ns_from_datetime(moment), power_w=100.0))
        moment += timedelta(minutes=30)
        counter += 50.0


async def test_station_energy_per_local_day_across_dst(store: TelemetryStore) -> None:
    # Readings from 27 March 00:00 to 31 March 00:00, Paris time; on 29 March 2026
    # the clocks go forward: that day lasts 23 hours.
    start = datetime(2026, 3, 27, tzinfo=PARIS)
    write_meter(store, "42", start, datetime(2026, 3, 31, tzinfo=PARIS))
    write_meter(store, "43", start - timedelta(days=3), datetime(2026, 4, 2, tzinfo=PARIS))
    await settle(store)
    days = await store.station_energy_consumption(
        "42", date(2026, 3, 26), date(2026, 3, 31), "Europe/Paris")
    assert days == [
        DailyEnergy(date(2026, 3, 26), None),     # not commissioned yet
        DailyEnergy(date(2026, 3, 27), 2350.0),   # first reading at midnight, last 23:30
        DailyEnergy(date(2026, 3, 28), 2400.0),
        DailyEnergy(date(2026, 3, 29), 2300.0),   # 23-hour day
        DailyEnergy(date(2026, 3, 30), 2400.0),
        DailyEnergy(date(2026, 3, 31), None),     # no reading that day
    ]
    # The same readings cut at UTC midnights (one hour later than Paris in winter).
    utc_days = await store.station_energy_consumption(
        "42", date(2026, 3, 28), date(2026, 3, 28), "UTC")
    assert utc_days == [DailyEnergy(date(2026, 3, 28), 2400.0)]

    one = await store.station_energy_consumption(
        "43", date(2026, 3, 29), date(2026, 3, 29), "Europe/Paris")
    assert one == [DailyEnergy(date(2026, 3, 29), 2300.0)]

    with pytest.raises(QueryRangeError):
        await store.station_energy_consumption("42", date(2026, 3, 2), date(2026, 3, 1), "UTC")
    with pytest.raises(QueryRangeError):
        await store.station_energy_consumption("42", date(2026, 3, 1), date(2026, 3, 2),
                                               "Mars/Olympus")
    with pytest.raises(QueryRangeError):
        await store.station_energy_consumption("42", date(2025, 1, 1), date(2026, 3, 2), "UTC")


async def test_meter_reset_counts_from_zero(store: TelemetryStore) -> None:
    base = datetime(2026, 5, 1, 6, tzinfo=UTC)
    for hour, counter in enumerate([1000.0, 1100.0, 1200.0, 30.0, 80.0]):
        store.write(StationEnergy("7", counter, ns_from_datetime(base + timedelta(hours=hour))))
    await settle(store)
    (day,) = await store.station_energy_consumption("7", date(2026, 5, 1), date(2026, 5, 1),
                                                    "UTC")
    assert day.energy_wh == 80.0  # the meter restarted from zero: 80 Wh since


async def test_heatmap(store: TelemetryStore) -> None:
    march = datetime(2026, 3, 20, 12, tzinfo=UTC)
    april = datetime(2026, 4, 2, 12, tzinfo=UTC)
    may = datetime(2026, 5, 2, 12, tzinfo=UTC)
    n = 0

    def put(vehicle: str, lat: float, lon: float, when: datetime, network: str) -> None:
        nonlocal n
        n += 1
        store.write(VehiclePosition(vehicle, lat, lon, ns_from_datetime(when) + n,
                                    network=network))

    put("AB00001", 45.75012, 4.85012, march, "5")
    put("AB00001", 45.75038, 4.85038, march, "5")
    put("AB00002", 45.75038, 4.85038, march, "7")
    put("AB00002", 45.75038, 4.85038, april, "7")
    put("AB00003", 45.75038, 4.85038, march, "9")   # another network
    put("AB00003", 45.75038, 4.85038, may, "5")     # after the period
    put("AB00003", 45.95, 4.85, march, "5")         # outside the area
    await settle(store)

    area = BoundingBox.from_center(45.75, 4.85, 0.1, 0.1)
    coarse = await store.heatmap(["5", "7"], area, datetime(2026, 3, 25, tzinfo=UTC),
                                 datetime(2026, 4, 1, tzinfo=UTC), zoom=0)
    assert [(p.lat, p.lng, p.date, p.weight) for p in coarse] == [
        (45.75, 4.85, date(2026, 3, 1), 3),  # date_min is rounded down to the month
        (45.75, 4.85, date(2026, 4, 1), 1),
    ]
    half = await store.heatmap([5], area, datetime(2026, 3, 1, tzinfo=UTC),
                               datetime(2026, 3, 31, tzinfo=UTC), zoom=1)
    assert [(p.lat, p.lng, p.weight) for p in half] == [(45.75, 4.85, 1), (45.7505, 4.8505, 1)]
    fine = await store.heatmap(["5", "7"], area, march, march, zoom=2)
    assert [(p.lat, p.lng, p.weight) for p in fine] == [(45.7501, 4.8501, 1),
                                                        (45.7504, 4.8504, 2)]
    with pytest.raises(QueryRangeError):  # too many positions to count
        await store.heatmap(["5", "7"], area, march, march, zoom=0, max_positions=2)
    with pytest.raises(QueryRangeError):
        await store.heatmap(["5"], area, march, march, zoom=3)
    with pytest.raises(QueryRangeError):
        await store.heatmap([], area, march, march, zoom=0)
    with pytest.raises(QueryRangeError):
        BoundingBox(south=46.0, west=4.0, north=45.0, east=5.0)


async def test_write_after_close_is_refused(tmp_path: Path) -> None:
    store = LocalTelemetryStore(tmp_path / "t.sqlite3")
    async with store:
        store.write(VehicleBattery("AB12345", at(0), internal_pct=50.0))
    with pytest.raises(WriterClosedError):
        store.write(VehicleBattery("AB12345", at(1), internal_pct=50.0))
    # Points written before close() were flushed to the file.
    async with LocalTelemetryStore(tmp_path / "t.sqlite3") as again:
        history = await again.battery_history("AB12345", T0, T0 + timedelta(minutes=1))
        assert [b.internal_pct for b in history] == [50.0]


async def test_every_point_kind_is_stored(store: TelemetryStore) -> None:
    points = [
        VehiclePosition("AB12345", 45.0, 4.0, at(0), network="5", device="ctl 1"),
        VehicleBattery("AB12345", at(0), internal_pct=90.0),
        Temperature("42", 61.5, at(0), spot="3", network="5"),
        Temperature("42", 21.0, at(0)),
        StationEnergy("42", 10.0, at(0), power_w=3.5),
        SpotStatus("42", "3", 1, at(0), vehicle="AB12345"),
        SpotStatus("42", "4", 0, at(0)),
        Point("custom,kind", {"station": "42"}, {"alarm": True, "count": 3, "note": 'a "b"'},
              at(0)),
    ]
    for point in points:
        store.write(point)
    # Twice: idempotent per series and timestamp.
    for point in points:
        store.write(point)
    await settle(store)
    assert store.stats.written == 2 * len(points)
    if isinstance(store, InfluxTelemetryStore):
        (result,) = await store.writer.query('SELECT * FROM "custom,kind"')
        assert result["series"][0]["values"] == [[at(0), True, 3, 'a "b"', "42"]]
        (result,) = await store.writer.query("SELECT count(celsius) FROM temperature")
        assert result["series"][0]["values"][0][1] == 2
