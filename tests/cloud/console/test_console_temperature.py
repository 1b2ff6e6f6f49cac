"""A station's temperature: ``GET /v1/dashboard/stations/{station_id}/temperature-history``
(the station's own sensor or one spot's, paged by time like the battery history) on the
local store and on InfluxDB, and its chart on the console's station page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kickstand.cloud.telemetry import Temperature, ns_from_datetime
from tests.cloud.api_telemetry.conftest import TelemetryApi, tapi

__all__ = ["tapi"]  # the fixture, shared with the other telemetry routes' tests

T0 = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def test_temperature_history_of_a_station_and_of_a_spot(tapi: TelemetryApi) -> None:
    net = str(tapi.demo.network_id)
    for i in range(5):  # the cabinet, one a minute; spot 2 twice; another station once
        at = ns_from_datetime(T0 + timedelta(minutes=i))
        tapi.store.write(Temperature("st-0001", 20.0 + i, at, network=net))
    for i in range(2):
        at = ns_from_datetime(T0 + timedelta(minutes=i, seconds=30))
        tapi.store.write(Temperature("st-0001", 40.0 + i, at, spot="2", network=net))
    tapi.store.write(Temperature("st-0002", 99.0, ns_from_datetime(T0), network=net))
    await tapi.settle()
    station = await tapi.station_id("st-0001")
    url = f"/v1/dashboard/stations/{station}/temperature-history"
    h = await tapi.headers()

    r = await tapi.client.get(url, headers=h, params={"date_min": iso(T0)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["code"] == 0 and body["next_date_min"] is None
    assert [s["temperature"] for s in body["data"]] == [20.0, 21.0, 22.0, 23.0, 24.0]
    assert datetime.fromisoformat(body["data"][0]["date"]) == T0

    r = await tapi.client.get(url, headers=h, params={"date_min": iso(T0), "spot": 2})
    assert [s["temperature"] for s in r.json()["data"]] == [40.0, 41.0]

    # Paged by time: two per page, resumed from next_date_min.
    seen: list[float] = []
    params: dict[str, Any] = {"date_min": iso(T0), "page_size": 2}
    for _ in range(5):
        page = (await tapi.client.get(url, headers=h, params=params)).json()
        seen += [s["temperature"] for s in page["data"]]
        if page["next_date_min"] is None:
            break
        params["date_min"] = page["next_date_min"]
    assert seen == [20.0, 21.0, 22.0, 23.0, 24.0]

    # The same limits and errors as the other telemetry routes.
    r = await tapi.client.get(url, headers=h, params={"date_min": "2026-03-10T08:00:00"})
    assert r.status_code == 422 and "date_min" in [e["field"] for e in r.json()["errors"]]
    r = await tapi.client.get(url, headers=h, params={"date_min": iso(T0), "page_size": 0})
    assert r.status_code == 422
    r = await tapi.client.get(url, headers=h, params={"date_min": iso(T0), "spot": -1})
    assert r.status_code == 422
    r = await tapi.client.get(
        "/v1/dashboard/stations/999999/temperature-history",
        headers=h,
        params={"date_min": iso(T0)},
    )
    assert r.status_code == 404
    rider = await tapi.headers("alice@example.com")
    r = await tapi.client.get(url, headers=rider, params={"date_min": iso(T0)})
    assert r.status_code == 403


async def test_station_page_charts_the_last_day(tapi: TelemetryApi) -> None:
    if tapi.backend != "local":
        return  # the page reads the same route; once is enough
    now = datetime.now(UTC)
    for minutes, celsius in ((90, 18.5), (60, 19.5), (30, 21.25)):
        at = ns_from_datetime(now - timedelta(minutes=minutes))
        tapi.store.write(Temperature("st-0001", celsius, at))
    await tapi.settle()
    station = await tapi.station_id("st-0001")
    email = "operator@example.com"
    r = await tapi.client.post(
        "/console/login",
        data={"email": email, "password": tapi.demo.passwords[email], "next": "/console/"},
    )
    assert r.status_code == 303, r.text
    page = await tapi.client.get(f"/console/stations/{station}")
    assert page.status_code == 200, page.text
    chart = page.text.split('id="temperature-chart"', 1)[1].split("</figure>", 1)[0]
    assert "<polyline" in chart and "3 points" in chart and "18.5 to 21.25" in chart
    assert "21.2 °C" in page.text  # the latest reading, in words
