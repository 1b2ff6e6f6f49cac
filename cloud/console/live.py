"""The console's live feed: one reader of new outbox records per API process, fanned out to
every browser watching (server-sent events).

The outbox is where every change others must hear of is written, in the change's
transaction, as a typed event of the catalogue (``cloud/events``). The feed reads the rows
written after it started (``id > last``, on the primary key), at most every ``poll_s``,
and only while someone watches: a hundred browsers cost one query per interval, not a
hundred. Each subscriber gets the events of the networks it may see (``networks_of`` of
the event's definition, the webhooks' scoping); an installation-wide event (no network)
goes to unscoped operators only. A browser too slow to take its events is dropped (its
EventSource reconnects and the page reloads what it shows).

Ids are drawn when a row is inserted but become visible when its transaction commits, in
any order: row 41 may commit after row 42 was read. An id the reader skipped (a gap below
its cursor) is looked for again, in the same query (``id > last OR id IN (gaps)``), for
``GAP_S``; a row found there is delivered late (``LiveEvent.read_after``). A gap older than
that is a rolled-back insert (or a transaction open longer than any the API holds): dropped.
The webhooks do not need this: they read ``published_at IS NULL`` rows, which a late commit
still is.

A stream lasts at most ``CONSOLE_STREAM_MAX_S``: a server shutting down waits for open
responses, and an endless stream would hold it. The browser reconnects with the last id
it saw (``Last-Event-ID``) and gets what it missed from the feed's memory of recent events
(no database read); when that memory does not reach back far enough, a ``reload`` event
tells the page to read its state again.

No gap between a page and its stream: a page is rendered with the outbox position its data
reflects (:meth:`LiveFeed.position`, read before the data) and its stream starts there
(``since``, or ``Last-Event-ID`` on a reconnection). What the feed's memory does not hold of
that range (the feed started after the page was rendered, here or in another process) is read
once from the outbox for that stream, at most ``CATCH_UP`` ids back; further back, ``reload``.

Who watches is checked through the API (its one access check, which writes the access log)
once per stream, not once per reconnect: a page names its stream (``stream``, drawn when
the page is rendered) and :class:`StreamScopes` remembers, per access token and stream, the
networks the check answered, for ``SCOPE_REUSE_S``. An auditor reads one row when a page
starts watching (and one every ``SCOPE_REUSE_S`` while it goes on), not one every 10 s;
a revoked grant stops a stream within that time (sooner when its token changes).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.events import networks_of
from kickstand.cloud.models import OutboxEvent
from kickstand.cloud.outbox import jsonable
from kickstand.cloud.transient import is_transient

log = logging.getLogger("kickstand.cloud.console.live")

#: Rows read per query; a burst larger than this is read in several queries back to back.
BATCH = 500
#: Events a browser may fall behind by before it is dropped.
QUEUE_SIZE = 1000
#: Recent events kept for browsers that reconnect (``Last-Event-ID``).
RECENT = 5000
#: A stream starting this many outbox ids before the feed's memory is caught up from the
#: database (one query); further back, its page reloads.
CATCH_UP = 500
#: The reader goes on this long after the last browser left (they reconnect when their
#: stream ends), then stops.
LINGER_S = 30.0
#: How long a stream's access check stands for its reconnections (see the module's doc).
SCOPE_REUSE_S = 300.0
#: How long an outbox id skipped by the reader (its row not committed yet) is looked for.
GAP_S = 30.0
#: Skipped ids looked for at most (the newest are kept: a jump larger than this in the
#: sequence is a bulk rollback, not rows about to commit).
GAPS_KEPT = 2000
#: Streams remembered at most (the oldest are forgotten first: checked again).
STREAMS_KEPT = 10_000
#: Topics the console shows (the others stay in the outbox for webhooks); ``device.`` for a
#: station page's log of its mainboard's reports (the page's history has them too).
TOPIC_PREFIXES = (
    "station.", "dock.", "vehicule.", "fleet_alert.", "trip.", "boitier.", "device.",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class LiveEvent:
    id: int
    topic: str
    resource_type: str
    resource_id: str
    networks: frozenset[int]
    payload: dict[str, Any]
    #: For a row committed late (its id below ids already read): the feed's position when it
    #: was read. A browser that reconnects from that position or earlier gets it again.
    read_after: int | None = None

    def sse(self) -> str:
        data = json.dumps(
            {"id": self.id, "topic": self.topic, "resource_id": self.resource_id,
             "payload": jsonable(self.payload)},
            separators=(",", ":"),
        )  # fmt: skip
        # A late event does not move the browser's ``Last-Event-ID`` back (a reconnection
        # would replay everything after it): it stands at the position it was read at.
        position = self.id if self.read_after is None else self.read_after
        return f"id: {position}\nevent: kickstand\ndata: {data}\n\n"


@dataclass(eq=False)
class Subscriber:
    #: Networks the operator may see (None: every network).
    allowed: frozenset[int] | None
    #: The network the page shows (None: every allowed one).
    network_id: int | None
    queue: asyncio.Queue[LiveEvent | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE)
    )
    dropped: bool = False
    #: Events were missed (a reconnection the feed's memory does not cover): reload.
    gap: bool = False

    def wants(self, event: LiveEvent) -> bool:
        if self.network_id is not None and self.network_id not in event.networks:
            return False
        if self.allowed is None:
            return True
        return bool(event.networks) and event.networks <= self.allowed


@dataclass
class LiveStats:
    """Exported at /metrics (``kickstand_console_…``): ints are counters, floats gauges."""

    subscribers: float = 0.0
    queries: int = 0
    events_read: int = 0
    events_sent: int = 0
    subscribers_dropped: int = 0
    read_failures: int = 0
    #: Streams that started before the feed's memory: read once from the outbox.
    catch_ups: int = 0
    #: Rows read after rows with higher ids (committed late), delivered all the same.
    events_late: int = 0
    #: Skipped ids no row came for within ``GAP_S`` (rolled-back inserts).
    gaps_expired: int = 0


Scope = frozenset[int] | None


class StreamScopes:
    """Per (access token, stream): the networks the access check answered, and when."""

    def __init__(self, reuse_s: float = SCOPE_REUSE_S, clock: Any = time.monotonic) -> None:
        self.reuse_s = reuse_s
        self._clock = clock
        #: key -> (reusable until, on ``clock``; the scope)
        self._checked: dict[tuple[str, str], tuple[float, Scope]] = {}
        #: Checks spared (reconnections of a stream already checked).
        self.reused = 0

    @staticmethod
    def key(token: str, stream: str) -> tuple[str, str]:
        # The token itself is not kept in memory: its digest names it.
        return hashlib.sha256(token.encode()).hexdigest(), stream

    def get(self, key: tuple[str, str]) -> tuple[bool, Scope]:
        """(known, scope): known when checked within ``reuse_s``."""
        found = self._checked.get(key)
        if found is None or self._clock() > found[0]:
            return False, None
        self.reused += 1
        return True, found[1]

    def put(self, key: tuple[str, str], scope: Scope, token_left_s: float) -> None:
        """``token_left_s``: the checked token's life left (never reused past it)."""
        until = self._clock() + min(self.reuse_s, token_left_s)
        self._checked.pop(key, None)
        self._checked[key] = (until, scope)
        while len(self._checked) > STREAMS_KEPT:
            del self._checked[next(iter(self._checked))]


