"""An ingest worker: MQTT batches in, one database transaction per batch, replies out.

    worker = IngestWorker(mqtt_url, sessionmaker, telemetry=store, client_id="ingest-a-1")
    async with worker:          # connected and subscribed when this returns
        await worker.wait()     # or do other things; the worker runs in a task

Every payload is decoded with the v1 codec; a bad topic or payload is logged and
counted per reason (``worker.stats.rejected``) and acknowledged, never retried. The
PUBACK of a message is sent only after its batch is committed (at-least-once), the
dedupe in :mod:`kickstand.cloud.ingest.apply` makes the replays harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Self

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud import metrics
from kickstand.cloud.broker import MqttUrl
from kickstand.cloud.ingest.apply import (
    DEFAULT_DEATH_SLACK_MS,
    BatchApplier,
    BatchOutcome,
    Inbound,
    IngestStats,
    is_transient,
)
from kickstand.cloud.ingest.consumer import MqttConsumer, Received
from kickstand.cloud.telemetry.store import TelemetryStore
from kickstand.protocol import topics
from kickstand.protocol.errors import DecodeError, TopicError
from kickstand.protocol.topics import Direction
from kickstand.protocol.v1 import codec

if TYPE_CHECKING:
    from kickstand.cloud.alerts.engine import AlertEngine
    from kickstand.cloud.freefloat.hook import FreeFloatHook

log = logging.getLogger("kickstand.cloud.ingest.worker")

PLAIN_SUBSCRIPTION = f"{topics.ROOT}/d/+/+"
MAX_BACKOFF_S = 5.0
TOPIC_CACHE_MAX = 100_000


class IngestWorker:
    def __init__(
        self,
        mqtt_url: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        telemetry: TelemetryStore | None = None,
        client_id: str = "ingest-1",
        shared: bool = True,
        group: str = "ingest",
        clean_session: bool = False,
        batch_max: int = 1000,
        heartbeat_s: int = 30,
        death_slack_ms: int = DEFAULT_DEATH_SLACK_MS,
        retention: timedelta = timedelta(days=7),
        prune_every_s: float = 600.0,
        alerts: AlertEngine | None = None,
        sweep_alerts_every_s: float | None = None,
        freefloat: FreeFloatHook | None = None,
    ) -> None:
        """``shared=False`` subscribes the plain filter (embedded amqtt has no ``$share``):
        then run exactly one worker."""
        self.url = MqttUrl.parse(mqtt_url)
        self.topic = topics.ingest_subscription(group) if shared else PLAIN_SUBSCRIPTION
        self.client_id = client_id
        self.stats = IngestStats()
        self.telemetry = telemetry
        self.batch_max = batch_max
        self.retention = retention
        self.prune_every_s = prune_every_s
        self._consumer = MqttConsumer(
            self.url, client_id, self.topic, clean_session=clean_session
        )
        self._applier = BatchApplier(
            sessionmaker,
            self.stats,
            heartbeat_s=heartbeat_s,
            death_slack_ms=death_slack_ms,
            alerts=alerts,
            freefloat=freefloat,
            hold_connection=True,
        )
        self.sweep_alerts_every_s = sweep_alerts_every_s
        self._task: asyncio.Task[None] | None = None
        self._prune_task: asyncio.Task[None] | None = None
        self._busy = False
        self._decoding = False
        #: Parsed topics (a device uses a handful; parsing validates with a regex).
        self._topics: dict[str, topics.Topic] = {}
        self._stage: asyncio.Queue[tuple[list[Received], list[Inbound]]] | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        await self._consumer.start()
        metrics.register("ingest", self.client_id, self.stats)
        self._task = asyncio.create_task(self._run(), name=f"ingest:{self.client_id}")
        self._prune_task = asyncio.create_task(self._prune_loop(), name=f"prune:{self.client_id}")
        log.info(
            "event=ingest_worker_started client=%s topic=%s broker=%s",
            self.client_id,
            self.topic,
            self.url.safe(),
        )

    async def stop(self) -> None:
        """Stop now: a batch in flight is rolled back and left unacknowledged (redelivered)."""
        for task in (self._task, self._prune_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._prune_task = None
        await self._applier.release()
        await self._consumer.stop()
        metrics.unregister("ingest", self.client_id)
        log.info("event=ingest_worker_stopped client=%s stats=%s", self.client_id, self.stats)

    async def wait(self) -> None:
        if self._task is not None:
            await self._task

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def subscribed(self) -> bool:
        """Connected and subscribed now (after a broker restart: once re-subscribed)."""
        return self._consumer.subscribed

    @property
    def idle(self) -> bool:
        """Nothing received is waiting or being applied (for tests and benchmarks)."""
        return (
            not self._busy
            and not self._decoding
            and (self._stage is None or self._stage.empty())
            and self._consumer.backlog == 0
        )

    # -- the loop -----------------------------------------------------------------------

    async def _run(self) -> None:
        # Two stages: batch N+1 is decoded while batch N waits on the database.
        decoded: asyncio.Queue[tuple[list[Received], list[Inbound]]] = asyncio.Queue(maxsize=1)
        self._stage = decoded
        decoder = asyncio.create_task(self._decode_loop(decoded), name=f"decode:{self.client_id}")
        try:
            while True:
                items, batch = await decoded.get()
                self._busy = True
                try:
                    await self._handle(items, batch)
                finally:
                    self._busy = False
        finally:
            decoder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await decoder

    async def _decode_loop(
        self, out: asyncio.Queue[tuple[list[Received], list[Inbound]]]
    ) -> None:
        while True:
            items = await self._consumer.next_batch(self.batch_max)
            self._decoding = True
            try:
                batch: list[Inbound] = []
                for item in items:
                    self.stats.received += 1
                    inbound = self._decode(item)
                    if inbound is not None:
                        batch.append(inbound)
            finally:
                self._decoding = False
            await out.put((items, batch))

    async def _handle(self, items: list[Received], decoded: list[Inbound]) -> None:
        outcome = await self._apply(decoded)
        for reply in outcome.replies:
            self._consumer.publish(reply.topic, reply.payload, reply.qos)
        if outcome.points:
            self._write_points(outcome)
        for item in items:
            self._consumer.ack(item)
        self.stats.batches += 1

    def _decode(self, item: Received) -> Inbound | None:
        topic = self._topics.get(item.topic)
        if topic is None:
            try:
                topic = topics.parse(item.topic)
            except TopicError as exc:
                self.stats.reject("bad-topic", topic=item.topic, error=exc.reason)
                return None
            if len(self._topics) > TOPIC_CACHE_MAX:
                self._topics.clear()
            self._topics[item.topic] = topic
        if topic.direction is not Direction.UP:
            self.stats.reject("bad-topic", topic=item.topic, error="not a device topic")
            return None
        try:
            msg = codec.decode_up(topic.channel, item.payload)
        except DecodeError as exc:
            self.stats.reject(
                exc.code, device=topic.device_id, channel=topic.channel, error=exc.reason
            )
            return None
        return Inbound(topic.device_id, topic.channel, msg)

    async def _apply(self, batch: list[Inbound]) -> BatchOutcome:
        attempt = 0
        while True:
            try:
                return await self._applier.apply(batch)
            except Exception as exc:
                if is_transient(exc):
                    attempt += 1
                    self.stats.retries += 1
                    delay = min(0.02 * 2**attempt, MAX_BACKOFF_S)
                    log.warning(
                        "event=ingest_batch_retry client=%s attempt=%s delay_s=%.2f error=%r",
                        self.client_id,
                        attempt,
                        delay,
                        exc,
                    )
                    await asyncio.sleep(delay)
                    continue
                if len(batch) > 1:
                    # One bad message must not block the others: apply them one by one.
                    log.warning(
                        "event=ingest_batch_isolate client=%s size=%s error=%r",
                        self.client_id,
                        len(batch),
                        exc,
                    )
                    merged = BatchOutcome()
                    for one in batch:
                        part = await self._apply([one])
                        merged.replies.extend(part.replies)
                        merged.points.extend(part.points)
                    return merged
                first = batch[0] if batch else None
                self.stats.reject(
                    "apply-failed",
                    device=first.device_id if first else None,
                    channel=first.channel if first else None,
                    error=repr(exc),
                )
                log.exception("event=ingest_apply_failed client=%s", self.client_id)
                return BatchOutcome()

    def _write_points(self, outcome: BatchOutcome) -> None:
        if self.telemetry is None:
            self.stats.ignored["telemetry-no-store"] += len(outcome.points)
            return
        for point in outcome.points:
            try:
                self.telemetry.write(point)
            except Exception as exc:  # the store refuses a point: count it, go on
                self.stats.reject("telemetry-refused", error=repr(exc))

    async def _prune_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_prune = loop.time() + self.prune_every_s
        sweep_every = self.sweep_alerts_every_s
        next_sweep = loop.time() + sweep_every if sweep_every else float("inf")
        while True:
            await asyncio.sleep(max(0.0, min(next_prune, next_sweep) - loop.time()))
            now = loop.time()
            try:
                if now >= next_prune:
                    next_prune = now + self.prune_every_s
                    removed = await self._applier.prune(self.retention)
                    if removed:
                        log.info("event=ingest_pruned client=%s rows=%s", self.client_id, removed)
                if sweep_every and now >= next_sweep:
                    next_sweep = now + sweep_every
                    await self._applier.sweep()
            except Exception as exc:  # housekeeping: retried next time
                log.warning("event=ingest_housekeeping_failed client=%s error=%r",
                            self.client_id, exc)
