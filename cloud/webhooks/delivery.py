"""Webhook delivery: outbox → deliveries (fan-out) → signed HTTP POSTs with retries.

- Fan-out: unpublished outbox rows become one delivery per subscribed active endpoint,
  and are marked published, in one transaction (at least once, never twice). One
  fan-out at a time (a PostgreSQL advisory lock; SQLite serialises writers anyway), so
  delivery ids follow outbox order.
- Delivery: a worker claims due deliveries (``FOR UPDATE SKIP LOCKED`` on PostgreSQL),
  leases them, commits, then POSTs outside any transaction. Only the oldest pending
  delivery of an (endpoint, resource) pair is ever due: a later event of the same
  resource waits for the earlier one. A failure is retried on ``DeliveryPolicy.schedule_s``
  (10 s … 12 h, with jitter); after the last step the delivery is ``failed`` and can be
  replayed from the log. An endpoint that keeps failing is disabled, and a
  ``webhook_endpoint.disabled`` outbox event tells the operator.
- The outbox writers never wait for any of this: ingest only inserts outbox rows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import httpx
from sqlalchemy import ScalarResult, delete, exists, or_, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from kickstand.cloud import metrics, outbox
from kickstand.cloud.config import Settings
from kickstand.cloud.events import networks_of
from kickstand.cloud.events.payloads import EndpointEvent
from kickstand.cloud.models import OutboxEvent
from kickstand.cloud.webhooks import signing
from kickstand.cloud.webhooks.errors import TargetRefusedError
from kickstand.cloud.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from kickstand.cloud.webhooks.targets import TargetGuard
from kickstand.cloud.webhooks.topics import WEBHOOK_ENDPOINT_DISABLED, subscribed

log = logging.getLogger("kickstand.cloud.webhooks.delivery")

#: Envelope ids are derived from the outbox id: the same event has the same id everywhere.
EVENT_NAMESPACE = uuid.UUID("6d1f7f0e-3c55-4d8e-9a0e-4b7a1c0f5e21")
#: pg_try_advisory_xact_lock key of the fan-out ("KSWHFAN").
FANOUT_LOCK_KEY = 0x4B53574846414E
USER_AGENT = "Kickstand-Webhooks/1"
#: A worker that created this many deliveries since its last ANALYZE runs one (PostgreSQL).
ANALYZE_EVERY = 2000


def utcnow() -> datetime:
    return datetime.now(UTC)


def event_id_for(outbox_id: int) -> str:
    return str(uuid.uuid5(EVENT_NAMESPACE, f"outbox:{outbox_id}"))


@dataclass(frozen=True)
class DeliveryPolicy:
    #: Delay before retry n (n = 1 … len): 10 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h,
    #: 8 h, 12 h — about 28 hours in all; then the delivery is `failed`.
    schedule_s: tuple[float, ...] = (10, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 43200)
    #: ± fraction of random jitter on every delay (receivers recovering are not stampeded).
    jitter: float = 0.1
    #: How long a claimed delivery is held by its worker (longer than the HTTP timeout).
    lease_s: float = 60.0
    #: An endpoint is disabled after this many failed attempts in a row …
    disable_after_failures: int = 20
    #: … spanning at least this long (a short outage never disables it).
    disable_after_s: float = 24 * 3600
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    #: Requests in flight at once per worker (a slow receiver holds one slot, not the worker).
    concurrency: int = 32
    #: … of which one endpoint may hold at most this many (a slow one cannot take them all).
    per_endpoint_concurrency: int = 8
    batch_size: int = 100
    fanout_batch: int = 500
    poll_interval_s: float = 0.5
    #: Finished attempts wait at most this long to be recorded together.
    batch_window_s: float = 0.02
    #: Published outbox rows and finished deliveries (with their attempts) are deleted
    #: after these many days (None: kept), checked every ``prune_every_s``. The outbox's
    #: is the setting OUTBOX_RETENTION_DAYS (``for_settings``); a row with a delivery still
    #: pending is kept however old.
    outbox_retention_days: float | None = 30.0
    delivery_retention_days: float | None = 30.0
    prune_every_s: float = 3600.0
    #: Outbox rows deleted per transaction, and transactions per round: a round holds up
    #: claiming for a few batches only; a backlog (the first round on a city) continues
    #: one poll interval later.
    outbox_prune_batch: int = 5000
    outbox_prune_batches: int = 10
    #: Targets on loopback, private, link-local… addresses are refused unless this is set
    #: (development: ``for_settings``); see ``targets.py``.
    allow_internal_targets: bool = False

    @classmethod
    def for_settings(cls, settings: Settings, **overrides: Any) -> DeliveryPolicy:
        """The defaults, internal targets allowed in development only, the outbox's
        retention of the settings."""
        internal = settings.ENVIRONMENT == "development"
        return cls(
            **{
                "allow_internal_targets": internal,
                "outbox_retention_days": settings.OUTBOX_RETENTION_DAYS,
                **overrides,
            }
        )

    def delay_s(self, failed_attempts: int, rng: random.Random) -> float | None:
        """Delay before the next attempt after ``failed_attempts`` failures (None: give up)."""
        if failed_attempts < 1 or failed_attempts > len(self.schedule_s):
            return None
        base = self.schedule_s[failed_attempts - 1]
        return base * (1 + rng.uniform(-self.jitter, self.jitter))

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            self.read_timeout_s, connect=self.connect_timeout_s, pool=self.connect_timeout_s
        )


@dataclass(frozen=True)
class Job:
    """A claimed delivery, detached from the database while its POST is in flight."""

    delivery_id: int
    endpoint_id: int
    url: str
    secret: str
    livemode: bool
    event_id: str
    topic: str
    event_created: int
    data: dict[str, Any]


@dataclass
class AttemptResult:
    attempt_id: str
    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    response_excerpt: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def envelope(job: Job, attempt_id: str) -> dict[str, Any]:
    """Seed 004 envelope: id, attemptId, created, event, data, livemode."""
    return {
        "id": job.event_id,
        "attemptId": attempt_id,
        "created": job.event_created,
        "event": job.topic,
        "data": job.data,
        "livemode": job.livemode,
    }


def endpoint_payload(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """An endpoint as the API and the outbox show it (never the secret)."""
    return outbox.jsonable(
        {
            "id": endpoint.id,
            "url": endpoint.url,
            "description": endpoint.description,
            "topics": list(endpoint.topics or []),
            "network_ids": endpoint.network_ids,
            "livemode": endpoint.livemode,
            "is_active": endpoint.is_active,
            "disabled_at": endpoint.disabled_at,
            "disabled_reason": endpoint.disabled_reason,
            "consecutive_failures": endpoint.consecutive_failures,
            "failing_since": endpoint.failing_since,
            "last_success_at": endpoint.last_success_at,
            "last_failure_at": endpoint.last_failure_at,
            "created_at": endpoint.created_at,
        }
    )


def _wants(endpoint: WebhookEndpoint, row: OutboxEvent, networks: frozenset[int]) -> bool:
    """Subscribed, and (for a network-scoped endpoint) about one of its networks: the
    event's scope is its catalogue definition's (an event of no network reaches unscoped
    endpoints only)."""
    if not subscribed(endpoint.topics or [], row.topic):
        return False
    return endpoint.network_ids is None or not networks.isdisjoint(endpoint.network_ids)


async def fan_out(
    session: AsyncSession,
    *,
    limit: int = 500,
    now: datetime | None = None,
    stats: Counter[str] | None = None,
) -> int:
    """Turn unpublished outbox rows into deliveries; returns the rows handled.

    Runs in the caller's transaction (commit after). On PostgreSQL a second concurrent
    fan-out returns 0 at once instead of waiting. ``stats["deliveries"]`` counts the
    deliveries created.
    """
    now = now or utcnow()
    if session.get_bind().dialect.name == "postgresql":
        got = await session.scalar(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": FANOUT_LOCK_KEY}
        )
        if not got:
            return 0
    rows: list[OutboxEvent] = list(
        await session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.published_at.is_(None))
            .order_by(OutboxEvent.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if not rows:
        return 0
    endpoints: list[WebhookEndpoint] = list(
        await session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.is_active.is_(True))
            .order_by(WebhookEndpoint.id)
        )
    )
    for row in rows:
        created = int((row.created_at or now).timestamp())
        networks = networks_of(row.topic, row.payload or {})
        for endpoint in endpoints:
            if not _wants(endpoint, row, networks):
                continue
            if stats is not None:
                stats["deliveries"] += 1
            session.add(
                WebhookDelivery(
                    endpoint_id=endpoint.id,
                    outbox_id=row.id,
                    event_id=event_id_for(row.id),
                    topic=row.topic,
                    resource_key=f"{row.resource_type}:{row.resource_id}"[:100],
                    event_created=created,
                    data=row.payload,
                    status=DeliveryStatus.PENDING,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
        row.published_at = now
    await session.flush()
    return len(rows)


class WebhookWorker:
    """Fans out the outbox and delivers. Run several (processes or tasks) side by side.

    ``async with WebhookWorker(sessionmaker) as worker: await worker.run(stop_event)``;
    tests and benchmarks may drive it step by step with :meth:`run_once`.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        policy: DeliveryPolicy | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        fan_out: bool = True,
        guard: TargetGuard | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.policy = policy or DeliveryPolicy()
        self.guard = guard or TargetGuard(allow_internal=self.policy.allow_internal_targets)
        self.clock = clock
        self.rng = rng or random.Random()
        self.do_fan_out = fan_out
        self.counters: Counter[str] = Counter()
        #: A client given by the caller serves every endpoint (and is not closed here).
        self._client = client
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._open = False
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: Counter[int] = Counter()
        self._results: list[tuple[Job, AttemptResult]] = []
        self._results_since = 0.0
        self._analyzed_at = 0
        #: The last prune left old outbox rows for another round (a batch cap was hit).
        self.outbox_backlog = False
        self._metrics_name = f"webhooks-{os.getpid()}-{id(self):x}"

    async def __aenter__(self) -> WebhookWorker:
        self._open = True
        metrics.register("webhooks", self._metrics_name, self.counters)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        metrics.unregister("webhooks", self._metrics_name)
        await self._drain(self.policy.read_timeout_s)
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
        self._open = False

    def client_for(self, url: str) -> httpx.AsyncClient:
        """The HTTP client of the URL's origin: one small keep-alive pool per receiver
        (httpcore's pool bookkeeping grows with its size; a slow receiver gets its own)."""
        if self._client is not None:
            return self._client
        if not self._open:
            raise RuntimeError("use `async with WebhookWorker(...)` to open its HTTP clients")
        parts = httpx.URL(url)
        key = f"{parts.scheme}://{parts.host}:{parts.port}"
        client = self._clients.get(key)
        if client is None:
            size = self.policy.per_endpoint_concurrency
            client = httpx.AsyncClient(
                timeout=self.policy.timeout(),
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT},
            )
            self._clients[key] = client
        return client

    # ── steps ─────────────────────────────────────────────────────────────────────────

    async def fan_out(self) -> int:
        async with self.sessionmaker() as session, session.begin():
            n = await fan_out(
                session, limit=self.policy.fanout_batch, now=self.clock(), stats=self.counters
            )
            postgres = session.get_bind().dialect.name == "postgresql"
        self.counters["outbox_rows"] += n
        if postgres and self.counters["deliveries"] - self._analyzed_at >= ANALYZE_EVERY:
            # The delivery queue grows by bursts; the claim query's plan needs fresh
            # statistics long before autovacuum's next round (it is 5-10x slower without).
            self._analyzed_at = self.counters["deliveries"]
            async with self.sessionmaker() as session, session.begin():
                await session.execute(text("ANALYZE webhook_deliveries"))
        return n

    async def claim(self, limit: int, inflight: Counter[int] | None = None) -> list[Job]:
        """Lease up to ``limit`` due deliveries (the head of each endpoint/resource chain),
        at most ``policy.per_endpoint_concurrency`` per endpoint counting ``inflight``."""
        if limit <= 0:
            return []
        taken: Counter[int] = Counter(inflight or {})
        cap = self.policy.per_endpoint_concurrency
        saturated = [endpoint_id for endpoint_id, n in taken.items() if n >= cap]
        now = self.clock()
        d = WebhookDelivery
        earlier = aliased(WebhookDelivery)
        blocked = exists().where(
            earlier.endpoint_id == d.endpoint_id,
            earlier.resource_key == d.resource_key,
            earlier.id < d.id,
            earlier.status == DeliveryStatus.PENDING,
        )
        async with self.sessionmaker() as session, session.begin():
            rows = (
                await session.execute(
                    select(d, WebhookEndpoint)
                    .join(WebhookEndpoint, WebhookEndpoint.id == d.endpoint_id)
                    .where(
                        d.status == DeliveryStatus.PENDING,
                        d.next_attempt_at <= now,
                        or_(d.leased_until.is_(None), d.leased_until <= now),
                        WebhookEndpoint.is_active.is_(True),
                        WebhookEndpoint.id.not_in(saturated),
                        ~blocked,
                    )
                    .order_by(d.id)
                    .limit(limit * 4)
                    .with_for_update(of=d, skip_locked=True)
                )
            ).all()
            lease = now + timedelta(seconds=self.policy.lease_s)
            jobs: list[Job] = []
            for row in rows:
                delivery: WebhookDelivery = row[0]
                endpoint: WebhookEndpoint = row[1]
                if len(jobs) >= limit:
                    break
                if taken[endpoint.id] >= cap:
                    continue  # left unleased: due again at the next claim
                taken[endpoint.id] += 1
                delivery.leased_until = lease
                jobs.append(
                    Job(
                        delivery_id=delivery.id,
                        endpoint_id=endpoint.id,
                        url=endpoint.url,
                        secret=endpoint.secret,
                        livemode=endpoint.livemode,
                        event_id=delivery.event_id,
                        topic=delivery.topic,
                        event_created=delivery.event_created,
                        data=delivery.data,
                    )
                )
        return jobs

    async def post(self, job: Job) -> AttemptResult:
        """One signed POST of the envelope; never raises for the receiver's faults."""
        attempt_id = str(uuid.uuid4())
        body = json.dumps(envelope(job, attempt_id), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            signing.SIGNATURE_HEADER: signing.sign(job.secret, body),
            signing.EVENT_ID_HEADER: job.event_id,
            signing.ATTEMPT_ID_HEADER: attempt_id,
            signing.TOPIC_HEADER: job.topic,
        }
        started = self.clock()
        t0 = time.perf_counter()
        result = AttemptResult(attempt_id=attempt_id, started_at=started, duration_ms=0)
        try:
            # Resolved and checked now (DNS may have changed since registration), and the
            # connection goes to that very address; the name stays in Host and TLS.
            target = await self.guard.resolve(job.url)
        except TargetRefusedError as exc:
            self.counters["targets_refused"] += 1
            log.warning(
                "event=webhook_target_refused delivery_id=%s endpoint_id=%s host=%s reason=%r",
                job.delivery_id,
                job.endpoint_id,
                exc.host,
                exc.reason,
            )
            result.error = f"target refused: {exc.reason}"[:500]
            return result
        extensions: dict[str, Any] = {}
        if target.address is not None:
            headers["Host"] = httpx.URL(job.url).netloc.decode("ascii")
            extensions["sni_hostname"] = target.host
        try:
            response = await self.client_for(job.url).post(
                target.pinned_url(job.url), content=body, headers=headers, extensions=extensions
            )
            result.status_code = response.status_code
            result.response_excerpt = response.text[:500] or None
            if not result.succeeded:
                result.error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            result.error = f"{type(exc).__name__}: {exc}"[:500]
        result.duration_ms = int((time.perf_counter() - t0) * 1000)
        return result

    async def record(self, job: Job, result: AttemptResult) -> None:
        await self.record_many([(job, result)])

    async def record_many(self, outcomes: list[tuple[Job, AttemptResult]]) -> None:
        """Write attempts and their consequences (deliveries, endpoints) in one transaction.

        Rows are locked in id order (deliveries, then endpoints) so that workers recording
        at the same time never deadlock.
        """
        if not outcomes:
            return
        now = self.clock()
        outcomes = sorted(outcomes, key=lambda o: o[1].started_at)
        async with self.sessionmaker() as session, session.begin():
            delivery_ids = sorted({job.delivery_id for job, _ in outcomes})
            endpoint_ids = sorted({job.endpoint_id for job, _ in outcomes})
            found_deliveries: ScalarResult[WebhookDelivery] = await session.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.id.in_(delivery_ids))
                .order_by(WebhookDelivery.id)
                .with_for_update()
            )
            deliveries = {d.id: d for d in found_deliveries}
            found_endpoints: ScalarResult[WebhookEndpoint] = await session.scalars(
                select(WebhookEndpoint)
                .where(WebhookEndpoint.id.in_(endpoint_ids))
                .order_by(WebhookEndpoint.id)
                .with_for_update()
            )
            endpoints = {e.id: e for e in found_endpoints}
            for job, result in outcomes:
                delivery = deliveries.get(job.delivery_id)
                endpoint = endpoints.get(job.endpoint_id)
                if delivery is None or endpoint is None:
                    self.counters["vanished"] += 1  # endpoint deleted while in flight
                    continue
                self._apply(session, delivery, endpoint, result, now)

    def _apply(
        self,
        session: AsyncSession,
        delivery: WebhookDelivery,
        endpoint: WebhookEndpoint,
        result: AttemptResult,
        now: datetime,
    ) -> None:
        session.add(
            WebhookAttempt(
                delivery_id=delivery.id,
                attempt_id=result.attempt_id,
                started_at=result.started_at,
                duration_ms=result.duration_ms,
                status_code=result.status_code,
                succeeded=result.succeeded,
                error=result.error,
                response_excerpt=result.response_excerpt,
            )
        )
        delivery.attempts += 1
        delivery.last_attempt_at = result.started_at
        delivery.last_status_code = result.status_code
        delivery.last_error = result.error
        delivery.leased_until = None
        if result.succeeded:
            self.counters["delivered"] += 1
            delivery.status = DeliveryStatus.SUCCEEDED
            delivery.delivered_at = now
            endpoint.consecutive_failures = 0
            endpoint.failing_since = None
            endpoint.last_success_at = now
            return
        self.counters["failed_attempts"] += 1
        # Every attempt so far failed (a success ends the delivery).
        delay = self.policy.delay_s(delivery.attempts, self.rng)
        if delay is None:
            delivery.status = DeliveryStatus.FAILED
            self.counters["gave_up"] += 1
            log.warning(
                "event=webhook_delivery_failed delivery_id=%s endpoint_id=%s attempts=%s",
                delivery.id,
                endpoint.id,
                delivery.attempts,
            )
        else:
            delivery.next_attempt_at = now + timedelta(seconds=delay)
        endpoint.consecutive_failures += 1
        endpoint.last_failure_at = now
        if endpoint.failing_since is None:
            endpoint.failing_since = now
        if endpoint.is_active and self._should_disable(endpoint, now):
            endpoint.is_active = False
            endpoint.disabled_at = now
            endpoint.disabled_reason = (
                f"{endpoint.consecutive_failures} failed attempts in a row since "
                f"{endpoint.failing_since.isoformat()}; last: {result.error}"
            )[:300]
            self.counters["endpoints_disabled"] += 1
            log.warning(
                "event=webhook_endpoint_disabled endpoint_id=%s failures=%s",
                endpoint.id,
                endpoint.consecutive_failures,
            )
            payload = EndpointEvent.model_validate(endpoint_payload(endpoint))
            outbox.emit(session, WEBHOOK_ENDPOINT_DISABLED, endpoint.id, payload)

    def _should_disable(self, endpoint: WebhookEndpoint, now: datetime) -> bool:
        if endpoint.consecutive_failures < self.policy.disable_after_failures:
            return False
        since = endpoint.failing_since or now
        return (now - since).total_seconds() >= self.policy.disable_after_s

    async def attempt(self, job: Job) -> AttemptResult:
        result = await self.post(job)
        await self.record(job, result)
        return result

    async def deliver_due(self) -> int:
        """Claim one batch of due deliveries, POST them concurrently, record them at once."""
        jobs = await self.claim(min(self.policy.batch_size, self.policy.concurrency))
        if jobs:
            results = await asyncio.gather(*(self.post(job) for job in jobs))
            await self.record_many(list(zip(jobs, results, strict=True)))
        return len(jobs)

    async def prune(self) -> int:
        """Delete old published outbox rows (bounded batches, one transaction each; none
        with a delivery still pending) and old finished deliveries; returns rows deleted.
        ``outbox_backlog`` tells whether old outbox rows are left for the next round."""
        now = self.clock()
        removed = 0
        if self.policy.outbox_retention_days is not None:
            removed += await self._prune_outbox(
                now - timedelta(days=self.policy.outbox_retention_days)
            )
        if self.policy.delivery_retention_days is not None:
            async with self.sessionmaker() as session, session.begin():
                limit = now - timedelta(days=self.policy.delivery_retention_days)
                old = select(WebhookDelivery.id).where(
                    WebhookDelivery.status != DeliveryStatus.PENDING,
                    WebhookDelivery.created_at < limit,
                )
                await session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.replay_of_id.in_(old))
                    .values(replay_of_id=None)
                )
                await session.execute(
                    delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(old))
                )
                result = await session.execute(
                    delete(WebhookDelivery).where(WebhookDelivery.id.in_(old))
                )
                deliveries = int(getattr(result, "rowcount", 0) or 0)
            self.counters["deliveries_pruned"] += deliveries
            removed += deliveries
        if removed:
            log.info("event=webhook_pruned rows=%s", removed)
        return removed

    async def _prune_outbox(self, published_before: datetime) -> int:
        # What an endpoint still has to receive: unpublished rows (never pruned) and rows
        # with a pending delivery (the delivery carries its data, but the event stays in
        # the history until every endpoint settled it).
        in_flight = select(WebhookDelivery.outbox_id).where(
            WebhookDelivery.status == DeliveryStatus.PENDING
        )
        batch = self.policy.outbox_prune_batch
        pruned = batches = 0
        self.outbox_backlog = False
        for _ in range(self.policy.outbox_prune_batches):
            async with self.sessionmaker() as session, session.begin():
                n = await outbox.prune(
                    session, published_before=published_before, limit=batch, keep=in_flight
                )
            batches += 1
            pruned += n
            self.counters["outbox_pruned"] += n
            if n < batch:
                break
        else:
            self.outbox_backlog = True
        if pruned:
            log.info(
                "event=outbox_pruned rows=%s batches=%s published_before=%s backlog=%s",
                pruned,
                batches,
                published_before.isoformat(),
                self.outbox_backlog,
            )
        return pruned

    async def run_once(self) -> int:
        """One fan-out and one delivery batch; returns the deliveries attempted."""
        if self.do_fan_out:
            await self.fan_out()
        return await self.deliver_due()

    async def run_until_idle(self, *, max_rounds: int = 1000) -> int:
        """Fan out and deliver until nothing is due now (tests, benchmarks)."""
        total = 0
        for _ in range(max_rounds):
            n = await self.run_once()
            total += n
            if n == 0:
                break
        return total

    # ── the long-running loop ─────────────────────────────────────────────────────────

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Fan out and deliver until ``stop`` is set.

        POSTs run as tasks in ``policy.concurrency`` slots (at most
        ``policy.per_endpoint_concurrency`` per endpoint), so a slow receiver never holds
        up the others; finished attempts are recorded in batches, one transaction each.
        """
        stop = stop or asyncio.Event()
        backoff = self.policy.poll_interval_s
        loop = asyncio.get_running_loop()
        next_fan_out = loop.time()
        next_prune = loop.time() + min(60.0, self.policy.prune_every_s)
        log.info("event=webhook_worker_started concurrency=%s", self.policy.concurrency)
        # Batches: record finished attempts and claim new ones a few at a time (one
        # transaction each), not one by one as each POST ends.
        min_batch = max(1, min(self.policy.batch_size, self.policy.concurrency) // 4)
        window = self.policy.batch_window_s
        while not stop.is_set():
            claimed = 0
            free = 0
            try:
                loop_now = loop.time()
                if self._results and (
                    len(self._results) >= min_batch
                    or not self._tasks
                    or loop_now - self._results_since >= window
                ):
                    await self._flush_results()
                if self.do_fan_out and loop_now >= next_fan_out:
                    # Poll the outbox every poll interval, at once again after a full batch.
                    full = await self.fan_out() >= self.policy.fanout_batch
                    next_fan_out = loop_now if full else loop_now + self.policy.poll_interval_s
                if loop_now >= next_prune:
                    next_prune = loop_now + self.policy.prune_every_s
                    await self.prune()
                    if self.outbox_backlog:
                        next_prune = loop_now + self.policy.poll_interval_s
                free = self.policy.concurrency - sum(self._inflight.values())
                if free >= min_batch or (free > 0 and not self._tasks):
                    jobs = await self.claim(min(free, self.policy.batch_size), self._inflight)
                    for job in jobs:
                        claimed += 1
                        self._inflight[job.endpoint_id] += 1
                        task = asyncio.create_task(self._post_to_results(job))
                        self._tasks.add(task)
                        task.add_done_callback(self._task_done)
                backoff = self.policy.poll_interval_s
            except (SQLAlchemyError, OSError) as exc:
                self.counters["db_errors"] += 1
                log.warning("event=webhook_worker_db_error error=%r retry_in_s=%.1f", exc, backoff)
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            if claimed == 0 or claimed >= free:
                # Nothing more to start now: wait for a POST to end, the window, or a poll.
                self._wake.clear()
                waiters = [
                    asyncio.ensure_future(self._wake.wait()),
                    asyncio.ensure_future(stop.wait()),
                ]
                await asyncio.wait(
                    waiters,
                    timeout=window if self._results else self.policy.poll_interval_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for w in waiters:
                    w.cancel()
        await self._drain(self.policy.read_timeout_s)
        try:
            await self._flush_results()
        except (SQLAlchemyError, OSError) as exc:
            log.warning("event=webhook_results_not_recorded error=%r", exc)
        log.info("event=webhook_worker_stopped counters=%s", dict(self.counters))

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()

    async def _post_to_results(self, job: Job) -> None:
        result = await self.post(job)
        if not self._results:
            self._results_since = asyncio.get_running_loop().time()
        self._results.append((job, result))

    async def _flush_results(self) -> None:
        if not self._results:
            return
        batch, self._results = self._results, []
        try:
            await self.record_many(batch)
        except (SQLAlchemyError, OSError):
            # Not recorded: the leases expire and other attempts follow (at least once).
            self.counters["record_errors"] += len(batch)
            raise
        finally:
            for job, _ in batch:
                self._inflight[job.endpoint_id] -= 1
                if self._inflight[job.endpoint_id] <= 0:
                    del self._inflight[job.endpoint_id]

    async def _drain(self, wait_s: float) -> None:
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(set(self._tasks), timeout=wait_s)
        for task in pending:
            task.cancel()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


@dataclass
class WorkerHandle:
    """A worker running as a task (``start_worker``); ``await handle.stop()``."""

    worker: WebhookWorker
    task: asyncio.Task[None]
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)

    async def stop(self) -> None:
        self.stop_event.set()
        await self.task


async def start_worker(
    sessionmaker: async_sessionmaker[AsyncSession], policy: DeliveryPolicy | None = None
) -> WorkerHandle:
    """Start a delivery worker in the running loop (the embedded `make run` launcher)."""
    worker = WebhookWorker(sessionmaker, policy)
    await worker.__aenter__()
    stop_event = asyncio.Event()

    async def _run() -> None:
        try:
            await worker.run(stop_event)
        finally:
            await worker.__aexit__(None, None, None)

    task = asyncio.create_task(_run(), name="webhook-worker")
    return WorkerHandle(worker, task, stop_event)
