"""The dashboard's telemetry routes through HTTP: points written to the app's store
(local SQLite, or the harness's InfluxDB with PostgreSQL), read back through the API."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from kickstand.cloud.api import create_app
from kickstand.cloud.config import Settings
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.models import Trip, TripStatus
from kickstand.cloud.telemetry import (
    StationEnergy,
    VehicleBattery,
    VehiclePosition,
    ns_from_datetime,
    open_telemetry_store,
)
from tests.cloud.api_telemetry.conftest import JWT, TelemetryApi
from tests.cloud.conftest import demo_refs

T0 = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
SERIAL = "LYF001"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def ns(moment: datetime) -> int:
    return ns_from_datetime(moment)


def assert_validation(r: httpx.Response, field: str) -> None:
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == 2
    assert field in [e["field"] for e in body["errors"]], body


async def add_trip(tapi: TelemetryApi, start: datetime, end: datetime | None) -> int:
    async with tapi.maker() as s, s.begin():
        trip = Trip(
            user_id=tapi.demo.user_ids["alice@example.com"],
            vehicle_id=tapi.demo.vehicle_ids[SERIAL],
            network_id=tapi.demo.network_id,
            status=TripStatus.FINISHED if end else TripStatus.RUNNING,
            free_floating_start=True,
            started_at=start,
            ended_at=end,
            cost=Decimal("1.00") if end else None,
            currency="EUR",
        )
        s.add(trip)
        await s.flush()
        return trip.id


async def test_trip_positions_between_start_and_end_paged(tapi: TelemetryApi) -> None:
    net = str(tapi.demo.network_id)
    # Before, during (5 fixes, 10 s apart) and after the trip; another vehicle during it.
    for i, minute in enumerate((-5, 0, 0, 0, 0, 0, 20)):
        moment = T0 + timedelta(minutes=minute, seconds=10 * i)
        tapi.store.write(
            VehiclePosition(SERIAL, 45.76 + i / 1000, 4.83, ns(moment), speed=12.5,
                            heading=90.0, network=net)
        )
    tapi.store.write(VehiclePosition("LYF002", 45.0, 4.0, ns(T0 + timedelta(seconds=15))))
    await tapi.settle()
    trip_id = await add_trip(tapi, T0, T0 + timedelta(minutes=2))
    h = await tapi.headers()

    r = await tapi.client.get(f"/v1/dashboard/trips/{trip_id}/positions", headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["code"] == 0 and body["next_date_min"] is None
    data = body["data"]
    assert data["trip_id"] == trip_id and data["serial_number"] == SERIAL
    assert data["vehicle_id"] == tapi.demo.vehicle_ids[SERIAL]
    positions = data["positions"]
    assert [round(p["latitude"], 3) for p in positions] == [45.761, 45.762, 45.763, 45.764, 45.765]
    first = positions[0]
    assert datetime.fromisoformat(first["date"]) == T0 + timedelta(seconds=10)
    assert first["longitude"] == pytest.approx(4.83)
    assert first["speed"] == 12.5 and first["heading"] == 90.0

    # Keyset paging: two per page, resumed from next_date_min.
    seen: list[float] = []
    params: dict[str, Any] = {"page_size": 2}
    for _ in range(5):
        r = await tapi.client.get(
            f"/v1/dashboard/trips/{trip_id}/positions", headers=h, params=params
        )
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [p["latitude"] for p in page["data"]["positions"]]
        if page["next_date_min"] is None:
            break
        params["date_min"] = page["next_date_min"]
    assert [round(x, 3) for x in seen] == [45.761, 45.762, 45.763, 45.764, 45.765]

    # A running trip: up to now.
    running = await add_trip(tapi, T0 + timedelta(minutes=19), None)
    r = await tapi.client.get(f"/v1/dashboard/trips/{running}/positions", headers=h)
    assert [round(p["latitude"], 3) for p in r.json()["data"]["positions"]] == [45.766]

    r = await tapi.client.get("/v1/dashboard/trips/999999/positions", headers=h)
    assert r.status_code == 404 and r.json()["code"] == 10


async def test_vehicle_timeline_and_battery_history(tapi: TelemetryApi) -> None:
    vehicle_id = tapi.demo.vehicle_ids[SERIAL]
    for i in range(6):
        moment = T0 + timedelta(minutes=i)
        tapi.store.write(VehiclePosition(SERIAL, 45.70 + i / 100, 4.80, ns(moment)))
        tapi.store.write(
            VehicleBattery(SERIAL, ns(moment), internal_pct=90.0 - i, vae_pct=70.0 - 2 * i,
                           voltage=36.5)
        )
    await tapi.settle()
    h = await tapi.headers()
    period = {
        "date_min": iso(T0 + timedelta(minutes=1)),
        "date_max": iso(T0 + timedelta(minutes=4)),
    }

    r = await tapi.client.get(
        f"/v1/dashboard/vehicles/{vehicle_id}/timeline", headers=h, params=period
    )
    assert r.status_code == 200, r.text
    assert [round(p["latitude"], 2) for p in r.json()["data"]] == [45.71, 45.72, 45.73, 45.74]

    r = await tapi.client.get(
        f"/v1/dashboard/vehicles/{vehicle_id}/timeline", headers=h,
        params={**period, "page_size": 3},
    )
    body = r.json()
    assert len(body["data"]) == 3
    assert datetime.fromisoformat(body["next_date_min"]) == (
        T0 + timedelta(minutes=3, microseconds=1)
    )

    r = await tapi.client.get(
        f"/v1/dashboard/vehicles/{vehicle_id}/battery-history", headers=h, params=period
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [b["battery_level"] for b in data] == [89.0, 88.0, 87.0, 86.0]
    assert [b["assist_battery_level"] for b in data] == [68.0, 66.0, 64.0, 62.0]
    assert data[0]["assist_battery_voltage"] == 36.5
    assert datetime.fromisoformat(data[0]["date"]) == T0 + timedelta(minutes=1)

    # Validation names the field.
    url = f"/v1/dashboard/vehicles/{vehicle_id}/timeline"
    r = await tapi.client.get(
        url, headers=h, params={"date_min": iso(T0), "date_max": iso(T0 - timedelta(1))}
    )
    assert_validation(r, "date_max")
    r = await tapi.client.get(url, headers=h, params={"date_min": "2026-03-10T08:00:00"})
    assert_validation(r, "date_min")  # no timezone
    r = await tapi.client.get(url, headers=h, params={"date_min": iso(T0), "page_size": 0})
    assert_validation(r, "page_size")
    r = await tapi.client.get(url, headers=h)
    assert_validation(r, "date_min")
    r = await tapi.client.get("/v1/dashboard/vehicles/999999/timeline", headers=h,
                              params={"date_min": iso(T0)})
    assert r.status_code == 404


async def test_station_energy_consumption_per_local_day(tapi: TelemetryApi) -> None:
    device = tapi.demo.station_device_ids[0]
    other = tapi.demo.station_device_ids[1]
    readings = [
        (datetime(2026, 3, 9, 22, 0, tzinfo=UTC), 1000.0),  # 23:00 on the 9th in Paris
        (datetime(2026, 3, 10, 6, 0, tzinfo=UTC), 1100.0),
        (datetime(2026, 3, 10, 20, 0, tzinfo=UTC), 1500.0),
        (datetime(2026, 3, 10, 23, 30, tzinfo=UTC), 1600.0),  # 00:30 on the 11th in Paris
        (datetime(2026, 3, 11, 12, 0, tzinfo=UTC), 1800.0),
    ]
    for moment, wh in readings:
        tapi.store.write(StationEnergy(device, wh, ns(moment), power_w=40.0))
        tapi.store.write(StationEnergy(other, wh * 10, ns(moment)))
    await tapi.settle()
    h = await tapi.headers()
    url = f"/v1/dashboard/stations/{await tapi.station_id(device)}/energy-consumption"
    period = {"start_date": "2026-03-10", "end_date": "2026-03-12"}

    r = await tapi.client.get(url, headers=h, params={**period, "timezone": "Europe/Paris"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "code": 0,
        "data": [
            {"date": "2026-03-10", "energy_wh": 500.0},
            {"date": "2026-03-11", "energy_wh": 300.0},
            {"date": "2026-03-12", "energy_wh": None},
        ],
    }
    r = await tapi.client.get(url, headers=h, params={**period, "timezone": "UTC"})
    assert [d["energy_wh"] for d in r.json()["data"]] == [600.0, 200.0, None]

    r = await tapi.client.get(url, headers=h, params={**period, "timezone": "Mars/Olympus"})
    assert_validation(r, "timezone")
    r = await tapi.client.get(
        url, headers=h,
        params={"start_date": "2026-03-10", "end_date": "2026-03-09", "timezone": "UTC"},
    )
    assert_validation(r, "end_date")
    r = await tapi.client.get(
        url, headers=h,
        params={"start_date": "2025-01-01", "end_date": "2026-03-09", "timezone": "UTC"},
    )
    assert_validation(r, "end_date")  # more than 366 days
    r = await tapi.client.get(url, headers=h, params={"start_date": "x", "end_date": "2026-03-09",
                                                      "timezone": "UTC"})
    assert_validation(r, "start_date")
    r = await tapi.client.get(
        "/v1/dashboard/stations/999999/energy-consumption", headers=h,
        params={**period, "timezone": "UTC"},
    )
    assert r.status_code == 404 and r.json()["reason"] == "not-found"


async def test_heatmap_rounded_points_of_operated_networks(tapi: TelemetryApi) -> None:
    net = tapi.demo.network_id
    march = datetime(2026, 3, 15, tzinfo=UTC)
    april = datetime(2026, 4, 2, tzinfo=UTC)
    fixes = [
        (45.76012, 4.83041, march, str(net)),
        (45.76049, 4.83010, march + timedelta(seconds=1), str(net)),  # same 0.001° cell
        (45.76012, 4.83041, april, str(net)),  # next month
        (45.76700, 4.83041, march + timedelta(seconds=2), str(net)),
        (45.90000, 4.83000, march + timedelta(seconds=3), str(net)),  # outside the area
        (45.76012, 4.83041, march + timedelta(seconds=4), "9999"),  # another network
    ]
    for i, (lat, lon, moment, network) in enumerate(fixes):
        tapi.store.write(VehiclePosition(f"HM{i:04d}", lat, lon, ns(moment), network=network))
    await tapi.settle()
    h = await tapi.headers()
    params: dict[str, Any] = {
        "networks": str(net), "lat": 45.76, "lng": 4.83, "latDeg": 0.05, "lngDeg": 0.05,
        "date_min": "2026-03-20T00:00:00Z", "date_max": "2026-04-01T00:00:00Z", "zoom": 0,
    }
    r = await tapi.client.get("/v1/dashboard/heatmap", headers=h, params=params)
    assert r.status_code == 200, r.text
    assert r.json()["data"] == [
        {"lat": 45.76, "lng": 4.83, "date": "2026-03-01", "weight": 2},
        {"lat": 45.767, "lng": 4.83, "date": "2026-03-01", "weight": 1},
        {"lat": 45.76, "lng": 4.83, "date": "2026-04-01", "weight": 1},
    ]
    r = await tapi.client.get("/v1/dashboard/heatmap", headers=h, params={**params, "zoom": 2})
    cells = {(p["lat"], p["lng"], p["date"]): p["weight"] for p in r.json()["data"]}
    assert cells[(45.7601, 4.8304, "2026-03-01")] == 1
    assert cells[(45.7605, 4.8301, "2026-03-01")] == 1

    r = await tapi.client.get("/v1/dashboard/heatmap", headers=h, params={**params, "zoom": 3})
    assert_validation(r, "zoom")
    r = await tapi.client.get("/v1/dashboard/heatmap", headers=h, params={**params, "latDeg": -1})
    assert_validation(r, "latDeg")
    r = await tapi.client.get("/v1/dashboard/heatmap", headers=h, params={**params, "lat": 91})
    assert_validation(r, "lat")
    r = await tapi.client.get(
        "/v1/dashboard/heatmap", headers=h, params={**params, "date_max": "2026-01-01T00:00:00Z"}
    )
    assert_validation(r, "date_max")
    r = await tapi.client.get(
        "/v1/dashboard/heatmap", headers=h, params={**params, "networks": "x"}
    )
    assert_validation(r, "networks")
    r = await tapi.client.get(
        "/v1/dashboard/heatmap", headers=h, params={**params, "networks": f"{net},9999"}
    )
    assert r.status_code == 403 and r.json()["code"] == 6


async def test_operators_only(tapi: TelemetryApi) -> None:
    vehicle_id = tapi.demo.vehicle_ids[SERIAL]
    url = f"/v1/dashboard/vehicles/{vehicle_id}/battery-history"
    params = {"date_min": iso(T0)}
    r = await tapi.client.get(url, params=params)
    assert r.status_code == 401 and r.json()["code"] == 3
    r = await tapi.client.get(url, params=params, headers=await tapi.headers("alice@example.com"))
    assert r.status_code == 403 and r.json()["code"] == 6


# ── the store's lifecycle and an unreachable store (local store + SQLite only) ──────────


async def test_unreachable_influx_is_a_503_envelope(sqlite_url: str, tmp_path: Path) -> None:
    """The store replaced (as tests and embedders can) with an InfluxDB nobody serves."""
    settings = Settings(DATABASE_URL=sqlite_url, VAR_DIR=tmp_path / "var", JWT_SECRET=JWT)
    engine = create_engine(sqlite_url)
    app = create_app(settings, engine=engine)
    dead = open_telemetry_store(
        f"http://127.0.0.1:{free_port()}", "kickstand", spool_dir=tmp_path / "spool",
        timeout=2.0,
    )
    demo = demo_refs(sqlite_url)
    async with dead:
        app.state.telemetry_store = dead
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            maker = create_sessionmaker(engine)
            tapi = TelemetryApi(app, client, maker, demo, settings, dead, "dead")
            h = await tapi.headers()
            r = await client.get(
                f"/v1/dashboard/vehicles/{demo.vehicle_ids[SERIAL]}/timeline",
                headers=h, params={"date_min": iso(T0)},
            )
            assert r.status_code == 503, r.text
            body = r.json()
            assert body["code"] == 21 and body["reason"] == "telemetry-unavailable"
            assert "unavailable" in body["message"]
            assert r.headers["retry-after"] == "30"

            # No store at all (the lifespan never ran, or it could not open one): 503 too.
            app.state.telemetry_store = None
            r = await client.get(
                "/v1/dashboard/heatmap", headers=h,
                params={"networks": "1", "lat": 0, "lng": 0, "latDeg": 1, "lngDeg": 1,
                        "date_min": iso(T0), "date_max": iso(T0), "zoom": 0},
            )
            assert r.status_code == 503 and r.json()["code"] == 21
    await engine.dispose()


@pytest.mark.influx
async def test_two_api_processes_on_one_var_dir_each_get_a_store(
    influx: Any, influx_fresh: str, sqlite_url: str, tmp_path: Path
) -> None:
    """The spool directory is one writer's: a second API on the same VAR_DIR takes its own
    instead of failing to start."""
    settings = Settings(
        DATABASE_URL=sqlite_url, VAR_DIR=tmp_path / "var", JWT_SECRET=JWT,
        INFLUX_URL=influx.url, INFLUX_DATABASE=influx_fresh,
    )
    first, second = create_app(settings), create_app(settings)
    async with first.router.lifespan_context(first), second.router.lifespan_context(second):
        a, b = first.state.telemetry_store, second.state.telemetry_store
        assert a is not None and b is not None and a is not b
        spools = sorted(p.name for p in (tmp_path / "var" / "telemetry-spool").iterdir())
        assert spools == ["api", f"api-{os.getpid()}"]
    assert first.state.telemetry_store is None and second.state.telemetry_store is None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("influx_url", [None, "http://127.0.0.1:9"])
async def test_store_that_cannot_open_leaves_the_api_up(
    sqlite_url: str, tmp_path: Path, influx_url: str | None
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where VAR_DIR should be")
    settings = Settings(
        DATABASE_URL=sqlite_url, VAR_DIR=blocker, JWT_SECRET=JWT, INFLUX_URL=influx_url
    )
    engine = create_engine(sqlite_url)
    app = create_app(settings, engine=engine)
    async with app.router.lifespan_context(app):
        assert app.state.telemetry_store is None
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/health")).status_code == 200
            tapi = TelemetryApi(
                app, client, create_sessionmaker(engine), demo_refs(sqlite_url), settings,
                None,
                "none",
            )
            r = await client.get(
                f"/v1/dashboard/vehicles/{tapi.demo.vehicle_ids[SERIAL]}/battery-history",
                headers=await tapi.headers(), params={"date_min": iso(T0)},
            )
            assert r.status_code == 503 and r.json()["reason"] == "telemetry-unavailable"
    await engine.dispose()


@pytest.mark.influx
async def test_refused_influx_query_is_a_502_envelope(
    influx: Any, sqlite_url: str, tmp_path: Path
) -> None:
    """An InfluxDB that answers but refuses (here: no such database) is not 'unavailable'."""
    settings = Settings(DATABASE_URL=sqlite_url, VAR_DIR=tmp_path / "var", JWT_SECRET=JWT)
    engine = create_engine(sqlite_url)
    app = create_app(settings, engine=engine)
    missing = open_telemetry_store(
        influx.url, "no_such_database_here", spool_dir=tmp_path / "spool",
        create_database=False,
    )
    demo = demo_refs(sqlite_url)
    async with missing:
        app.state.telemetry_store = missing
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            maker = create_sessionmaker(engine)
            tapi = TelemetryApi(app, client, maker, demo, settings, missing, "influx")
            r = await client.get(
                f"/v1/dashboard/vehicles/{demo.vehicle_ids[SERIAL]}/timeline",
                headers=await tapi.headers(), params={"date_min": iso(T0)},
            )
            assert r.status_code == 502, r.text
            assert r.json()["code"] == 21 and r.json()["reason"] == "telemetry-query-failed"
    await engine.dispose()