class LiveFeed:
    def __init__(self, maker: async_sessionmaker[AsyncSession], *, poll_s: float = 0.5) -> None:
        self._maker = maker
        self.poll_s = poll_s
        self.subscribers: set[Subscriber] = set()
        self.stats = LiveStats()
        self._task: asyncio.Task[None] | None = None
        self._last_id: int | None = None
        #: Ids below ``_last_id`` not read yet -> when first skipped (on ``time.monotonic``).
        self._gaps: dict[int, float] = {}
        self._recent: deque[LiveEvent] = deque(maxlen=RECENT)
        #: Events up to this id are not in memory (before the feed started, or forgotten).
        self._forgotten_up_to: int | None = None
        #: Set once the reader has its starting point (``_forgotten_up_to``).
        self._started = asyncio.Event()
        #: Streams catching up before they join ``subscribers``.
        self._joining = 0

    @contextlib.asynccontextmanager
    async def subscribe(
        self, allowed: frozenset[int] | None, network_id: int | None, after: int | None = None
    ) -> AsyncIterator[Subscriber]:
        """``after``: the last event id the browser saw, or the position its page was
        rendered at (what came after is delivered first)."""
        subscriber = Subscriber(allowed, network_id)
        if self._task is None or self._task.done():
            self._started = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="console-live-feed")
        # Held before waiting: the reader does not stop for want of watchers meanwhile.
        self._joining += 1
        try:
            if after is not None and await self._wait_started():
                await self._catch_up(subscriber, after)
            elif after is not None:
                subscriber.gap = True
            self.subscribers.add(subscriber)
        finally:
            self._joining -= 1
        self.stats.subscribers = float(len(self.subscribers))
        try:
            yield subscriber
        finally:
            self.subscribers.discard(subscriber)
            self.stats.subscribers = float(len(self.subscribers))

    async def position(self) -> int:
        """The outbox position now: a page whose data is read after this call reflects every
        event up to it, and its stream starts from it (``subscribe(after=…)``)."""
        return await self._newest()

    def checkpoint(self) -> str:
        """An SSE ``id`` line at the feed's read position, for a stream with nothing pending
        (every event up to it was sent): the browser's ``Last-Event-ID`` moves there, no event
        fires."""
        return "" if self._last_id is None else f"id: {self._last_id}\n"

    async def close(self) -> None:
        """Stop reading (the app is shutting down): open streams end."""
        for subscriber in list(self.subscribers):
            self._drop(subscriber)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def _wait_started(self) -> bool:
        """Wait for the reader's starting point; False when it failed before having one."""
        assert self._task is not None
        started = asyncio.create_task(self._started.wait())
        await asyncio.wait({started, self._task}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        return self._started.is_set()

    async def _catch_up(self, subscriber: Subscriber, after: int) -> None:
        """Queue what ``subscriber`` missed after ``after``: from the database for the ids
        before the feed's memory, then from the memory; ``gap`` when that cannot be done."""
        upto = self._forgotten_up_to
        assert upto is not None  # the reader has started
        missed: list[LiveEvent] = []
        if after < upto:
            if upto - after > CATCH_UP:
                subscriber.gap = True
                return
            try:
                missed = await self._read_range(after, upto)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self.stats.read_failures += 1
                subscriber.gap = True  # the page reads its state again
                return
            self.stats.catch_ups += 1
        # From here to the subscriber's joining, no await: nothing read meanwhile is lost.
        if self._forgotten_up_to != upto:  # the memory moved on while the database answered
            subscriber.gap = True
            return
        start = max(after, upto)
        queued: set[int] = set()
        for event in [*missed, *(e for e in self._recent if self._after(e, start))]:
            if event.id in queued:  # read late and also from the database
                continue
            queued.add(event.id)
            if subscriber.wants(event):
                if subscriber.queue.full():  # more missed than a browser may lag by
                    subscriber.gap = True
                    return
                subscriber.queue.put_nowait(event)

    @staticmethod
    def _after(event: LiveEvent, start: int) -> bool:
        """Whether a browser at ``start`` may not have had ``event``: a late one read once
        the feed was at or past ``start`` may be (a few events repeated on reconnection,
        none missed)."""
        return event.id > start or (event.read_after is not None and event.read_after >= start)

    async def _run(self) -> None:
        try:
            # After a while without browsers: start from now, not from a backlog.
            self._recent.clear()
            self._gaps.clear()
            self._last_id = self._forgotten_up_to = await self._newest()
            self._started.set()
            idle_since: float | None = None
            while True:
                if self.subscribers or self._joining:
                    idle_since = None
                elif idle_since is None:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > LINGER_S:
                    return
                read = await self._read_once()
                if read < BATCH:
                    await asyncio.sleep(self.poll_s)
        except Exception:
            log.exception("event=console_live_feed_failed")
            for subscriber in list(self.subscribers):
                self._drop(subscriber)
            raise

    async def _newest(self) -> int:
        async with self._maker() as session:
            newest = await session.scalar(select(func.max(OutboxEvent.id)))
            await session.commit()
        return int(newest or 0)

    @staticmethod
    def _rows(after: int, upto: int | None, gaps: list[int] | None = None) -> Any:
        newer = OutboxEvent.id > after
        stmt = select(
            OutboxEvent.id, OutboxEvent.topic, OutboxEvent.resource_type,
            OutboxEvent.resource_id, OutboxEvent.payload,
        ).where(or_(newer, OutboxEvent.id.in_(gaps)) if gaps else newer)  # fmt: skip
        if upto is not None:
            stmt = stmt.where(OutboxEvent.id <= upto)
        return stmt.order_by(OutboxEvent.id).limit(BATCH)

    @staticmethod
    def _event(row: Any, read_after: int | None = None) -> LiveEvent | None:
        """The console's event of an outbox row (None: a topic it does not show)."""
        if not row.topic.startswith(TOPIC_PREFIXES):
            return None
        payload = dict(row.payload or {})
        return LiveEvent(
            row.id, row.topic, row.resource_type, row.resource_id,
            networks_of(row.topic, payload), payload, read_after,
        )  # fmt: skip

    async def _read_range(self, after: int, upto: int) -> list[LiveEvent]:
        """The console's events with ids in (after, upto] (at most ``CATCH_UP`` ids)."""
        async with self._maker() as session:
            rows = (await session.execute(self._rows(after, upto))).all()
            await session.commit()
        return [event for event in map(self._event, rows) if event is not None]

    def _expire_gaps(self) -> None:
        too_old = time.monotonic() - GAP_S
        expired = [gap for gap, since in self._gaps.items() if since < too_old]
        for gap in expired:
            del self._gaps[gap]
        self.stats.gaps_expired += len(expired)

    def _skipped(self, after: int, upto: int) -> None:
        """Ids in (after, upto) were not read: look for them again (see the module's doc)."""
        now = time.monotonic()
        for gap in range(max(after + 1, upto - GAPS_KEPT), upto):
            self._gaps[gap] = now
        if len(self._gaps) > GAPS_KEPT:
            for gap in sorted(self._gaps)[: len(self._gaps) - GAPS_KEPT]:
                del self._gaps[gap]
                self.stats.gaps_expired += 1

    async def _read_once(self) -> int:
        assert self._last_id is not None
        self._expire_gaps()
        try:
            async with self._maker() as session:
                stmt = self._rows(self._last_id, None, sorted(self._gaps))
                rows = (await session.execute(stmt)).all()
                await session.commit()
        except Exception as exc:
            if not is_transient(exc):
                raise
            # The database restarting or failing over: the browsers wait, nothing is lost
            # (the next read starts after the last row delivered).
            self.stats.read_failures += 1
            log.warning("event=console_live_read_transient error=%s", type(exc).__name__)
            return 0
        self.stats.queries += 1
        for row in rows:
            read_after: int | None = None
            if row.id <= self._last_id:  # one of the gaps: committed late
                self._gaps.pop(row.id, None)
                read_after = self._last_id
            else:
                if row.id > self._last_id + 1:
                    self._skipped(self._last_id, row.id)
                self._last_id = row.id
            event = self._event(row, read_after)
            if event is None:
                continue
            self.stats.events_read += 1
            if read_after is not None:
                self.stats.events_late += 1
            if len(self._recent) == RECENT:
                assert self._forgotten_up_to is not None  # set when the reader started
                # The memory is in read order: a late event may be forgotten after later ids.
                self._forgotten_up_to = max(self._forgotten_up_to, self._recent[0].id)
            self._recent.append(event)
            self._fan_out(event)
        return len(rows)

    def _fan_out(self, event: LiveEvent) -> None:
        for subscriber in list(self.subscribers):
            if not subscriber.wants(event):
                continue
            try:
                subscriber.queue.put_nowait(event)
                self.stats.events_sent += 1
            except asyncio.QueueFull:
                self._drop(subscriber)

    def _drop(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        self.stats.subscribers = float(len(self.subscribers))
        subscriber.dropped = True
        self.stats.subscribers_dropped += 1
        # Make room for the end marker: the browser's stream closes and it reconnects.
        with contextlib.suppress(asyncio.QueueEmpty):
            subscriber.queue.get_nowait()
        subscriber.queue.put_nowait(None)
