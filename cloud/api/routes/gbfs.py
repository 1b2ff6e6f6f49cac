"""GBFS v3.0 public feeds: ``/gbfs/v3/manifest.json`` and ``/gbfs/v3/<system_id>/<feed>.json``
(documents in ``kickstand.cloud.feeds.gbfs.service``; docs/feeds.md).

Public (no token) and readable from any web page (CORS for GET). Each document is built
once per ttl per process (``FeedCache``) and answered with ``ETag`` / ``Cache-Control``;
``If-None-Match`` with the current tag answers 304 without a body. Outside the OpenAPI
document: the success body is GBFS's, not our envelope (the official JSON Schemas
describe it); errors are our envelope.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.api.errors import not_found
from kickstand.cloud.config import Settings
from kickstand.cloud.feeds.cache import Built, FeedCache, etag_matches
from kickstand.cloud.feeds.gbfs import service

feed = APIRouter(prefix="/gbfs/v3", tags=["gbfs"], include_in_schema=False)
PREFIX = "gbfs/v3/"
MANIFEST_TTL_S = service.INFO_TTL_S

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "ETag, Last-Modified",
}


def feed_cache(request: Request) -> FeedCache:
    """The process's cache of built documents (made on first use)."""
    cache: FeedCache | None = getattr(request.app.state, "feed_cache", None)
    if cache is None:
        cache = request.app.state.feed_cache = FeedCache()
    return cache


# The endpoints read what they need from the request itself rather than through FastAPI
# dependencies: a revalidation (304) is the common request and each dependency costs.


def _answer(built: Built, if_none_match: str | None, now: float) -> Response:
    headers = {
        **CORS,
        "ETag": built.etag,
        "Cache-Control": f"public, max-age={built.max_age(now)}",
        "Last-Modified": built.last_updated.strftime("%a, %d %b %Y %H:%M:%S GMT"),
    }
    if etag_matches(if_none_match, built.etag):
        return Response(status_code=304, headers=headers)
    return Response(built.body, media_type="application/json", headers=headers)


@feed.get("/manifest.json", summary="GBFS manifest: every system of this installation")
async def manifest(request: Request) -> Response:
    cache = feed_cache(request)
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    root = f"{request.base_url}{PREFIX}"
    built = await cache.get(
        ("gbfs-manifest", root),
        MANIFEST_TTL_S,
        lambda: service.build_manifest(maker, lambda n: f"{root}{service.system_id(n)}/gbfs.json"),
        lambda data, at: service.document(data, at, MANIFEST_TTL_S),
    )
    return _answer(built, request.headers.get("if-none-match"), cache.now())


@feed.get("/{system_id}/{name}.json", summary="A GBFS v3.0 feed of one system")
async def system_feed(system_id: str, name: str, request: Request) -> Response:
    network_id = service.network_of_system(system_id)
    spec = service.FEEDS.get(name)
    if network_id is None or spec is None:
        raise not_found("GBFS feed", f"{system_id}/{name}.json")
    cache = feed_cache(request)
    base = f"{request.base_url}{PREFIX}{system_id}/"
    built = await cache.get(
        ("gbfs", network_id, name, base),
        spec.ttl_s,
        lambda: _build(request, network_id, spec, base),
        lambda data, at: service.document(data, at, spec.ttl_s),
    )
    return _answer(built, request.headers.get("if-none-match"), cache.now())


async def _build(request: Request, network_id: int, spec: service.Feed, base: str) -> Any:
    settings: Settings = request.app.state.settings
    return await service.build(
        request.app.state.sessionmaker,
        network_id,
        spec,
        secret=settings.JWT_SECRET or "",
        mail_from=settings.MAIL_FROM,
        base_url=base,
    )


@feed.options("/{path:path}", summary="CORS preflight of the GBFS feeds")
async def preflight(path: str) -> Response:
    # A browser asks before sending If-None-Match (not a CORS-safelisted header).
    return Response(
        status_code=204,
        headers={
            **CORS,
            "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
            "Access-Control-Allow-Headers": "If-None-Match",
            "Access-Control-Max-Age": "86400",
        },
    )
