"""The console's live map, station by station, and its stream with no gap (issue 19).

- Each station is its own marker and table row, coloured by its own state (``STATION_STATES``
  order, shown in the legend); a cluster's stations get distinct slots to be spread around it.
- The map page is rendered with the outbox position its data reflects (``since``) and its
  stream starts there: an event committed after the page and before the stream connects is
  delivered (before: the stream began at the feed's start, the event was lost).

The seeded demo database (SQLite copy per test); the API in process (httpx over ASGI).
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from kickstand.cloud.console import pages
from kickstand.cloud.console.live import CATCH_UP, LiveFeed
from kickstand.cloud.events import catalogue
from kickstand.cloud.events.payloads import DockEvent
from kickstand.cloud.models import Device, DeviceKind, Spot, SpotState, Station
from kickstand.cloud.outbox import emit
from tests.cloud.console.conftest import OPERATOR


@pytest.fixture
async def operator(app_client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The console's client, logged in as the demo network's operator."""
    r = await app_client.post(
        "/console/login", data={"email": OPERATOR[0], "password": OPERATOR[1], "next": "/console/"}
    )
    assert r.status_code == 303
    return app_client


def _page_data(text: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="map-data">(.*?)</script>', text, re.S)
    assert found is not None, "the map page carries its data"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def _station(online: bool, spots: list[tuple[str, int | None]], alerts: int) -> dict[str, Any]:
    """The ``overview/map/stations`` row of a station with these spots (state, vehicle)."""
    active = [vehicle for state, vehicle in spots if state == "active"]
    return {
        "station_id": 1, "online": online, "maintenance": len(active) < len(spots),
        "open_alerts": alerts, "spots_free": sum(v is None for v in active),
        "vehicles_available": sum(v is not None for v in active),
    }  # fmt: skip


def test_station_states_most_urgent_first() -> None:
    ok = [("active", 7), ("active", None)]
    assert pages.station_states(_station(True, ok, alerts=0)) == ["ok"]
    assert pages.station_states(_station(True, ok, alerts=1)) == ["alert"]
    empty = _station(True, [("active", None), ("maintenance", 8)], alerts=2)
    # A vehicle in a spot in maintenance is not available.
    assert pages.station_states(empty) == ["maintenance", "alert", "empty"]
    full = _station(True, [("active", 7), ("out-of-order", None)], alerts=0)
    assert pages.station_states(full) == ["maintenance", "full"]
    down = _station(False, ok, alerts=1)
    assert pages.station_states(down) == ["offline", "alert"]
    # Every state the function says is in the legend's order.
    for states in (["maintenance", "alert", "empty"], ["offline", "alert"]):
        order = [pages.STATION_STATES.index(s) for s in states]
        assert order == sorted(order)


async def test_each_station_is_its_own_marker_spread_around_its_cluster(
    operator: httpx.AsyncClient,
) -> None:
    app = operator.app  # type: ignore[attr-defined]
    async with app.state.sessionmaker() as session:
        # A second station in Bellecour (cluster 1): one spot in maintenance, no vehicle.
        session.add(Device(device_id="st-0101", kind=DeviceKind.STATION))
        second = Station(cluster_id=1, device_id="st-0101", name="Bellecour B")
        session.add(second)
        await session.flush()
        session.add(Spot(station_id=second.id, displayed_number=1))
        session.add(Spot(station_id=second.id, displayed_number=2, state=SpotState.MAINTENANCE))
        await session.commit()
        second_id = second.id

    page = await operator.get("/console/networks/1/map")
    assert page.status_code == 200
    assert 'id="station-table"' in page.text and "cluster-table" not in page.text
    # The legend shows the precedence, most urgent first.
    legend = re.search(r"<ol>(.*?)</ol>", page.text, re.S)
    assert legend is not None
    shown = re.findall(r'class="dot st-([a-z]+)"', legend.group(1))
    assert tuple(shown) == pages.STATION_STATES

    data = _page_data(page.text)
    stations = {s["name"]: s for s in data["stations"]}
    assert set(stations) == {
        "Bellecour", "Bellecour B", "Hôtel de Ville", "Part-Dieu", "Perrache",
    }  # fmt: skip
    a, b = stations["Bellecour"], stations["Bellecour B"]
    # One cluster, one position, two slots: the map spreads them.
    assert (a["latitude"], a["longitude"]) == (b["latitude"], b["longitude"])
    assert (a["slot"], a["of"], b["slot"], b["of"]) == (0, 2, 1, 2)
    assert stations["Perrache"]["of"] == 1
    # Each coloured by its own state (no agent runs here: offline first).
    assert a["states"] == ["offline"]
    assert b["states"] == ["offline", "maintenance", "empty"]
    assert (a["spots_free"], a["vehicles_available"]) == (3, 3)
    assert (b["spots_free"], b["vehicles_available"], b["spots"]) == (1, 0, 2)
    assert a["cluster_name"] == b["cluster_name"] == "Bellecour"

    # The same through map.json (the page's reloads), and one station alone (a live event
    # about it redraws that marker only).
    again = (await operator.get("/console/networks/1/map.json")).json()
    assert {s["station_id"] for s in again["stations"]} == {
        s["station_id"] for s in data["stations"]
    }
    one = (await operator.get(f"/console/stations/{second_id}/map.json")).json()
    assert one["station_id"] == second_id and one["states"] == b["states"]
    assert one["cluster_name"] == "Bellecour"


def _dock(spot_number: int) -> DockEvent:
    return DockEvent(
        network_id=1, spot_id=spot_number, station_id=1, station_device_id="st-0001",
        displayed_number=spot_number, lock_status=0, state="active", maintenance_source=None,
        contained_vehicle_id=None, serial_number=None, status_at=None,
    )  # fmt: skip


async def test_event_between_page_and_stream_is_delivered(
    operator: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page is rendered at an outbox position; an event committed after the render and
    before the browser connects arrives on its stream (the feed was not even running)."""
    app = operator.app  # type: ignore[attr-defined]
    monkeypatch.setattr(pages, "STREAM_MAX_S", 0.5)
    feed: LiveFeed = app.state.console_live
    assert feed._task is None  # nobody watched yet: the feed starts with this page's stream

    page = await operator.get("/console/networks/1/map")
    since = int(_page_data(page.text)["since"])
    found = re.search(r'data-events-url="([^"]+)"', page.text)
    assert found is not None
    url = found.group(1).replace("&amp;", "&")
    assert f"since={since}" in url

    async with app.state.sessionmaker() as session:
        record = emit(session, catalogue.DOCK_UPDATED, 5, _dock(5))
        await session.commit()
        between = record.id
    assert between > since

    stream = await operator.get(url)
    assert stream.status_code == 200
    assert f"id: {between}\nevent: kickstand\n" in stream.text, stream.text
    assert '"topic":"dock.updated"' in stream.text
    # The quiet stream's end moves the browser's Last-Event-ID to the feed's position, so a
    # page that hears nothing for long does not fall behind the feed's memory.
    checkpoint = re.findall(r"^id: (\d+)\n: keepalive", stream.text, re.M)
    assert checkpoint and int(checkpoint[-1]) >= between

    # A reconnection from the last id seen gets only what came after it.
    async with app.state.sessionmaker() as session:
        later = emit(session, catalogue.DOCK_UPDATED, 6, _dock(6))
        await session.commit()
        later_id = later.id
    again = await operator.get(url, headers={"Last-Event-ID": str(between)})
    assert f"id: {later_id}\n" in again.text and f"id: {between}\nevent" not in again.text


async def test_a_stream_far_behind_the_feed_is_told_to_reload(
    operator: httpx.AsyncClient,
) -> None:
    app = operator.app  # type: ignore[attr-defined]
    async with app.state.sessionmaker() as session:
        first = emit(session, catalogue.DOCK_UPDATED, 5, _dock(5))
        await session.commit()
        first_id = first.id
    feed = LiveFeed(app.state.sessionmaker, poll_s=0.05)
    try:
        # Within reach: read once from the outbox (the feed started after it).
        async with feed.subscribe(frozenset({1}), 1, after=first_id - 1) as near:
            got = near.queue.get_nowait()
            assert got is not None and got.id == first_id and not near.gap
        assert feed.stats.catch_ups == 1
        # Beyond CATCH_UP ids back: the page reads its state again instead.
        async with feed.subscribe(frozenset({1}), 1, after=first_id - CATCH_UP - 1) as far:
            assert far.gap and far.queue.empty()
        assert feed.stats.catch_ups == 1
    finally:
        await feed.close()
