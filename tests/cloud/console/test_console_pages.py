"""The operator console over HTTP (fast): login, access (operator of the network, operator of
another network, rider, anonymous), the pages rendered from the dashboard API, confirmed
actions, the alerts inbox, languages, local assets, and the live feed's fan-out and scoping.

The seeded demo database (SQLite copy per test); the API in process (httpx over ASGI).
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from kickstand.cloud.access.models import AccessLog
from kickstand.cloud.alerts.core import AlertCore, Subject
from kickstand.cloud.alerts.types import AlertType
from kickstand.cloud.api import create_app
from kickstand.cloud.config import Settings
from kickstand.cloud.console import VENDOR_DIR, pages
from kickstand.cloud.console.live import LiveFeed
from kickstand.cloud.events import catalogue
from kickstand.cloud.events.payloads import DockEvent
from kickstand.cloud.models import Spot, SpotState
from kickstand.cloud.outbox import emit
from kickstand.cloud.seed import operator_permissions
from tests.cloud.console.conftest import OPERATOR, RIDER, STRANGER, add_operator


async def login(client: httpx.AsyncClient, who: tuple[str, str]) -> httpx.Response:
    return await client.post(
        "/console/login", data={"email": who[0], "password": who[1], "next": "/console/"}
    )


async def test_anonymous_is_sent_to_the_login_page_in_its_language(
    app_client: httpx.AsyncClient,
) -> None:
    r = await app_client.get("/console/stations/1")
    assert r.status_code == 303
    assert r.headers["location"] == "/console/login?next=/console/stations/1"
    page = await app_client.get("/console/login")
    assert page.status_code == 200 and '<html lang="en">' in page.text
    assert 'for="email"' in page.text and 'for="password"' in page.text
    fr = await app_client.get("/console/login", headers={"Accept-Language": "fr-FR,fr;q=0.9"})
    assert '<html lang="fr">' in fr.text and "Connexion opérateur" in fr.text
    asked = await app_client.get("/console/login?lang=fr")
    assert "Mot de passe" in asked.text and asked.cookies.get("ks_lang") == "fr"


async def test_wrong_password_is_refused_on_the_login_page(app_client: httpx.AsyncClient) -> None:
    r = await login(app_client, (OPERATOR[0], "wrong-password"))
    assert r.status_code == 401
    assert 'role="alert"' in r.text and "Wrong email or password." in r.text
    assert not [c for c in r.cookies if c.startswith("ks_console_access")]


async def test_operator_sees_overview_map_station_vehicle_alerts_trips(
    app_client: httpx.AsyncClient,
) -> None:
    r = await login(app_client, OPERATOR)
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    cookies = r.headers.get_list("set-cookie")
    assert any("ks_console_access_0=" in c and "HttpOnly" in c for c in cookies)
    # A browser drops a cookie over 4 KB: the grant-laden access token is cut into several.
    assert all(len(c.split(";")[0]) < 4000 for c in cookies)

    overview = await app_client.get("/console/")
    assert overview.status_code == 200
    assert "Overview · Lyon" in overview.text and "<svg" in overview.text
    assert re.search(r"<dt>Stations</dt><dd>4</dd>", overview.text)

    page = await app_client.get("/console/networks/1/map")
    assert page.status_code == 200 and 'id="map"' in page.text
    data = (await app_client.get("/console/networks/1/map.json")).json()
    assert {s["name"] for s in data["stations"]} == {
        "Bellecour", "Hôtel de Ville", "Part-Dieu", "Perrache",
    }  # fmt: skip
    # The demo stations have no agent running here: offline, the most urgent state.
    assert all(s["states"][0] == "offline" for s in data["stations"])
    assert sorted(v["serial_number"] for v in data["vehicles"]) == [
        "LYF001", "LYF002", "LYF003", "LYF004",
    ]  # fmt: skip
    assert data["zones"]["features"][0]["properties"]["zone_type"] == "border"

    station = await app_client.get("/console/stations/1")
    assert station.status_code == 200
    assert 'id="spot-1" data-spot-id="1" data-state="occupied"' in station.text
    assert 'id="spot-4" data-spot-id="4" data-state="free"' in station.text
    assert "LY0001" in station.text

    cluster = await app_client.get("/console/clusters/1")
    assert cluster.status_code == 303 and cluster.headers["location"] == "/console/stations/1"
    vehicle = await app_client.get("/console/vehicles/13")
    assert vehicle.status_code == 200 and "LYF001" in vehicle.text
    assert (await app_client.get("/console/alerts")).status_code == 200
    assert (await app_client.get("/console/trips?serial_number=LY0001")).status_code == 200
    missing = await app_client.get("/console/stations/4242")
    assert missing.status_code == 404 and "Not found" in missing.text


async def test_rider_gets_no_console(app_client: httpx.AsyncClient) -> None:
    r = await login(app_client, RIDER)
    assert r.status_code == 303  # the login itself is the API's: a rider has a token
    for path in ("/console/", "/console/networks/1/map", "/console/stations/1", "/console/alerts"):
        page = await app_client.get(path)
        assert page.status_code == 403, path
        assert "Access refused" in page.text and "not-an-operator" in page.text
    assert (await app_client.get("/console/events?network_id=1")).status_code == 403
    acted = await app_client.post(
        "/console/stations/1/action",
        data={"action": "spot-maintenance-on", "spot_id": "4", "confirmed": "1"},
    )
    assert acted.status_code == 403


async def test_operator_of_another_network_sees_nothing_of_this_one(
    app_client: httpx.AsyncClient,
) -> None:
    await login(app_client, STRANGER)
    for path in ("/console/stations/1", "/console/networks/1/map.json", "/console/vehicles/13"):
        page = await app_client.get(path)
        assert page.status_code in (403, 404), (path, page.status_code)
        assert "Bellecour" not in page.text and "LYF001" not in page.text
    assert (await app_client.get("/console/events?network_id=1")).status_code == 403


async def test_spot_maintenance_is_confirmed_then_done_through_the_api(
    app_client: httpx.AsyncClient,
) -> None:
    await login(app_client, OPERATOR)
    form = {"action": "spot-maintenance-on", "spot_id": "4"}
    asked = await app_client.post("/console/stations/1/action", data=form)
    assert asked.status_code == 200 and "Please confirm" in asked.text
    assert 'name="confirmed" value="1"' in asked.text

    app = app_client.app  # type: ignore[attr-defined]
    async with app.state.sessionmaker() as session:
        assert (await session.get(Spot, 4)).state != SpotState.MAINTENANCE  # not yet

    done = await app_client.post("/console/stations/1/action", data={**form, "confirmed": "1"})
    assert done.status_code == 303 and "/console/stations/1?done=" in done.headers["location"]
    async with app.state.sessionmaker() as session:
        assert (await session.get(Spot, 4)).state == SpotState.MAINTENANCE
    spots = await app_client.get("/console/stations/1/spots")
    assert 'id="spot-4" data-spot-id="4" data-state="maintenance"' in spots.text

    # With scripts (htmx): confirmed in the browser, the answer is a fragment.
    off = await app_client.post(
        "/console/stations/1/action",
        data={"action": "spot-maintenance-off", "spot_id": "4", "confirmed": "1"},
        headers={"HX-Request": "true"},
    )
    assert off.status_code == 200 and off.headers["HX-Trigger"] == "spots-changed"
    assert "<html" not in off.text


async def test_alerts_are_resolved_several_at_once(app_client: httpx.AsyncClient) -> None:
    app = app_client.app  # type: ignore[attr-defined]
    core = AlertCore()
    async with app.state.sessionmaker() as session:
        ids = []
        for spot in (1, 2):
            change = await core.raise_alert(
                session,
                AlertType.SPOT_HIGH_TEMPERATURE,
                Subject(key=f"console-test-{spot}", network_id=1, cluster_id=1, station_id=1,
                        spot_id=spot, spot_number=spot, device_id="st-0001"),
                now=datetime.now(UTC),
            )  # fmt: skip
            assert change is not None
            ids.append(change.alert.id)
        await session.commit()
    await login(app_client, OPERATOR)
    inbox = await app_client.get("/console/alerts?network_id=1")
    assert all(f'data-alert-id="{i}"' in inbox.text for i in ids)
    data = (await app_client.get("/console/networks/1/map.json")).json()
    bellecour = next(s for s in data["stations"] if s["name"] == "Bellecour")
    assert bellecour["states"] == ["offline", "alert"]
    others = [s for s in data["stations"] if s["name"] != "Bellecour"]
    assert not any("alert" in s["states"] for s in others)

    form = {"action": "resolve", "network_id": "1", "alert_ids": [str(i) for i in ids]}
    asked = await app_client.post("/console/alerts", data=form)
    assert asked.status_code == 200 and "Please confirm" in asked.text
    done = await app_client.post("/console/alerts", data={**form, "confirmed": "1"})
    assert done.status_code == 303
    inbox = await app_client.get(done.headers["location"])
    assert not any(f'data-alert-id="{i}"' in inbox.text for i in ids)
    # Resolved: the station's marker no longer says alert.
    data = (await app_client.get("/console/networks/1/map.json")).json()
    assert next(s for s in data["stations"] if s["name"] == "Bellecour")["states"] == ["offline"]


async def test_pages_load_nothing_from_elsewhere(app_client: httpx.AsyncClient) -> None:
    await login(app_client, OPERATOR)
    assets: set[str] = set()
    for path in ("/console/login", "/console/", "/console/networks/1/map", "/console/stations/1"):
        text = (await app_client.get(path)).text
        refs = re.findall(r'(?:src|href)="([^"]+)"', text)
        assert not [r for r in refs if r.startswith(("http:", "https:", "//"))], path
        assets |= {r for r in refs if r.startswith("/console/assets/")}
    assert "/console/assets/vendor/leaflet/dist/leaflet.js" in assets
    assert "/console/assets/vendor/htmx.org/dist/htmx.min.js" in assets
    assert (VENDOR_DIR / "leaflet" / "dist" / "leaflet.js").is_file(), "run make setup"
    for asset in assets:
        r = await app_client.get(asset)
        assert r.status_code == 200 and r.content, asset


async def test_live_feed_one_reader_for_every_browser_scoped_by_network(
    app_client: httpx.AsyncClient,
) -> None:
    app = app_client.app  # type: ignore[attr-defined]
    feed: LiveFeed = app.state.console_live

    def dock(network_id: int) -> DockEvent:
        return DockEvent(
            network_id=network_id, spot_id=1, station_id=1, station_device_id="st-0001",
            displayed_number=1, lock_status=0, state="active", maintenance_source=None,
            contained_vehicle_id=None, serial_number=None, status_at=None,
        )  # fmt: skip

    async with (
        feed.subscribe(frozenset({1}), 1) as lyon,
        feed.subscribe(frozenset({1}), None) as everything_of_mine,
        feed.subscribe(frozenset({999}), None) as stranger,
    ):
        await asyncio.sleep(0.2)  # the reader has its starting point
        queries_before = feed.stats.queries
        async with app.state.sessionmaker() as session:
            emit(session, catalogue.DOCK_UPDATED, 1, dock(1))
            emit(session, catalogue.DOCK_UPDATED, 1, dock(999))
            await session.commit()
        first = await asyncio.wait_for(lyon.queue.get(), 5)
        assert first is not None and first.topic == "dock.updated" and first.networks == {1}
        assert "event: kickstand" in first.sse() and '"station_id":1' in first.sse()
        mine = await asyncio.wait_for(everything_of_mine.queue.get(), 5)
        assert mine is not None and mine.id == first.id
        other = await asyncio.wait_for(stranger.queue.get(), 5)
        assert other is not None and other.networks == {999}
        await asyncio.sleep(0.3)
        assert lyon.queue.empty() and stranger.queue.empty()
        # Three browsers, one reader: queries follow time, not the number of subscribers.
        elapsed_queries = feed.stats.queries - queries_before
        assert 0 < elapsed_queries < 40
        scrape = (await app_client.get("/metrics")).text
        assert 'kickstand_console_subscribers{worker="live"} 3.0' in scrape
        assert "kickstand_console_events_sent_total" in scrape
    assert not feed.subscribers

    # A browser reconnecting with the last id it saw gets what it missed, from memory.
    async with feed.subscribe(frozenset({1}), 1, after=first.id - 1) as back:
        again = back.queue.get_nowait()
        assert again is not None and again.id == first.id and not back.gap
        assert back.queue.empty()  # the other network's event is not replayed to it
    # One whose last id is older than the feed's memory (here: a feed started since, as in
    # another API process) gets it from the outbox, once (test_console_map: too far back,
    # it is told to reload).
    fresh = LiveFeed(app.state.sessionmaker, poll_s=0.05)
    async with fresh.subscribe(frozenset({1}), 1):
        await asyncio.sleep(0.2)
        async with fresh.subscribe(frozenset({1}), 1, after=first.id - 1) as late:
            missed = late.queue.get_nowait()
            assert missed is not None and missed.id == first.id and not late.gap
            assert late.queue.empty()  # the other network's event is not sent to it
    await fresh.close()


async def test_french_pages(app_client: httpx.AsyncClient) -> None:
    await login(app_client, OPERATOR)
    station = await app_client.get("/console/stations/1?lang=fr")
    assert '<html lang="fr">' in station.text and "Bornettes" in station.text
    assert "Mettre en maintenance" in station.text
    # The choice is kept for the next page.
    overview = await app_client.get("/console/")
    assert "Vue d'ensemble" in overview.text or "Vue d&#39;ensemble" in overview.text


async def test_vehicle_commands_are_confirmed_and_sent_through_the_api(
    app_client: httpx.AsyncClient,
) -> None:
    await login(app_client, OPERATOR)
    page = await app_client.get("/console/vehicles/13")
    assert 'action="/console/vehicles/13/action"' in page.text and "hx-confirm" in page.text
    asked = await app_client.post("/console/vehicles/13/action", data={"action": "reboot"})
    assert asked.status_code == 200 and "Please confirm" in asked.text and "LYF001" in asked.text
    # No controller is connected here: the API's own refusal is what the page shows.
    sent = await app_client.post(
        "/console/vehicles/13/action", data={"action": "reboot", "confirmed": "1"}
    )
    assert sent.status_code >= 400 and 'role="alert"' in sent.text
    unknown = await app_client.post(
        "/console/vehicles/13/action", data={"action": "self-destruct", "confirmed": "1"}
    )
    assert unknown.status_code == 400


async def test_live_feed_reader_stops_with_the_app(sqlite_url: str, tmp_path: Path) -> None:
    app = create_app(Settings(DATABASE_URL=sqlite_url, VAR_DIR=tmp_path / "var"))
    async with app.router.lifespan_context(app):
        feed: LiveFeed = app.state.console_live
        async with feed.subscribe(None, None):
            await asyncio.sleep(0.1)
            reader = feed._task
        assert reader is not None and not reader.done()  # it lingers for reconnections
    assert reader.done()  # stopped before the engine was disposed


async def test_live_stream_checked_once_per_stream_not_per_reconnect(
    app_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page's stream is checked through the API (one access-log row) when it starts; its
    reconnections (one every STREAM_MAX_S) reuse that check; another page is checked."""
    app = app_client.app  # type: ignore[attr-defined]
    monkeypatch.setattr(pages, "STREAM_MAX_S", 0.05)

    async def scope_checks() -> int:
        await app.state.access_log.flush()
        async with app.state.sessionmaker() as session:
            paths = (await session.scalars(select(AccessLog.target_path))).all()
        return sum(p.startswith("/v1/dashboard/networks/short") for p in paths)

    async def events_url() -> str:
        page = await app_client.get("/console/networks/1/map")
        found = re.search(r'data-events-url="([^"]+)"', page.text)
        assert found is not None and "stream=" in found.group(1)
        return found.group(1).replace("&amp;", "&")

    await login(app_client, OPERATOR)
    url = await events_url()
    before = await scope_checks()  # the page's own reads counted
    for _ in range(4):  # the first connection and three reconnections
        r = await app_client.get(url, headers={"Last-Event-ID": "1"})
        assert r.status_code == 200 and r.text.startswith("retry:"), r.text
    assert await scope_checks() == before + 1
    # Another page (another stream): checked again.
    other = await events_url()
    assert other != url
    before = await scope_checks()
    assert (await app_client.get(other)).status_code == 200
    assert await scope_checks() == before + 1
    # A rider naming the operator's stream is checked (its token is not the one that was).
    await login(app_client, RIDER)
    assert (await app_client.get(url)).status_code == 403


