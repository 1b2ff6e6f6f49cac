"""The console's pages. Each handler asks the dashboard API (``client.DashboardClient``) and
renders; a refusal of the API becomes the matching page (login, 403, 404, error).

Actions (maintenance, reboot, status, alerts, billing stop) are confirmed: with scripts,
htmx asks (``hx-confirm``) and posts ``confirmed=1``; without, the first POST answers a
confirmation page whose button posts again with ``confirmed=1``.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import jwt
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.responses import StreamingResponse

from kickstand.cloud.console import HERE, PREFIX, VENDOR_DIR, charts
from kickstand.cloud.console.client import (
    ApiAnswerError,
    DashboardClient,
    cookie_names,
    cookies_of,
)
from kickstand.cloud.console.i18n import LANG_COOKIE, LANGS, negotiate, translator
from kickstand.cloud.console.live import LiveFeed, StreamScopes

router = APIRouter(prefix=PREFIX, include_in_schema=False)
templates = Jinja2Templates(directory=HERE / "templates")


def when(value: Any) -> str:
    """An API date (ISO 8601) as people read it, in UTC (the page says so)."""
    if not value:
        return "–"
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if moment.tzinfo else "")


templates.env.filters["when"] = when
#: Live feed keep-alive: proxies close idle streams; a comment line every so often.
KEEPALIVE_S = 10.0
#: A stream's life: a shutting-down server waits for open responses (the browser reconnects
#: at once with Last-Event-ID and misses nothing).
STREAM_MAX_S = 10.0
#: The station page's temperature chart: its own sensor over this period, at most so many
#: readings (the oldest of the period first: a longer series is cut at its end).
TEMPERATURE_PERIOD = timedelta(hours=24)
TEMPERATURE_POINTS = 2000
#: The station page's recent events read from history (the live feed adds to them).
STATION_EVENTS = 50
#: The map's free-floating vehicles (keyset pages of 500).
MAP_VEHICLES_MAX = 20_000
LIVE_PERMISSION = "stations"
#: A page's stream id (drawn at render: ``new_stream_id``).
STREAM_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")

Page = Callable[[DashboardClient], Awaitable[Response]]


def install(app: FastAPI) -> None:
    app.include_router(router)


# ── rendering ─────────────────────────────────────────────────────────────────────────────


def _render(
    request: Request, name: str, context: dict[str, Any], status: int = 200
) -> HTMLResponse:
    lang = negotiate(request)
    settings = request.app.state.settings
    base = {
        "request": request,
        "lang": lang,
        "langs": LANGS,
        "t": translator(lang),
        "prefix": PREFIX,
        "tile_url": settings.CONSOLE_TILE_URL,
        "tile_attribution": settings.CONSOLE_TILE_ATTRIBUTION,
        "vendor_ok": (VENDOR_DIR / "leaflet" / "dist" / "leaflet.js").is_file(),
        # The live feed's stream of this page (its reconnections are not checked again).
        "stream_id": secrets.token_urlsafe(16),
    }
    response = templates.TemplateResponse(request, name, {**base, **context}, status_code=status)
    asked = request.query_params.get("lang")
    if asked in LANGS:
        response.set_cookie(LANG_COOKIE, asked, max_age=365 * 86400, samesite="lax")
    return response


def _keep_tokens(request: Request, response: Response, api: DashboardClient) -> None:
    if not api.tokens.renewed:
        return
    secure = request.url.scheme == "https"
    settings = request.app.state.settings
    kept = cookies_of(api.tokens)
    for name, value in kept:
        response.set_cookie(
            name, value, max_age=settings.JWT_REFRESH_TTL_S, httponly=True, samesite="strict",
            secure=secure, path=PREFIX,
        )  # fmt: skip
    # A shorter token than the last one: its extra chunks must not be read again.
    names = {name for name, _ in kept}
    for name in cookie_names():
        if name not in names and name in request.cookies:
            response.delete_cookie(name, path=PREFIX)


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/login?next={quote(target)}", status_code=303)


async def _page(request: Request, build: Page) -> Response:
    """Run ``build`` with the operator's client; the API's refusals become pages."""
    api = DashboardClient.of(request)
    if not api.tokens.access and not api.tokens.refresh:
        return _login_redirect(request)
    try:
        response = await build(api)
    except ApiAnswerError as exc:
        response = _refusal(request, exc)
    finally:
        await api.aclose()
    _keep_tokens(request, response, api)
    return response


def _refusal(request: Request, exc: ApiAnswerError) -> Response:
    if exc.status == 401:
        return _login_redirect(request)
    if exc.status == 403:
        return _render(request, "error.html", {"kind": "forbidden", "error": exc}, 403)
    if exc.status == 404:
        return _render(request, "error.html", {"kind": "not_found", "error": exc}, 404)
    status = 400 if exc.status == 422 else exc.status
    return _render(request, "error.html", {"kind": "error", "error": exc}, status)


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _parse_int(value: Any) -> int | None:
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        return None
    return number if 1 <= number <= 2**31 - 1 else None


# ── login ─────────────────────────────────────────────────────────────────────────────────


def _safe_next(value: str | None) -> str:
    # Only a console path: never an open redirect to another site.
    if value and value.startswith(f"{PREFIX}/") and not value.startswith("//"):
        return value
    return f"{PREFIX}/"


@router.get("/login")
async def login_page(request: Request) -> Response:
    return _render(request, "login.html", {"next": _safe_next(request.query_params.get("next"))})


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    email, password = str(form.get("email") or ""), str(form.get("password") or "")
    target = _safe_next(str(form.get("next") or ""))
    api = DashboardClient(request, DashboardClient.of(request).tokens)
    try:
        await api.login(email, password)
    except ApiAnswerError as exc:
        status = 429 if exc.status == 429 else 401 if exc.status in (401, 422) else exc.status
        return _render(
            request, "login.html", {"next": target, "error": exc, "email": email}, status
        )
    finally:
        await api.aclose()
    response = RedirectResponse(target, status_code=303)
    _keep_tokens(request, response, api)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    api = DashboardClient.of(request)
    try:
        await api.logout()
    finally:
        await api.aclose()
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    for name in cookie_names():
        if name in request.cookies:
            response.delete_cookie(name, path=PREFIX)
    return response


# ── networks, overview ────────────────────────────────────────────────────────────────────


async def _networks(api: DashboardClient, network_id: int | None) -> tuple[list[Any], Any]:
    """The operator's networks (the API's scope) and the one the page shows."""
    networks: list[Any] = await api.data("/v1/dashboard/networks/short")
    if not networks:
        raise ApiAnswerError(403, {"code": 0, "message": "no network", "reason": "no-network"})
    chosen = next((n for n in networks if n["network_id"] == network_id), networks[0])
    return networks, chosen


async def _timezone(api: DashboardClient, network_id: int) -> str:
    detail = await api.data(f"/v1/dashboard/networks/{network_id}")
    return str((detail or {}).get("timezone") or "UTC")


@router.get("/")
async def overview(request: Request) -> Response:
    async def build(api: DashboardClient) -> Response:
        networks, network = await _networks(api, _parse_int(request.query_params.get("network_id")))
        nid = network["network_id"]
        tz = await _timezone(api, nid)
        today = datetime.now(UTC).date()
        stations, vehicles, trips, usage = await asyncio.gather(
            api.data("/v1/dashboard/overview/stations", networks=nid),
            api.data("/v1/dashboard/overview/vehicles", networks=nid),
            api.data("/v1/dashboard/overview/trips", networks=nid, timezone=tz),
            api.data(
                "/v1/dashboard/usage-stats", networks=nid, timezone=tz,
                start_date=(today - timedelta(weeks=12)).isoformat(), end_date=today.isoformat(),
            ),
        )  # fmt: skip
        points = [charts.Point(str(row["date"]), float(row["trips"])) for row in usage or []]
        t = translator(negotiate(request))
        return _render(
            request,
            "overview.html",
            {
                "networks": networks, "network": network, "stations": stations,
                "vehicles": vehicles, "trips": trips, "usage": usage or [],
                "usage_chart": charts.bars(t["usage"], points),
            },
        )  # fmt: skip

    return await _page(request, build)


# ── the live map ──────────────────────────────────────────────────────────────────────────


#: A station's states on the map, most urgent first: its marker takes the first (the legend
#: lists them in this order), the table beside the map says them all.
STATION_STATES = ("offline", "maintenance", "alert", "empty", "full", "ok")
#: The map's stations per request (``overview/map/stations``' largest page): a city of 1,000
#: stations is one request. Before, one ``clusters/{id}/stations`` call per cluster, 8 at a
#: time; in process on SQLite the page took 2.1 s → 0.11 s (204 clusters) and 8.1 s → 0.11 s
#: (1,004). A live event then redraws one station, not the map.
MAP_STATIONS_PAGE = 1000
#: The map's stations, at most (pages of :data:`MAP_STATIONS_PAGE`).
MAP_STATIONS_MAX = 20_000


def station_states(station: dict[str, Any]) -> list[str]:
    """What the map says of a station (``STATION_STATES`` order), from its
    ``overview/map/stations`` row: offline, a spot in maintenance (or out of order), an open
    alert, no vehicle available (in an active spot), no free spot (active and empty)."""
    states = []
    if not station["online"]:
        states.append("offline")
    if station["maintenance"]:
        states.append("maintenance")
    if station["open_alerts"]:
        states.append("alert")
    if not station["vehicles_available"]:
        states.append("empty")
    if not station["spots_free"]:
        states.append("full")
    return states or ["ok"]


def map_station(station: dict[str, Any], slot: int, of: int) -> dict[str, Any]:
    """One station's marker and row from its ``overview/map/stations`` row: at its cluster's
    position (stations have none of their own), ``slot`` of ``of`` for the map to spread a
    cluster's stations around it."""
    keep = ("station_id", "name", "device_id", "cluster_id", "cluster_name", "latitude",
            "longitude", "online", "spots", "spots_free", "vehicles_available")  # fmt: skip
    return {
        **{k: station[k] for k in keep}, "slot": slot, "of": of,
        "states": station_states(station),
    }  # fmt: skip


