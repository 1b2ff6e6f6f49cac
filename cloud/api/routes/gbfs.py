"""GBFS v3.0 public feeds: ``/gbfs/v3/manifest.json`` and ``/gbfs/v3/<system_id>/<feed>.json``
(documents in ``kickstand.cloud.feeds.gbfs.service``; docs/feeds.md).

Public (no token) and readable from any web page (CORS for GET). Each document is built
once per ttl per process (``FeedCache``) and answered with ``ETag`` / ``Cache-Control``;
``If-None-Match`` with the current tag answers 304 without a body. Outside the OpenAPI
document: the success body is GBFS's, not our envelope (the official JSON Schemas
describe it); errors are our envelope.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response

from kickstand.cloud.api.deps import SessionmakerDep, SettingsDep
from kickstand.cloud.api.errors import not_found
from kickstand.cloud.feeds.cache import Built, FeedCache, etag_matches
from kickstand.cloud.feeds.gbfs import service

feed = APIRouter(prefix="/gbfs/v3", tags=["gbfs"], include_in_schema=False)
PREFIX = "gbfs/v3/"
MANIFEST_TTL_S = service.INFO_TTL_S

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "ETag, Last-Modified",
}


async def get_feed_cache(request: Request) -> FeedCache:
    """The process's cache of built documents (made on first use)."""
    cache: FeedCache | None = getattr(request.app.state, "feed_cache", None)
    if cache is None:
        cache = request.app.state.feed_cache = FeedCache()
    return cache


CacheDep = Annotated[FeedCache, Depends(get_feed_cache)]
IfNoneMatch = Annotated[str | None, Header(alias="If-None-Match")]


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
async def manifest(
    request: Request, maker: SessionmakerDep, cache: CacheDep, if_none_match: IfNoneMatch = None
) -> Response:
    root = f"{request.base_url}{PREFIX}"
    built = await cache.get(
        ("gbfs-manifest", root),
        MANIFEST_TTL_S,
        lambda: service.build_manifest(maker, lambda n: f"{root}{service.system_id(n)}/gbfs.json"),
        lambda data, at: service.document(data, at, MANIFEST_TTL_S),
    )
    return _answer(built, if_none_match, cache.now())


@feed.get("/{system_id}/{name}.json", summary="A GBFS v3.0 feed of one system")
async def system_feed(
    system_id: str,
    name: str,
    request: Request,
    maker: SessionmakerDep,
    settings: SettingsDep,
    cache: CacheDep,
    if_none_match: IfNoneMatch = None,
) -> Response:
    network_id = service.network_of_system(system_id)
    spec = service.FEEDS.get(name)
    if network_id is None or spec is None:
        raise not_found("GBFS feed", f"{system_id}/{name}.json")
    base = f"{request.base_url}{PREFIX}{system_id}/"
    secret = settings.JWT_SECRET or ""
    built = await cache.get(
        ("gbfs", network_id, name, base),
        spec.ttl_s,
        lambda: service.build(
            maker, network_id, spec, secret=secret, mail_from=settings.MAIL_FROM, base_url=base
        ),
        lambda data, at: service.document(data, at, spec.ttl_s),
    )
    return _answer(built, if_none_match, cache.now())


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