async def test_technician_unlock_offered_only_with_unlock_admin(
    app_client: httpx.AsyncClient,
) -> None:
    """The button shows to an operator holding ``unlock.admin`` (write) on the station's
    network, as the API answers it; one without it sees no unlock form and no note."""
    without = ("no-unlock@example.com", "no-unlock-demo-1")
    app = app_client.app  # type: ignore[attr-defined]
    permissions = [p for p in operator_permissions(1) if p["perm_key"] != "unlock.admin"]
    await add_operator(app.state.sessionmaker, without, permissions)
    for who, offered in ((OPERATOR, True), (without, False)):
        await login(app_client, who)
        page = await app_client.get("/console/stations/1")
        spots = await app_client.get("/console/stations/1/spots")
        assert page.status_code == 200 and spots.status_code == 200, who
        assert 'id="spot-1" data-spot-id="1"' in page.text  # the table itself is shown
        for html in (page.text, spots.text):
            assert ('value="spot-unlock"' in html) is offered, who
            assert ("Unlock for a technician" in html) is offered, who

    # The API's answer the console reads: per caller and station; another network's
    # operator learns nothing of network 1's station.
    for who, status, allowed in (
        (OPERATOR, 200, True),
        (without, 200, False),
        (STRANGER, 403, None),
    ):
        login_answer = await app_client.post(
            "/v1/auth/login", json={"email": who[0], "password": who[1]}
        )
        token = login_answer.json()["data"]["token"]
        r = await app_client.get(
            "/v1/dashboard/stations/1/technician-unlock",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == status, (who, r.text)
        if allowed is not None:
            assert r.json()["data"] == {"station_id": 1, "network_id": 1, "allowed": allowed}
