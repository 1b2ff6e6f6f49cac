"""The operator console: server-rendered pages at ``/console``, served by the API process.

What it is
    Jinja2 pages (``templates/``) for the people who run a network: a live map, station
    and vehicle pages with their actions, the fleet alerts inbox, trips, overview figures
    and usage charts. English and French (``i18n.py``: ``?lang=fr`` or Accept-Language).

One implementation of every rule
    The console is a *client of the dashboard API*: each page calls the JSON API in process
    (``client.DashboardClient``: httpx over ASGI, the operator's own bearer token) and
    renders the answer. So the access check (``cloud/api/access.py``: an operator sees only
    their networks, a rider gets 403), validation, the access log and every service rule are
    the API's; the console adds none. Its login page obtains the same token the dashboard API
    uses (``POST /v1/auth/login``) and keeps it in HttpOnly cookies, refreshed through
    ``POST /v1/auth/refresh`` when it expires.

Live updates
    One in-process fan-out per API process (``live.LiveFeed``) reads the outbox records
    written since it started (the event catalogue's payloads, scoped by
    ``events.networks_of``) and pushes them to every browser as server-sent events; the
    database is read by that one reader, however many browsers watch (none: it stops). A
    page is rendered with the outbox position its data reflects and its stream starts there
    (``since``, then ``Last-Event-ID``): nothing committed between the two is missed.

Browser assets: why npm
    htmx and Leaflet come from the npm registry, pinned in ``package-lock.json`` (with
    integrity hashes) and installed by ``make setup`` (``install-assets``: ``npm ci``) into
    ``node_modules/``, served locally under ``/console/assets/vendor``; nothing is loaded
    from a CDN at run time. PyPI has no maintained package that ships current htmx and
    Leaflet builds (the XStatic family has neither; ``django-leaflet`` drags Django in), and
    the ``fastapi-offline`` wheel used for ``/docs`` carries only Swagger UI and ReDoc. The
    npm registry is the assets' own upstream, so updating them is a lock-file change.

No tiles by default
    The base layer is the network's own geometry (border, zones, clusters); a deployment
    that has a tile server sets ``CONSOLE_TILE_URL`` (``cloud/config.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from kickstand.cloud import metrics
from kickstand.cloud.config import Settings

PREFIX = "/console"
HERE = Path(__file__).resolve().parent
VENDOR_DIR = HERE / "node_modules"
STATIC_DIR = HERE / "static"


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the console on ``app`` (its pages, assets and live feed)."""
    from kickstand.cloud.console import live
    from kickstand.cloud.console import pages as console_pages

    app.state.console_streams = live.StreamScopes()
    app.state.console_live = feed = live.LiveFeed(
        app.state.sessionmaker, poll_s=settings.CONSOLE_EVENTS_POLL_S
    )
    # One API process serves one app: its feed's counters at /metrics.
    metrics.register("console", "live", feed.stats)
    # The feed stops before the app's own shutdown disposes of the database engine.
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(the_app: FastAPI) -> AsyncIterator[Any]:
        async with inner(the_app) as state:
            try:
                yield state
            finally:
                await feed.close()

    app.router.lifespan_context = lifespan
    app.mount(f"{PREFIX}/assets/static", StaticFiles(directory=STATIC_DIR), name="console-static")
    # check_dir=False: a machine without the npm assets still serves the pages (the map
    # page says the assets are missing); ``make setup`` installs them.
    app.mount(
        f"{PREFIX}/assets/vendor",
        StaticFiles(directory=VENDOR_DIR, check_dir=False),
        name="console-vendor",
    )
    console_pages.install(app)


__all__ = ["PREFIX", "install"]