def map_row(station: dict[str, Any], cluster: dict[str, Any], alerts: list[Any]) -> dict[str, Any]:
    """A station's ``overview/map/stations`` row made of its detail (``stations/{id}``), its
    cluster and the network's current alerts: the live redraw of one marker."""
    spot_ids = {s["spot_id"] for s in station["spots"]}
    active = [s for s in station["spots"] if s["state"] == "active"]
    return {
        "station_id": station["station_id"], "name": station["name"],
        "device_id": station["device_id"], "cluster_id": cluster["cluster_id"],
        "cluster_name": cluster["name"], "latitude": cluster["latitude"],
        "longitude": cluster["longitude"], "online": station["online"],
        "maintenance": len(active) < len(station["spots"]),
        "open_alerts": sum(
            a.get("station_id") == station["station_id"] or a.get("spot_id") in spot_ids
            for a in alerts
        ),
        "spots": len(station["spots"]),
        "spots_free": sum(s["vehicle_id"] is None for s in active),
        "vehicles_available": sum(s["vehicle_id"] is not None for s in active),
    }  # fmt: skip


async def _open_alerts(api: DashboardClient, network_id: int) -> list[Any]:
    alerts = await api.data("/v1/dashboard/fleet-alerts", networks=network_id)
    return list(alerts or [])


