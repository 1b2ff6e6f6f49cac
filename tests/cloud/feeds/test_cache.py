"""The feed cache alone: one build per ttl, the previous document while a rebuild runs,
an unchanged rebuild keeps the document, ETag comparison."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from kickstand.cloud.feeds.cache import FeedCache, etag_matches


def wrap(data: Any, at: datetime) -> Any:
    return {"last_updated": at.isoformat(), "data": data}


async def test_one_build_per_ttl_and_the_previous_document_during_a_rebuild() -> None:
    clock = [0.0]
    cache = FeedCache(clock=lambda: clock[0])
    data = {"n": 1}
    release = asyncio.Event()
    builds = 0

    async def build() -> Any:
        nonlocal builds
        builds += 1
        if builds > 1:
            await release.wait()
        return dict(data)

    first = await asyncio.gather(*(cache.get("k", 10, build, wrap) for _ in range(20)))
    assert builds == 1 and len({b.etag for b in first}) == 1

    clock[0] = 11.0
    data["n"] = 2
    rebuilding = asyncio.create_task(cache.get("k", 10, build, wrap))
    await asyncio.sleep(0)
    meanwhile = await cache.get("k", 10, build, wrap)
    assert meanwhile is first[0]  # served at once, not queued behind the builder
    release.set()
    fresh = await rebuilding
    assert builds == 2 and fresh.etag != first[0].etag and b'"n":2' in fresh.body
    assert (await cache.get("k", 10, build, wrap)) is fresh

    clock[0] = 30.0
    kept = await cache.get("k", 10, build, wrap)
    assert builds == 3 and cache.unchanged == 1
    assert kept.etag == fresh.etag and kept.body == fresh.body and kept.expires_at == 40.0


def test_etag_comparison_is_weak_and_takes_lists() -> None:
    tag = '"abc"'
    assert etag_matches('"abc"', tag)
    assert etag_matches('W/"abc"', tag)
    assert etag_matches('"x", "abc"', tag)
    assert etag_matches("*", tag)
    assert not etag_matches('"abcd"', tag)
    assert not etag_matches(None, tag)
    assert not etag_matches("", tag)
