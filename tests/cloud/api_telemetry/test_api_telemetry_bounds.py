"""Dates outside the telemetry store's range (int64 nanoseconds: 1678 … 2262) are a 422
naming the field on every telemetry route, never the store's overflow (a 500)."""

from __future__ import annotations

import pytest

from .conftest import TelemetryApi


@pytest.mark.parametrize("tapi", ["local"], indirect=True)
async def test_dates_outside_the_store_range_are_422(tapi: TelemetryApi) -> None:
    headers = await tapi.headers()
    vehicle = next(iter(tapi.demo.vehicle_ids.values()))
    station = await tapi.station_id(tapi.demo.station_device_ids[0])
    area = {"networks": str(tapi.demo.network_id), "lat": "45.7", "lng": "4.8"}
    area |= {"latDeg": "0.1", "lngDeg": "0.1", "zoom": "1"}
    ok_min, ok_max = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"
    cases = [
        (f"/vehicles/{vehicle}/timeline", {"date_min": "1677-12-31T23:59:59Z"}, "date_min"),
        (f"/vehicles/{vehicle}/timeline", {"date_min": "0001-01-01T00:00:00+14:00"}, "date_min"),
        (
            f"/vehicles/{vehicle}/battery-history",
            {"date_min": ok_min, "date_max": "2262-04-12T00:00:00Z"},
            "date_max",
        ),
        ("/trips/1/positions", {"date_min": "1500-01-01T00:00:00Z"}, "date_min"),
        (
            f"/stations/{station}/energy-consumption",
            {"start_date": "1600-01-01", "end_date": "2026-01-01", "timezone": "UTC"},
            "start_date",
        ),
        (
            "/heatmap",
            {**area, "date_min": "9999-12-31T23:00:00-10:00", "date_max": ok_max},
            "date_min",
        ),
    ]
    for path, params, field in cases:
        r = await tapi.client.get(f"/v1/dashboard{path}", params=params, headers=headers)
        assert r.status_code == 422, (path, r.text)
        body = r.json()
        assert body["code"] == 2 and [e["field"] for e in body["errors"]] == [field], path
    # the edges of the range are fine
    r = await tapi.client.get(
        f"/v1/dashboard/vehicles/{vehicle}/timeline",
        params={"date_min": "1678-01-01T00:00:00Z", "date_max": "2262-04-11T00:00:00Z"},
        headers=headers,
    )
    assert r.status_code == 200, r.text
