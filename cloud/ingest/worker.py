"""An ingest worker: MQTT batches in, one database transaction per batch, replies out.

    worker = IngestWorker(mqtt_url, sessionmaker, telemetry=store, client_id="ingest-a-1")
    async with worker:          # connected and subscribed when this returns
        await worker.wait()     # or do other things; the worker runs in a task

Every payload is decoded with the v1 codec; a bad topic or payload is counted per reason
(``worker.stats.rejected``, log lines rate-limited), stored as a dead letter
(:mod:`kickstand.cloud.ingest.deadletters`) and acknowledged, never retried.

Failures: a batch that fails on a transient database error (by SQLSTATE:
:func:`~kickstand.cloud.transient.is_transient`) is retried with a capped back-off,
for as long as it takes, and nothing of it is acknowledged meanwhile; one that fails for
good is applied again message by message, and a message that still fails is a dead letter.
The PUBACK of a message is sent only after its fate is committed (at-least-once), the
dedupe in :mod:`kickstand.cloud.ingest.apply` makes the replays harmless. Then each device
that asked for them (Birth ``acks``) gets one Ack for the batch's sequenced messages
(SPEC §4.6): only then may it forget them.

Sessions: a worker connects with a clean session (``clean_session=True``, the default)
and holds nothing durable on the shared subscription. A persistent session would keep
the worker's round-robin share of the devices' messages queued at the broker while it is
down — for ever if it never returns (a crash, a scale-down, a new container hostname) —
and a broker loses such a queue when it crashes anyway. With a clean session a worker
that goes away loses only what it held unacknowledged, and the devices publish that
again after their ack timeout to the workers that remain (SPEC §4.6). Devices without
Acks (older firmware) lose what a dying worker held: the price of not stranding others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Self

import cbor2
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud import metrics
from kickstand.cloud.broker import MqttUrl
from kickstand.cloud.ingest.apply import DEFAULT_DEATH_SLACK_MS, BatchApplier
from kickstand.cloud.ingest.batch import BatchOutcome, Inbound, IngestStats
from kickstand.cloud.ingest.consumer import MqttConsumer, Received
from kickstand.cloud.ingest.deadletters import DeadLetterBudget, DeadLetterReason, Letter
from kickstand.cloud.telemetry.store import TelemetryStore
from kickstand.cloud.transient import is_transient
from kickstand.protocol import topics
from kickstand.protocol.errors import DecodeError, EncodeError, TopicError
from kickstand.protocol.topics import Channel, Direction
from kickstand.protocol.v1 import codec

if TYPE_CHECKING:
    from kickstand.cloud.alerts.engine import AlertEngine
    from kickstand.cloud.commands.issuer import CommandIssuer
    from kickstand.cloud.devices.identity import DeviceCa
    from kickstand.cloud.freefloat.hook import FreeFloatHook

log = logging.getLogger("kickstand.cloud.ingest.worker")

PLAIN_SUBSCRIPTION = f"{topics.ROOT}/d/+/+"
MAX_BACKOFF_S = 5.0
TOPIC_CACHE_MAX = 100_000


#: Undecodable payloads up to this size are looked into for their boot_id and seq.
READABLE_STAMP_MAX = 1024


def _readable_stamp(payload: bytes) -> tuple[int | None, int | None]:
    """``[boot_id, seq, …]`` of a payload the codec refused, when it is that readable: the
    dead letter then names the message, and a device taking Acks is Acked for it (else it
    would publish it again for ever)."""
    if len(payload) > READABLE_STAMP_MAX:
        return None, None
    try:
        wire = cbor2.loads(payload)
    except Exception:  # not CBOR at all
        return None, None
    if isinstance(wire, list) and len(wire) >= 2:
        boot_id, seq = wire[0], wire[1]
        if type(boot_id) is int and type(seq) is int and boot_id > 0 and seq > 0:
            return boot_id, seq
    return None, None


class AckBatcher:
    """Merges a device's Acks over ``delay_s`` (SPEC §4.6: "batched and cheap").

    Every Ack costs a device about 40 bytes of MQTT; a riding vehicle sends a position
    every 5 s, each alone in its batch, so one Ack per batch would add a third to a
    vehicle's daily data budget. Keys wait here from their commit until the device's
    oldest waiting key is ``delay_s`` old (well inside the device's ``ack_timeout_s``,
    30 s), or until ``flush_keys`` wait for one device (a backlog drains at full speed:
    the device's publish window is freed by PUBACKs, not Acks). What waits here is
    committed: lost in a crash it only means a resend, which the dedupe answers with an
    Ack. ``delay_s`` 0 sends at once."""

    def __init__(
        self,
        publish: Callable[[str, list[tuple[int, int]]], None],
        delay_s: float,
        *,
        flush_keys: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._publish = publish
        self.delay_s = max(0.0, delay_s)
        self.flush_keys = flush_keys
        self._clock = clock
        #: device -> (when its oldest waiting key was committed, the keys)
        self._waiting: dict[str, tuple[float, list[tuple[int, int]]]] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, device_id: str, boot_id: int, seq: int) -> None:
        entry = self._waiting.get(device_id)
        if entry is None:
            entry = self._waiting[device_id] = (self._clock(), [])
        entry[1].append((boot_id, seq))

    def flush_due(self) -> None:
        """Publish the Acks that are due (all of them when there is no delay)."""
        if not self._waiting:
            return
        now = self._clock()
        for device_id, (since, keys) in list(self._waiting.items()):
            if now - since >= self.delay_s or len(keys) >= self.flush_keys:
                del self._waiting[device_id]
                self._publish(device_id, keys)

    def flush_all(self) -> None:
        waiting, self._waiting = self._waiting, {}
        for device_id, (_since, keys) in waiting.items():
            self._publish(device_id, keys)

    @property
    def waiting(self) -> int:
        """Keys committed and not yet acknowledged to their device."""
        return sum(len(keys) for _since, keys in self._waiting.values())

    def start(self) -> None:
        if self.delay_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._tick(), name="ack-batcher")

    async def _tick(self) -> None:
        step = min(1.0, self.delay_s / 4)
        while True:
            await asyncio.sleep(step)
            try:
                self.flush_due()
            except Exception as exc:  # a publish that fails must not end the batcher
                log.warning("event=ack_flush_failed error=%r", exc)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.flush_all()


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
        clean_session: bool = True,
        batch_max: int = 1000,
        heartbeat_s: int = 30,
        death_slack_ms: int = DEFAULT_DEATH_SLACK_MS,
        retention: timedelta = timedelta(days=7),
        prune_every_s: float = 600.0,
        alerts: AlertEngine | None = None,
        sweep_alerts_every_s: float | None = None,
        freefloat: FreeFloatHook | None = None,
        dead_letters_per_hour: int = 100,
        ack_delay_s: float = 0.0,
        issuer: CommandIssuer | None = None,
        clock_ms: Callable[[], int] | None = None,
        device_ca: DeviceCa | None = None,
    ) -> None:
        """``shared=False`` subscribes the plain filter (embedded amqtt has no ``$share``):
        then run exactly one worker. ``clean_session=False`` only for a single worker that
        must find what was queued while it was down (a benchmark's method).
        ``dead_letters_per_hour``: stored per device and reason (the rest counted).
        ``ack_delay_s``: a device's Acks wait up to this long to be merged into one (0: one
        per batch at once); see :class:`AckBatcher`."""
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
            require_boot=True,
            budget=DeadLetterBudget(dead_letters_per_hour),
            issuer=issuer,
            device_ca=device_ca,
        )
        if clock_ms is not None:  # a test's cloud clock, set apart from the real one
            self._applier.clock_ms = clock_ms
        self.sweep_alerts_every_s = sweep_alerts_every_s
        self._acks = AckBatcher(self._publish_acks, ack_delay_s)
        self._task: asyncio.Task[None] | None = None
        self._prune_task: asyncio.Task[None] | None = None
        self._busy = False
        self._decoding = False
        #: Parsed topics (a device uses a handful; parsing validates with a regex).
        self._topics: dict[str, topics.Topic] = {}
        self._stage: asyncio.Queue[tuple[list[Received], list[Inbound], list[Letter]]] | None = (
            None
        )

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        await self._consumer.start()
        metrics.register("ingest", self.client_id, self.stats)
        self._task = asyncio.create_task(self._run(), name=f"ingest:{self.client_id}")
        self._prune_task = asyncio.create_task(self._prune_loop(), name=f"prune:{self.client_id}")
        self._acks.start()
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
        await self._acks.close()  # what was committed is acknowledged before we leave
        # A database that does not answer must not hold the stop (the connection is gone).
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._applier.release(), 5.0)
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
        decoded: asyncio.Queue[tuple[list[Received], list[Inbound], list[Letter]]] = (
            asyncio.Queue(maxsize=1)
        )
        self._stage = decoded
        decoder = asyncio.create_task(self._decode_loop(decoded), name=f"decode:{self.client_id}")
        try:
            while True:
                items, batch, letters = await decoded.get()
                self._busy = True
                try:
                    await self._handle(items, batch, letters)
                finally:
                    self._busy = False
        finally:
            decoder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await decoder

    async def _decode_loop(
        self, out: asyncio.Queue[tuple[list[Received], list[Inbound], list[Letter]]]
    ) -> None:
        while True:
            items = await self._consumer.next_batch(self.batch_max)
            self._decoding = True
            try:
                batch: list[Inbound] = []
                letters: list[Letter] = []
                for item in items:
                    self.stats.received += 1
                    inbound = self._decode(item, letters)
                    if inbound is not None:
                        batch.append(inbound)
            finally:
                self._decoding = False
            await out.put((items, batch, letters))

    async def _handle(
        self, items: list[Received], decoded: list[Inbound], letters: list[Letter]
    ) -> None:
        outcome = await self._apply(decoded)
        if letters:
            outcome.merge(
                await self._retrying(lambda: self._applier.store_letters(letters), always=True)
            )
        # Committed: now the replies, the Acks and the PUBACKs.
        for reply in outcome.replies:
            self._consumer.publish(reply.topic, reply.payload, reply.qos)
        self._send_acks(outcome.settled)
        if outcome.points:
            self._write_points(outcome)
        for item in items:
            self._consumer.ack(item)
        self.stats.batches += 1
        if items:
            now_ms = time.time_ns() // 1_000_000
            self.stats.lag_s = max(0.0, (now_ms - items[-1].received_ms) / 1000)
            self.stats.oldest_s = max(0.0, (now_ms - items[0].received_ms) / 1000)

    def _send_acks(self, settled: list[tuple[str, int, int]]) -> None:
        for device_id, boot_id, seq in settled:
            self._acks.add(device_id, boot_id, seq)
        self._acks.flush_due()

    def _publish_acks(self, device_id: str, device_keys: list[tuple[int, int]]) -> None:
        """One Ack for the device's keys (more only past MAX_ACK_RANGES ranges)."""
        topic = topics.down(device_id, Channel.ACK)
        try:
            payloads = [codec.encode_down(ack) for ack in codec.acks_for(device_keys)]
        except EncodeError as exc:  # a stamp beyond the wire's range: nothing to Ack
            self.stats.reject("ack-unencodable", device=device_id, error=exc.reason)
            return
        for payload in payloads:
            self._consumer.publish(topic, payload, 0)
            self.stats.acks_sent += 1

    def _decode(self, item: Received, letters: list[Letter] | None = None) -> Inbound | None:
        """The message of ``item``, or None: counted as rejected and, with ``letters``, a
        dead letter appended to it."""
        topic = self._topics.get(item.topic)
        if topic is None:
            try:
                topic = topics.parse(item.topic)
            except TopicError as exc:
                self._rejected(item, DeadLetterReason.BAD_TOPIC, exc.reason, None, letters)
                return None
            if len(self._topics) > TOPIC_CACHE_MAX:
                self._topics.clear()
            self._topics[item.topic] = topic
        if topic.direction is not Direction.UP:
            self._rejected(
                item, DeadLetterReason.BAD_TOPIC, "not a device topic", topic, letters
            )
            return None
        try:
            msg = codec.decode_up(topic.channel, item.payload)
        except DecodeError as exc:
            self._rejected(item, exc.code, exc.reason, topic, letters)
            return None
        return Inbound(
            topic.device_id,
            topic.channel,
            msg,
            raw=item.payload,
            topic=item.topic,
            received_ms=item.received_ms,
        )

    def _rejected(
        self,
        item: Received,
        reason: str,
        error: str,
        topic: topics.Topic | None,
        letters: list[Letter] | None,
    ) -> None:
        device = topic.device_id if topic is not None else None
        channel = topic.channel.value if topic is not None else None
        self.stats.reject(reason, device=device, channel=channel, topic=item.topic, error=error)
        if letters is not None:
            boot_id, seq = _readable_stamp(item.payload) if topic is not None else (None, None)
            letters.append(
                Letter(
                    topic=item.topic,
                    payload=item.payload,
                    reason=reason,
                    error_class=reason,
                    error=error,
                    device_id=device,
                    channel=channel,
                    boot_id=boot_id,
                    seq=seq,
                )
            )

    async def _retrying(
        self, work: Callable[[], Awaitable[BatchOutcome]], *, always: bool = False
    ) -> BatchOutcome:
        """``work`` until it does not fail on a transient error (capped back-off).
        ``always``: on any error — the dead-letter store is the last resort: what it cannot
        keep yet is neither dropped nor acknowledged, and the worker lives on."""
        attempt = 0
        while True:
            try:
                return await work()
            except Exception as exc:
                if not always and not is_transient(exc):
                    raise
                attempt += 1
                self.stats.retries += 1
                delay = min(0.02 * 2**attempt, MAX_BACKOFF_S)
                self.stats.log_limited(
                    "ingest_batch_retry",
                    type(exc).__name__,
                    client=self.client_id,
                    attempt=attempt,
                    delay_s=f"{delay:.2f}",
                    error=exc,
                )
                await asyncio.sleep(delay)

    async def _apply(self, batch: list[Inbound]) -> BatchOutcome:
        try:
            return await self._retrying(lambda: self._applier.apply(batch))
        except Exception as exc:
            if len(batch) > 1:
                # One bad message must not block the others: apply them one by one.
                self.stats.log_limited(
                    "ingest_batch_isolate",
                    type(exc).__name__,
                    client=self.client_id,
                    size=len(batch),
                    error=exc,
                )
                merged = BatchOutcome()
                for one in batch:
                    merged.merge(await self._apply([one]))
                return merged
            if not batch:
                return BatchOutcome()
            one = batch[0]
            self.stats.reject(
                "apply-failed", device=one.device_id, channel=one.channel, error=exc
            )
            log.debug("event=ingest_apply_failed client=%s", self.client_id, exc_info=True)
            letter = one.letter(DeadLetterReason.APPLY_FAILED, exc)
            return await self._retrying(
                lambda: self._applier.store_letters([letter]), always=True
            )

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
                    # Stations whose authorization list fell behind get a FULL.
                    for reply in await self._applier.catch_up_lists():
                        self._consumer.publish(reply.topic, reply.payload, reply.qos)
            except Exception as exc:  # housekeeping: retried next time
                log.warning("event=ingest_housekeeping_failed client=%s error=%r",
                            self.client_id, exc)
