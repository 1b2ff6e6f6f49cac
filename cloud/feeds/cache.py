"""An in-process cache of built feed documents, keyed by (network, feed, …), each kept
for its ``ttl``.

A thousand aggregator polls a minute must cost almost nothing: a document is built once
per ttl per process (one builder at a time per key: the others get the previous document
while it runs, or wait for the first one), its bytes and ETag are served to everyone until
it expires. When a rebuild gives the same
data, the old document (its ``last_updated`` and ETag) is kept, so a client's
``If-None-Match`` keeps answering 304 across rebuilds: ``last_updated`` is the last time
the data changed, as GBFS defines it.

Nothing is shared between processes; each API process builds its own copy (a database
read per feed per ttl per process).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: Keys kept at most (the base URL is part of some keys: a Host header cannot grow it).
MAX_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class Built:
    """A document as served: its bytes, ETag and when its data last changed."""

    body: bytes
    etag: str
    last_updated: datetime
    #: The data part's digest: a rebuild with the same digest keeps this document.
    digest: str
    expires_at: float

    def max_age(self, now: float) -> int:
        return max(0, int(self.expires_at - now))


def rfc3339(at: datetime) -> str:
    """GBFS v3.0's timestamps: RFC 3339 with an offset, whole seconds."""
    return at.astimezone(UTC).replace(microsecond=0).isoformat()


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _digest(value: Any) -> str:
    return hashlib.sha256(_dumps(value)).hexdigest()


def _tagged(document: Any) -> tuple[bytes, str]:
    body = _dumps(document)
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


#: Wraps the data of a build into the document served: (data, last_updated) -> document.
Wrap = Callable[[Any, datetime], Any]


class FeedCache:
    """``await cache.get(key, ttl_s, build, wrap)``: the document of ``key``, built by
    ``build()`` (the data) and ``wrap(data, last_updated)`` when missing or expired."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: OrderedDict[Hashable, Built] = OrderedDict()
        self._locks: dict[Hashable, asyncio.Lock] = {}
        #: Builds done, and those that found the data unchanged (metrics, tests).
        self.builds = 0
        self.unchanged = 0

    def now(self) -> float:
        return self._clock()

    async def get(
        self,
        key: Hashable,
        ttl_s: int,
        build: Callable[[], Awaitable[Any]],
        wrap: Wrap,
    ) -> Built:
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at > self._clock():
            return entry
        lock = self._locks.setdefault(key, asyncio.Lock())
        if entry is not None and lock.locked():
            # Being rebuilt: the previous document is served meanwhile, not a queue of
            # requests waiting on the builder (the build takes ~1 s for 10,000 vehicles).
            return entry
        async with lock:
            # Another request may have rebuilt it while this one waited.
            entry = self._entries.get(key)
            if entry is not None and entry.expires_at > self._clock():
                return entry
            data = await build()
            self.builds += 1
            # Serialising a 10,000-vehicle document takes ~50 ms: beside the event loop.
            digest = await asyncio.to_thread(_digest, data)
            expires_at = self._clock() + ttl_s
            if entry is not None and entry.digest == digest:
                self.unchanged += 1
                fresh = Built(entry.body, entry.etag, entry.last_updated, digest, expires_at)
            else:
                last_updated = datetime.now(UTC).replace(microsecond=0)
                body, etag = await asyncio.to_thread(_tagged, wrap(data, last_updated))
                fresh = Built(body, etag, last_updated, digest, expires_at)
            self._store(key, fresh)
            return fresh

    def _store(self, key: Hashable, built: Built) -> None:
        self._entries[key] = built
        self._entries.move_to_end(key)
        while len(self._entries) > MAX_ENTRIES:
            old, _ = self._entries.popitem(last=False)
            self._locks.pop(old, None)

    def clear(self) -> None:
        self._entries.clear()


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2: weak comparison against a list of tags, or ``*``."""
    if not if_none_match:
        return False
    opaque = etag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == opaque:
            return True
    return False


__all__ = ["MAX_ENTRIES", "Built", "FeedCache", "etag_matches", "rfc3339"]