def _map_stations(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every station one marker, its slot among its cluster's stations (by id)."""
    by_cluster: dict[int, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: r["station_id"]):
        by_cluster.setdefault(row["cluster_id"], []).append(row)
    return [
        map_station(row, slot, len(of)) for of in by_cluster.values() for slot, row in enumerate(of)
    ]


async def _map_data(api: DashboardClient, network_id: int) -> dict[str, Any]:
    """The map's stations, free-floating vehicles and zones (what ``map.json`` answers)."""
    rows, vehicles, zones, alerts = await asyncio.gather(
        api.pages(
            "/v1/dashboard/overview/map/stations", networks=network_id,
            page_size=MAP_STATIONS_PAGE, limit=MAP_STATIONS_MAX, primary_key_dir="ASC",
        ),
        api.pages("/v1/dashboard/vehicles", networks=network_id, limit=MAP_VEHICLES_MAX),
        api.data("/v1/dashboard/geofencing/zones", network_id=network_id),
        _open_alerts(api, network_id),
    )  # fmt: skip
    alerted_vehicles = {a.get("vehicle_id") for a in alerts}
    free = [
        {**v, "alert": v["vehicle_id"] in alerted_vehicles}
        for v in vehicles
        if v.get("spot_id") is None and v.get("latitude") is not None
    ]
    return {"stations": _map_stations(rows), "vehicles": free, "zones": zones}


async def _position(request: Request) -> int:
    """The outbox position a page reflects: read before its data (its stream starts there)."""
    feed: LiveFeed = request.app.state.console_live
    return await feed.position()


@router.get("/networks/{network_id}/map")
async def map_page(request: Request, network_id: int) -> Response:
    async def build(api: DashboardClient) -> Response:
        networks, network = await _networks(api, network_id)
        if network["network_id"] != network_id:
            return RedirectResponse(f"{PREFIX}/networks/{network['network_id']}/map", 303)
        since = await _position(request)
        detail, data = await asyncio.gather(
            api.data(f"/v1/dashboard/networks/{network_id}"), _map_data(api, network_id)
        )
        return _render(
            request,
            "map.html",
            {"networks": networks, "network": network, "detail": detail,
             "map_data": {**data, "since": since}, "since": since},
        )  # fmt: skip

    return await _page(request, build)


@router.get("/networks/{network_id}/map.json")
async def map_data(request: Request, network_id: int) -> Response:
    async def build(api: DashboardClient) -> Response:
        since = await _position(request)
        return JSONResponse({**await _map_data(api, network_id), "since": since})

    return await _page(request, build)


@router.get("/stations/{station_id}/map.json")
async def station_map_data(request: Request, station_id: int) -> Response:
    """One station's marker and row (a live event about it redraws that marker only)."""

    async def build(api: DashboardClient) -> Response:
        station = await api.data(f"/v1/dashboard/stations/{station_id}")
        cluster, alerts = await asyncio.gather(
            api.data(f"/v1/dashboard/clusters/{station['cluster_id']}"),
            _open_alerts(api, station["network_id"]),
        )
        # Its slot among the cluster's stations is the page's (drawn with the whole map).
        return JSONResponse(map_station(map_row(station, cluster, alerts), 0, 1))

    return await _page(request, build)


@router.get("/events")
async def events(request: Request) -> Response:
    """Server-sent events of the operator's networks (``network_id``: one of them)."""
    api = DashboardClient.of(request)
    network_id = _parse_int(request.query_params.get("network_id"))
    streams: StreamScopes = request.app.state.console_streams
    stream_id = request.query_params.get("stream") or ""
    key = (
        streams.key(api.tokens.access, stream_id)
        if api.tokens.access and STREAM_ID.fullmatch(stream_id)
        else None
    )
    known, scope = streams.get(key) if key is not None else (False, None)
    if not known:
        try:
            # The API's scope for the live permission: what the operator may see (checked,
            # and written in the access log, once per stream: its reconnections reuse it).
            scope = await _live_scope(api)
        except ApiAnswerError as exc:
            await api.aclose()
            return Response(status_code=exc.status)
        if key is not None and api.tokens.access:
            # Under the token the browser holds from now on (a refresh may have renewed it).
            token = api.tokens.access
            streams.put(streams.key(token, stream_id), scope, _token_left_s(token))
    await api.aclose()
    if network_id is not None and scope is not None and network_id not in scope:
        return Response(status_code=403)
    feed: LiveFeed = request.app.state.console_live
    # A reconnection carries the last event seen; a first connection the position its page
    # was rendered at (``since``): either way what came after is delivered, none missed.
    after = _parse_position(request.headers.get("last-event-id"))
    if after is None:
        after = _parse_position(request.query_params.get("since"))

    async def stream() -> AsyncIterator[str]:
        ends = time.monotonic() + STREAM_MAX_S
        async with feed.subscribe(scope, network_id, after) as subscriber:
            yield "retry: 500\n\n"
            if subscriber.gap:
                yield "event: reload\ndata: {}\n\n"
            while not await request.is_disconnected():
                left = ends - time.monotonic()
                if left <= 0:
                    return
                try:
                    event = await asyncio.wait_for(subscriber.queue.get(), min(KEEPALIVE_S, left))
                except TimeoutError:
                    # Nothing pending for this stream: a reconnection may start from the
                    # feed's position (else a quiet page's ``since`` would fall ever further
                    # behind the feed's memory).
                    yield feed.checkpoint() + ": keepalive\n\n"
                    continue
                if event is None:  # dropped: too slow; the browser reconnects
                    return
                yield event.sse()

    response = StreamingResponse(stream(), media_type="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    _keep_tokens(request, response, api)
    return response


def _parse_position(value: Any) -> int | None:
    """An outbox position (0: before any event)."""
    if value == "0":
        return 0
    return _parse_int(value)


def _token_left_s(token: str) -> float:
    """The life left of an access token the API has just accepted (its ``exp``; read, not
    verified: it only shortens how long the stream's check is reused)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
        return max(0.0, float(claims["exp"]) - time.time())
    except (jwt.PyJWTError, KeyError, TypeError, ValueError):
        return 0.0


async def _live_scope(api: DashboardClient) -> frozenset[int] | None:
    """Networks the operator sees, as the API answers them (``networks/short`` is scoped by
    the one access check); an admin's unscoped grant shows as every network."""
    networks = await api.data("/v1/dashboard/networks/short")
    return frozenset(int(n["network_id"]) for n in networks or [])


@router.get("/clusters/{cluster_id}")
async def cluster_page(request: Request, cluster_id: int) -> Response:
    """A cluster's station (the first, when it has several: each lists the others)."""

    async def build(api: DashboardClient) -> Response:
        stations = await api.data(f"/v1/dashboard/clusters/{cluster_id}/stations")
        if not stations:
            raise ApiAnswerError(404, {"code": 3, "message": "this cluster has no station"})
        return RedirectResponse(f"{PREFIX}/stations/{stations[0]['station_id']}", 303)

    return await _page(request, build)


# ── stations ──────────────────────────────────────────────────────────────────────────────


async def _device_of(
    api: DashboardClient, kind: str, device_id: str | None, network_id: int
) -> Any:
    """The registry row (integer id) of a station's or vehicle's device."""
    if not device_id:
        return None
    rows = await api.pages("/v1/dashboard/devices", kind=kind, network_id=network_id)
    return next((r for r in rows if r["device_id"] == device_id), None)


async def _commands(api: DashboardClient, device: Any) -> list[Any]:
    if device is None:
        return []
    body = await api.call(
        "GET", f"/v1/dashboard/devices/{device['id']}/commands", params={"page_size": 20}
    )
    return list(body.get("data") or [])


@router.get("/stations/{station_id}")
async def station_page(request: Request, station_id: int) -> Response:
    async def build(api: DashboardClient) -> Response:
        position = await _position(request)
        station = await api.data(f"/v1/dashboard/stations/{station_id}")
        nid = station["network_id"]
        tz = await _timezone(api, nid)
        today = datetime.now(UTC).date()
        since = (datetime.now(UTC) - TEMPERATURE_PERIOD).isoformat()
        (device, alerts, maintenances, energy, temperature, events,
         may_unlock) = await asyncio.gather(
            _device_of(api, "station", station.get("device_id"), nid),
            api.data("/v1/dashboard/fleet-alerts", networks=nid),
            api.pages("/v1/dashboard/maintenances", networks=nid),
            _optional(api.data(
                f"/v1/dashboard/stations/{station_id}/energy-consumption", timezone=tz,
                start_date=(today - timedelta(days=14)).isoformat(), end_date=today.isoformat(),
            )),
            _optional(api.data(
                f"/v1/dashboard/stations/{station_id}/temperature-history", date_min=since,
                page_size=TEMPERATURE_POINTS,
            )),
            api.data(f"/v1/dashboard/stations/{station_id}/events", page_size=STATION_EVENTS),
            _may_unlock(api, station_id),
        )  # fmt: skip
        spot_ids = {s["spot_id"] for s in station["spots"]}
        t = translator(negotiate(request))
        return _render(
            request,
            "station.html",
            {
                "station": station,
                "device": device,
                "commands": await _commands(api, device),
                "alerts": [a for a in alerts or [] if a.get("station_id") == station_id
                           or a.get("spot_id") in spot_ids],
                "maintenances": [m for m in maintenances if m.get("station_id") == station_id
                                 or m.get("spot_id") in spot_ids],
                "energy_chart": charts.bars(t["energy"], _energy_points(energy)),
                "temperature_chart": charts.line(
                    t["temperature"],
                    [charts.Point(when(r["date"]), float(r["temperature"]))
                     for r in temperature or []],
                ),
                "temperatures": (temperature or [])[-1:],
                "events": [event_line(e) for e in events or []],
                "may_unlock": may_unlock,
                "message": request.query_params.get("done"),
                "since": position,
            },
        )  # fmt: skip

    return await _page(request, build)


async def _may_unlock(api: DashboardClient, station_id: int) -> bool:
    """Whether the technician unlock is offered: the API's answer of what this operator may
    do there (``unlock.admin`` with write on the station's network), not a guess of ours."""
    access = await api.data(f"/v1/dashboard/stations/{station_id}/technician-unlock")
    return bool(access and access.get("allowed"))


def event_line(event: dict[str, Any]) -> str:
    """One recent event in words, as the live feed writes them (console.js): when, topic,
    the spot, the state it went to, the vehicle, a device's own event."""
    p = event.get("data") or {}
    line = f"{when(event.get('created_at'))} · {event.get('topic')}"
    if p.get("event"):
        line += f" · {p['event']}"
    if p.get("displayed_number"):
        line += f" · #{p['displayed_number']}"
    if p.get("state"):
        line += f" → {p['state']}"
    if p.get("serial_number"):
        line += f" ({p['serial_number']})"
    return line


async def _optional(call: Awaitable[Any]) -> Any:
    """A part of a page that may be unavailable (the telemetry store down: 503)."""
    try:
        return await call
    except ApiAnswerError as exc:
        if exc.status in (503, 422):
            return None
        raise


def _energy_points(energy: Any) -> list[charts.Point]:
    return [charts.Point(str(row["date"]), float(row["energy_wh"] or 0)) for row in energy or []]


@router.get("/stations/{station_id}/spots")
async def station_spots(request: Request, station_id: int) -> Response:
    """The spots table alone (htmx swaps it on a live event or after an action)."""

    async def build(api: DashboardClient) -> Response:
        station, may_unlock = await asyncio.gather(
            api.data(f"/v1/dashboard/stations/{station_id}"), _may_unlock(api, station_id)
        )
        return _render(request, "_spots.html", {"station": station, "may_unlock": may_unlock})

    return await _page(request, build)


STATION_ACTIONS = (
    "spot-maintenance-on", "spot-maintenance-off", "spot-unlock", "station-maintenance-on",
    "station-maintenance-off", "reboot", "trigger-status",
)  # fmt: skip


@router.post("/stations/{station_id}/action")
async def station_action(request: Request, station_id: int) -> Response:
    form = await request.form()
    action = str(form.get("action") or "")
    spot_id = _parse_int(form.get("spot_id"))
    confirmed = form.get("confirmed") == "1"
    reason = str(form.get("reason") or "").strip()[:64]
    # One attempt per confirmation form: a reload of the confirmed POST replays its answer.
    attempt = str(form.get("attempt") or "") or f"console-{uuid.uuid4()}"

    async def build(api: DashboardClient) -> Response:
        if action not in STATION_ACTIONS or (action.startswith("spot-") and spot_id is None):
            raise ApiAnswerError(422, {"code": 2, "message": f"unknown action {action!r}"})
        if action == "spot-unlock" and not reason:
            raise ApiAnswerError(
                422, {"code": 2, "message": "a reason is required to unlock a spot"}
            )
        station = await api.data(f"/v1/dashboard/stations/{station_id}")
        spot = next((s for s in station["spots"] if s["spot_id"] == spot_id), None)
        if action.startswith("spot-") and spot is None:
            raise ApiAnswerError(404, {"code": 3, "message": "no such spot at this station"})
        if not confirmed:
            return _render(
                request,
                "confirm.html",
                {"action": action, "station": station, "spot": spot,
                 "post_to": f"{PREFIX}/stations/{station_id}/action",
                 "fields": {"action": action, "spot_id": spot_id or "", "reason": reason,
                            "attempt": attempt},
                 "back": f"{PREFIX}/stations/{station_id}"},
            )  # fmt: skip
        answer = await _run_station_action(api, station, action, spot_id, reason, attempt)
        if _is_htmx(request):
            response = _render(request, "_result.html", {"answer": answer})
            response.headers["HX-Trigger"] = "spots-changed"
            return response
        return RedirectResponse(
            f"{PREFIX}/stations/{station_id}?done={quote(answer)}", status_code=303
        )

    return await _page(request, build)


async def _run_station_action(
    api: DashboardClient,
    station: dict[str, Any],
    action: str,
    spot_id: int | None,
    reason: str,
    attempt: str,
) -> str:
    if action == "spot-unlock":
        body = await api.call(
            "POST", f"/v1/dashboard/spots/{spot_id}/unlock", json={"reason": reason},
            headers={"Idempotency-Key": attempt},
        )  # fmt: skip
        return str(body["data"]["command"]["outcome"])
    if action.startswith("spot-maintenance"):
        body = await api.call(
            "PUT", f"/v1/dashboard/spots/{spot_id}/maintenance",
            json={"in_maintenance": action.endswith("-on"), "reason": "console"},
        )  # fmt: skip
        return str(body["data"].get("station_answer") or "done")
    if action.startswith("station-maintenance"):
        body = await api.call(
            "PUT", f"/v1/dashboard/stations/{station['station_id']}/maintenance",
            json={"in_maintenance": action.endswith("-on"), "reason": "console"},
        )  # fmt: skip
        return str(body["data"].get("station_answer") or "done")
    device = await _device_of(api, "station", station.get("device_id"), station["network_id"])
    return await _device_command(api, device, action)


async def _device_command(api: DashboardClient, device: Any, action: str) -> str:
    """Reboot or ask for a status (a station's mainboard or a vehicle's controller)."""
    if device is None:
        raise ApiAnswerError(404, {"code": 3, "message": "no device is attached"})
    path = f"/v1/dashboard/devices/{device['id']}/commands/"
    if action == "reboot":
        body = await api.call("POST", path + "reboot", json={"hard": False})
    else:
        body = await api.call("POST", path + "trigger-message", json={"which": "status"})
    data = body.get("data") or {}
    return str(data.get("status") or data.get("result") or "sent")


# ── vehicles ──────────────────────────────────────────────────────────────────────────────


@router.get("/vehicles/{vehicle_id}")
async def vehicle_page(request: Request, vehicle_id: int) -> Response:
    async def build(api: DashboardClient) -> Response:
        vehicle = await api.data(f"/v1/dashboard/vehicles/{vehicle_id}")
        since = (datetime.now(UTC) - timedelta(days=7)).isoformat()
        device, alerts, maintenances, battery = await asyncio.gather(
            _device_of(api, "vehicle", vehicle.get("device_id"), vehicle["network_id"]),
            api.data(f"/v1/dashboard/vehicles/{vehicle_id}/alerts"),
            api.data(f"/v1/dashboard/vehicles/{vehicle_id}/maintenances"),
            _optional(api.data(f"/v1/dashboard/vehicles/{vehicle_id}/battery-history",
                               date_min=since)),
        )  # fmt: skip
        t = translator(negotiate(request))
        rows = battery if isinstance(battery, list) else []
        points = [
            charts.Point(str(r.get("date", ""))[:16], float(r.get("battery_level") or 0))
            for r in rows if isinstance(r, dict)
        ]  # fmt: skip
        return _render(
            request,
            "vehicle.html",
            {"vehicle": vehicle, "device": device, "commands": await _commands(api, device),
             "alerts": [a for a in alerts or [] if a.get("state") not in ("resolved",)],
             "maintenances": [m for m in maintenances or [] if m.get("stop_date") is None],
             "battery_chart": charts.line(t["battery_history"], points),
             "message": request.query_params.get("done")},
        )  # fmt: skip

    return await _page(request, build)


DEVICE_ACTIONS = ("reboot", "trigger-status")


@router.post("/vehicles/{vehicle_id}/action")
async def vehicle_action(request: Request, vehicle_id: int) -> Response:
    form = await request.form()
    action = str(form.get("action") or "")
    confirmed = form.get("confirmed") == "1"

    async def build(api: DashboardClient) -> Response:
        if action not in DEVICE_ACTIONS:
            raise ApiAnswerError(422, {"code": 2, "message": f"unknown action {action!r}"})
        vehicle = await api.data(f"/v1/dashboard/vehicles/{vehicle_id}")
        if not confirmed:
            return _render(
                request,
                "confirm.html",
                {"action": action, "vehicle": vehicle,
                 "post_to": f"{PREFIX}/vehicles/{vehicle_id}/action",
                 "fields": {"action": action}, "back": f"{PREFIX}/vehicles/{vehicle_id}"},
            )  # fmt: skip
        device = await _device_of(api, "vehicle", vehicle.get("device_id"), vehicle["network_id"])
        answer = await _device_command(api, device, action)
        if _is_htmx(request):
            return _render(request, "_result.html", {"answer": answer})
        return RedirectResponse(
            f"{PREFIX}/vehicles/{vehicle_id}?done={quote(answer)}", status_code=303
        )

    return await _page(request, build)


# ── alerts inbox ──────────────────────────────────────────────────────────────────────────

ALERT_ACTIONS = ("resolve", "silence", "escalate")


@router.get("/alerts")
async def alerts_page(request: Request) -> Response:
    async def build(api: DashboardClient) -> Response:
        networks, network = await _networks(api, _parse_int(request.query_params.get("network_id")))
        alerts = await api.data("/v1/dashboard/fleet-alerts", networks=network["network_id"])
        return _render(
            request,
            "alerts.html",
            {"networks": networks, "network": network, "alerts": alerts or [],
             "message": request.query_params.get("done")},
        )  # fmt: skip

    return await _page(request, build)


@router.post("/alerts")
async def alerts_action(request: Request) -> Response:
    form = await request.form()
    action = str(form.get("action") or "")
    ids = [i for i in (_parse_int(v) for v in form.getlist("alert_ids")) if i is not None]
    network_id = _parse_int(form.get("network_id"))
    confirmed = form.get("confirmed") == "1"
    back = f"{PREFIX}/alerts" + (f"?network_id={network_id}" if network_id else "")

    async def build(api: DashboardClient) -> Response:
        if action not in ALERT_ACTIONS or not ids:
            raise ApiAnswerError(422, {"code": 2, "message": "choose alerts and an action"})
        if not confirmed:
            return _render(
                request,
                "confirm.html",
                {"action": action, "count": len(ids), "post_to": f"{PREFIX}/alerts",
                 "fields": {"action": action, "network_id": network_id or ""},
                 "alert_ids": ids, "back": back},
            )  # fmt: skip
        await api.call("POST", f"/v1/dashboard/fleet-alerts/{action}", json={"alert_ids": ids})
        if _is_htmx(request):
            response = Response(status_code=204)
            response.headers["HX-Refresh"] = "true"
            return response
        sep = "&" if "?" in back else "?"
        return RedirectResponse(f"{back}{sep}done={action}", status_code=303)

    return await _page(request, build)


# ── trips ─────────────────────────────────────────────────────────────────────────────────

TRIP_FILTERS = ("serial_number", "email", "state")


@router.get("/trips")
async def trips_page(request: Request) -> Response:
    async def build(api: DashboardClient) -> Response:
        networks, network = await _networks(api, _parse_int(request.query_params.get("network_id")))
        filters = {k: request.query_params.get(k) or None for k in TRIP_FILTERS}
        body = await api.call(
            "GET", "/v1/dashboard/trips",
            params={"networks": network["network_id"], "page_size": 50,
                    "serial_number": filters["serial_number"], "email": filters["email"],
                    "state": filters["state"]},
        )  # fmt: skip
        return _render(
            request,
            "trips.html",
            {"networks": networks, "network": network, "trips": body.get("data") or [],
             "filters": filters},
        )  # fmt: skip

    return await _page(request, build)


@router.get("/trips/{trip_id}")
async def trip_page(request: Request, trip_id: int) -> Response:
    async def build(api: DashboardClient) -> Response:
        trip = await api.data(f"/v1/dashboard/trips/{trip_id}")
        return _render(
            request,
            "trip.html",
            {"trip": trip, "breakdown": _flatten(trip.get("cost_detail") or {}),
             "positions": json.dumps([[p["latitude"], p["longitude"]]
                                      for p in trip.get("positions") or []]),
             "message": request.query_params.get("done")},
        )  # fmt: skip

    return await _page(request, build)


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """The billing engine's breakdown (nested dicts and lists) as label/value rows."""
    if isinstance(value, dict):
        rows: list[tuple[str, str]] = []
        for key, item in value.items():
            rows.extend(_flatten(item, f"{prefix}{key}" if not prefix else f"{prefix} › {key}"))
        return rows
    if isinstance(value, list):
        rows = []
        for i, item in enumerate(value, 1):
            rows.extend(_flatten(item, f"{prefix} {i}"))
        return rows
    return [(prefix, "" if value is None else str(value))]


@router.post("/trips/{trip_id}/billing-stop")
async def trip_billing_stop(request: Request, trip_id: int) -> Response:
    form = await request.form()
    when = str(form.get("date") or "")
    reason = str(form.get("reason") or "")
    confirmed = form.get("confirmed") == "1"

    async def build(api: DashboardClient) -> Response:
        at = _aware(when)
        if not confirmed:
            trip = await api.data(f"/v1/dashboard/trips/{trip_id}")
            return _render(
                request,
                "confirm.html",
                {"action": "stop-billing", "trip": trip,
                 "post_to": f"{PREFIX}/trips/{trip_id}/billing-stop",
                 "fields": {"date": when, "reason": reason},
                 "back": f"{PREFIX}/trips/{trip_id}"},
            )  # fmt: skip
        await api.call(
            "PUT", f"/v1/dashboard/trips/{trip_id}/billing-stop",
            json={"date": at.isoformat() if at else None, "reason": reason},
        )  # fmt: skip
        return RedirectResponse(f"{PREFIX}/trips/{trip_id}?done=billing-stop", status_code=303)

    return await _page(request, build)


def _aware(value: str) -> datetime | None:
    """A ``datetime-local`` field (the browser's wall time, sent without a zone) as UTC;
    empty: now."""
    if not value:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ApiAnswerError(
            422, {"code": 2, "message": "date: give a date and time (2026-12-06T18:00)"}
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


__all__ = ["install", "map_station", "router", "station_states"]
