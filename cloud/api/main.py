"""uvicorn entry point: ``uvicorn --factory kickstand.cloud.api.main:create_default_app``."""

from __future__ import annotations

import gc
import importlib
import logging

from fastapi import FastAPI

from kickstand.cloud.api import create_app
from kickstand.cloud.config import get_settings
from kickstand.cloud.rent_gateway import CommandGateway

log = logging.getLogger("kickstand.cloud.api.main")


def default_gateway() -> CommandGateway | None:
    """``kickstand.cloud.commands.gateway.create_gateway(settings)`` when that package has it."""
    try:
        module = importlib.import_module("kickstand.cloud.commands.gateway")
    except ImportError:
        log.warning("event=no_command_gateway: unlocks will fail as device-offline")
        return None
    factory = getattr(module, "create_gateway", None)
    if factory is None:
        log.warning("event=no_command_gateway_factory module=%s", module.__name__)
        return None
    gateway: CommandGateway = factory(get_settings())
    return gateway


def create_default_app() -> FastAPI:
    app = create_app(get_settings(), command_gateway=default_gateway())
    settle_heap()
    return app


def settle_heap() -> None:
    """Move what the process built so far (modules, routes, schemas: ~300k objects) out of
    the garbage collector's full passes: without it, one request in ~8 of the dashboard's
    big answers (1,000 clusters) paused ~200 ms in a full collection
    (benchmarks/dashboard_queries.py, overview/map p99 286 ms -> under 110 ms)."""
    gc.collect()
    gc.freeze()
