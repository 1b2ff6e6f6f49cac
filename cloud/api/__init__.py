"""The rider API (FastAPI). Build it with :func:`create_app`; nothing is built at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from functools import cache

from fastapi import APIRouter, FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.routing import BaseRoute

from kickstand.cloud.api import docs, errors, openapi
from kickstand.cloud.api.routes import (
    accounts,
    auth,
    badges,
    clusters,
    freefloat,
    geofencing,
    map,
    networks,
    rents,
    trips,
)
from kickstand.cloud.api.schemas import Envelope, HealthPublic
from kickstand.cloud.config import Settings, get_settings
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.rent_gateway import CommandGateway, UnavailableCommandGateway
from kickstand.cloud.webhooks.targets import TargetGuard

API_PREFIX = "/v1"


def create_app(
    settings: Settings | None = None,
    command_gateway: CommandGateway | None = None,
    *,
    engine: AsyncEngine | None = None,
) -> FastAPI:
    """The rider API.

    ``command_gateway``: what unlocks spots and vehicles (``kickstand.cloud.commands``);
    without one every unlock fails fast as "device offline". If it is an async context
    manager it is entered at startup and exited at shutdown. ``engine``: share an engine
    (else one is built from ``settings.DATABASE_URL`` and disposed at shutdown).
    """
    settings = settings or get_settings()
    own_engine = engine is None
    db_engine = engine if engine is not None else create_engine(settings)

    gateway = command_gateway or UnavailableCommandGateway()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            # A gateway that is an async context manager (MQTT session) lives as long as the app.
            if isinstance(gateway, AbstractAsyncContextManager):
                await stack.enter_async_context(gateway)
            # The dashboard's telemetry store: app.state.telemetry_store (deps.TelemetryDep).
            from kickstand.cloud.api.routes.telemetry import telemetry_lifespan

            await stack.enter_async_context(telemetry_lifespan(_app, settings))
            # Mails that failed after their request (SMTP down) are retried from here.
            from kickstand.cloud.accounts.mail import mail_relay

            await stack.enter_async_context(mail_relay(_app.state.sessionmaker, settings))
            # The device CA's CRL rewritten before its nextUpdate (issue 17; none: no CA).
            from kickstand.cloud.devices.identity import crl_keeper

            await stack.enter_async_context(crl_keeper(_app.state.sessionmaker, settings))
            try:
                yield
            finally:
                await _app.state.access_log.flush()
                await _app.state.api_request_log.flush()
                if own_engine:
                    await db_engine.dispose()

    app = FastAPI(
        title="Kickstand rider API",
        version="1",
        description='Envelope: `{"code": 0, "data": ...}`; errors carry a non-zero `code`, '
        "a `message` for people, a machine `reason` and, for validation, `errors[].field`.",
        lifespan=lifespan,
        # Served from local assets by docs.install (FastAPI's own pages load a CDN).
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = db_engine
    app.state.sessionmaker = create_sessionmaker(db_engine)
    app.state.command_gateway = gateway
    app.state.telemetry_store = None  # opened by the lifespan
    app.state.target_guard = TargetGuard(allow_internal=settings.ENVIRONMENT == "development")
    errors.install(app)
    openapi.install(app)
    docs.install(app, title=app.title)
    # The operator console: pages over this same API (kickstand.cloud.console).
    from kickstand.cloud import console

    console.install(app, settings)

    app.router.routes.extend(_api_routes())

    # Every operator request in the access log (seed 002 AccessLogs), written after it.
    # Authenticated rider requests too (seed 002 "Get user api requests").
    from kickstand.cloud.access.log import AccessLogMiddleware, AccessLogWriter
    from kickstand.cloud.accounts.models import ApiRequest

    app.state.access_log = AccessLogWriter(app.state.sessionmaker)
    app.state.api_request_log = AccessLogWriter(app.state.sessionmaker, ApiRequest)
    app.add_middleware(
        AccessLogMiddleware, writer=app.state.access_log, rider_writer=app.state.api_request_log
    )

    from kickstand.cloud.api import metrics as api_metrics

    api_metrics.install(app, settings.METRICS_TOKEN)

    @app.get("/health", tags=["health"], response_model=Envelope[HealthPublic], summary="Liveness")
    async def health() -> Envelope[HealthPublic]:
        return Envelope(data=HealthPublic(status="ok"))

    return app


@cache
def _api_routes() -> tuple[BaseRoute, ...]:
    """Every ``/v1`` route, built once per process and shared by every app it creates.

    Building ~260 routes (FastAPI analyses each endpoint's dependencies) takes about a second;
    a test process creates hundreds of apps. The routes hold nothing of an app: what a request
    needs comes from ``request.app.state``. So ``app.dependency_overrides`` does not reach
    them: a component a test replaces is a state attribute (``telemetry_store``,
    ``target_guard``, ``command_gateway``).
    """
    # Operator routers of other packages (imported here: they import this package's deps).
    from kickstand.cloud.alerts import api as fleet_alerts
    from kickstand.cloud.api.routes import (
        access_logs,
        cluster_admin,
        dead_letters,
        devices,
        error_codes,
        external_locks,
        firmware,
        maintenances,
        network_admin,
        organizational_units,
        organizations,
        overview,
        pricing_admin,
        reports,
        roles,
        spots,
        station_events,
        stations,
        stocks,
        telemetry,
        trip_admin,
        usage_stats,
        user_badges,
        users,
        vehicles,
    )
    from kickstand.cloud.webhooks import api as webhooks

    api = APIRouter(prefix=API_PREFIX)
    routers = (
        auth,
        accounts,
        networks,
        clusters,
        map,
        badges,
        rents,
        trips,
        fleet_alerts,
        webhooks,
        telemetry,
        external_locks,
        vehicles,
        dead_letters,
        spots,
        maintenances,
        trip_admin,
        reports,
        user_badges,
        access_logs,
        roles,
        organizational_units,
        organizations,
        users,
        network_admin,
        pricing_admin,
        error_codes,
        overview,
        usage_stats,
        devices,
        cluster_admin,
        stations,
        station_events,
        stocks,
        firmware,
    )
    for module in (*routers, freefloat, geofencing):
        api.include_router(module.router)
    # The public feeds sit beside /v1, at the paths their specifications use.
    from kickstand.cloud.api.routes import gbfs, mds

    api.include_router(mds.router)
    feeds = APIRouter()
    for feed in (gbfs, mds):
        feeds.include_router(feed.feed)
    return (*api.routes, *feeds.routes)


__all__ = ["API_PREFIX", "create_app"]
