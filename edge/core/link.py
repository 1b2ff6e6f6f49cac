"""The device's MQTT session with the cloud (protocol v1), shared by all agents.

    queue = DiskQueue(state_dir / "queue.db")
    router = CommandRouter()

    @router.on(Unlock)
    async def unlock(envelope: CommandEnvelope, command: Unlock) -> Outcome | None: ...

    link = CloudLink(LinkConfig(device_id="st-0001", host="127.0.0.1", port=1883),
                     queue=queue, birth=make_birth, verifier=verifier, router=router)
    await link.run()          # forever: connect, birth, gate, drain, heartbeat, reconnect

One connection at a time (aiomqtt 2.x, ``async with``), client id = device id, the
Will is a Death stamped with seq 0. On every (re)connect: subscribe to the device's
command tree, publish the birth, wait for the BootReply of *this* boot id
(ACCEPTED / PENDING → retry after ``retry_after_s`` / REJECTED → retry slowly,
publish nothing else). Once accepted: drain the DiskQueue in order at QoS 1,
deleting each message only on its PUBACK; heartbeats every ``heartbeat_s``
(TimeReply adjusts the DeviceClock). A broker that is down for days only means
more reconnect attempts with back-off (capped); the queue keeps everything.

Commands: verified with CommandVerifier, then routed by type to the handler
registered with ``@router.on(CommandClass)``; every outcome (refusal included)
is answered with a CommandResult through the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiomqtt

from kickstand.edge.core.clock import DeviceClock
from kickstand.edge.core.errors import CommandFailed, CommandRefused, QueueError
from kickstand.edge.core.queue import DiskQueue
from kickstand.protocol import topics
from kickstand.protocol.errors import CommandRejected, ProtocolError
from kickstand.protocol.signing import CommandVerifier
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1.enums import BootStatus, RejectReason, ResultStatus
from kickstand.protocol.v1.messages import (
    Birth,
    BootReply,
    CommandBody,
    CommandEnvelope,
    CommandResult,
    Death,
    Heartbeat,
    Stamp,
    TimeReply,
    UpBody,
)

log = logging.getLogger("kickstand.edge.core.link")
# aiomqtt warns at every publish beyond 10 in flight: normal while draining a batch.
_mqtt_log = logging.getLogger("kickstand.edge.core.link.mqtt")
_mqtt_log.setLevel(logging.ERROR)

NO_COMMAND_ID = bytes(16)  # answer to a command whose id could not even be read

C = TypeVar("C")


# ------------------------------------------------------------------ commands


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a handler returns: DONE by default; ACCEPTED when a later result follows."""

    status: ResultStatus = ResultStatus.DONE
    reason: RejectReason | None = None
    detail: str | None = None


Handler = Callable[[CommandEnvelope, Any], Awaitable["Outcome | None"]]


class CommandRouter:
    """Handlers registered per command class; unknown commands → NOT_SUPPORTED."""

    def __init__(self) -> None:
        self._handlers: dict[type, Handler] = {}

    def on(
        self, command_type: type[C]
    ) -> Callable[
        [Callable[[CommandEnvelope, C], Awaitable[Outcome | None]]],
        Callable[[CommandEnvelope, C], Awaitable[Outcome | None]],
    ]:
        def register(
            fn: Callable[[CommandEnvelope, C], Awaitable[Outcome | None]],
        ) -> Callable[[CommandEnvelope, C], Awaitable[Outcome | None]]:
            self._handlers[command_type] = fn
            return fn

        return register

    def add(self, command_type: type, handler: Handler) -> None:
        self._handlers[command_type] = handler

    def supports(self, command: CommandBody) -> bool:
        return type(command) in self._handlers

    async def dispatch(self, envelope: CommandEnvelope) -> CommandResult:
        """Run the handler; never raises: every outcome becomes a CommandResult."""
        cid = envelope.command_id
        handler = self._handlers.get(type(envelope.command))
        if handler is None:
            return CommandResult(
                cid,
                ResultStatus.REJECTED,
                RejectReason.NOT_SUPPORTED,
                f"{type(envelope.command).__name__} not supported",
            )
        try:
            outcome = await handler(envelope, envelope.command)
        except CommandRefused as exc:
            return CommandResult(cid, ResultStatus.REJECTED, exc.reject_reason, exc.detail or None)
        except CommandFailed as exc:
            return CommandResult(cid, ResultStatus.FAILED, exc.reject_reason, exc.detail or None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("command_handler_crashed command=%s", type(envelope.command).__name__)
            return CommandResult(
                cid, ResultStatus.FAILED, RejectReason.HARDWARE_FAULT, f"handler error: {exc}"[:120]
            )
        outcome = outcome or Outcome()
        return CommandResult(cid, outcome.status, outcome.reason, outcome.detail)


def _command_id_of(data: bytes) -> bytes:
    """Best effort: the command id of an envelope that failed verification."""
    try:
        from pycose.messages import Sign1Message

        msg = Sign1Message.decode(bytes(data))
        if not isinstance(msg.payload, bytes):
            return NO_COMMAND_ID
        cid = codec.decode_command_payload(msg.payload).command_id
        return cid if len(cid) == 16 else NO_COMMAND_ID
    except Exception:
        return NO_COMMAND_ID


# ------------------------------------------------------------------ link


@dataclass(slots=True)
class LinkConfig:
    device_id: str
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 30
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    boot_timeout_s: float = 10.0  # no BootReply within it: publish the birth again
    rejected_retry_s: float = 300.0
    default_heartbeat_s: int = 60
    drain_batch: int = 50
    publish_timeout_s: float = 10.0
    connect_timeout_s: float = 5.0  # a half-open connect (a proxy that accepts and drops)


@dataclass(slots=True)
class LinkCounters:
    connects: int = 0
    connect_failures: int = 0
    births: int = 0
    published: int = 0
    heartbeats: int = 0
    commands: int = 0
    commands_rejected: int = 0
    inbound_invalid: int = 0
    rejections: dict[str, int] = field(default_factory=dict)


class CloudLink:
    """The MQTT session: see the module docstring. ``run()`` never returns on its own."""

    def __init__(
        self,
        config: LinkConfig,
        *,
        queue: DiskQueue,
        birth: Callable[[], Birth],
        verifier: CommandVerifier,
        router: CommandRouter,
        clock: DeviceClock | None = None,
        on_accepted: Callable[[], Awaitable[None] | None] | None = None,
    ) -> None:
        topics.validate_device_id(config.device_id)
        self.config = config
        self.device_id = config.device_id
        self.queue = queue
        self.clock = clock or DeviceClock()
        self._birth = birth
        self.verifier = verifier
        self.router = router
        self._on_accepted = on_accepted
        self.counters = LinkCounters()
        self.connected = asyncio.Event()
        self.accepted = asyncio.Event()
        self.boot_status: BootStatus | None = None
        self.heartbeat_s = config.default_heartbeat_s
        self._wake = asyncio.Event()  # something was appended: drain
        self._rebirth = asyncio.Event()  # TriggerMessage(BIRTH): re-send the birth
        self._boot_replies: asyncio.Queue[BootReply] = asyncio.Queue()
        self._commands: asyncio.Queue[bytes] = asyncio.Queue(maxsize=256)
        self._client: aiomqtt.Client | None = None
        self._stopping = False
        self._hb_now = False

    # ---------------------------------------------------------------- for agents

    def emit(self, body: UpBody) -> Stamp:
        """Store a status / event / telemetry / result durably and wake the drain."""
        stamp = self.queue.append(body)
        self._wake.set()
        return stamp

    def emit_batch(
        self, bodies: Sequence[UpBody], state: Mapping[str, str] | None = None
    ) -> list[Stamp]:
        """Store bodies and device state in one transaction (see DiskQueue.append_batch)."""
        stamps = self.queue.append_batch(bodies, state)
        if stamps:
            self._wake.set()
        return stamps

    def trigger_heartbeat(self) -> None:
        """Send a heartbeat now (TriggerMessage HEARTBEAT): the cloud answers with the time."""
        self._hb_now = True
        self._wake.set()

    def trigger_birth(self) -> None:
        """Publish the birth again (and wait for a new BootReply) on the live session."""
        self._rebirth.set()

    def snapshot(self) -> dict[str, Any]:
        c = self.counters
        return {
            "device_id": self.device_id,
            "connected": self.connected.is_set(),
            "boot_accepted": self.accepted.is_set(),
            "boot_status": self.boot_status.name if self.boot_status else None,
            "boot_id": self.queue.boot_id,
            "clock_offset_ms": self.clock.offset_ms,
            "queue": self.queue.stats(),
            "link": {
                "connects": c.connects,
                "connect_failures": c.connect_failures,
                "births": c.births,
                "published": c.published,
                "heartbeats": c.heartbeats,
                "commands": c.commands,
                "commands_rejected": c.commands_rejected,
                "inbound_invalid": c.inbound_invalid,
                "rejections": dict(c.rejections),
            },
        }

    def stop(self) -> None:
        self._stopping = True

    async def publish_death(self, reason: str) -> bool:
        """On a graceful stop: say why (the broker's Will only covers a lost connection)."""
        client = self._client
        if client is None or not self.connected.is_set():
            return False
        try:
            await client.publish(
                self._topic(Channel.DEATH),
                codec.encode_up(self._stamp0(), Death(reason[:60])),
                qos=1,
                timeout=1.0,
            )
        except (aiomqtt.MqttError, ProtocolError) as exc:
            log.info("death_not_sent device=%s error=%s", self.device_id, exc)
            return False
        return True

    # ---------------------------------------------------------------- session

    def _stamp0(self) -> Stamp:
        return Stamp(self.queue.boot_id, 0, self.clock.now_ms())

    def _topic(self, channel: Channel) -> str:
        return topics.up(self.device_id, channel)

    async def run(self) -> None:
        """Connect, serve, reconnect with back-off — for ever (cancel to stop)."""
        commands = asyncio.create_task(self._command_worker(), name="link-commands")
        delay = self.config.reconnect_min_s
        try:
            while not self._stopping:
                will = aiomqtt.Will(
                    self._topic(Channel.DEATH),
                    codec.encode_up(self._stamp0(), Death()),
                    qos=1,
                )
                client = aiomqtt.Client(
                    self.config.host,
                    self.config.port,
                    username=self.config.username,
                    password=self.config.password,
                    identifier=self.device_id,
                    will=will,
                    clean_session=True,
                    keepalive=self.config.keepalive_s,
                    timeout=self.config.connect_timeout_s,
                    logger=_mqtt_log,
                )
                try:
                    async with client:
                        self.counters.connects += 1
                        delay = self.config.reconnect_min_s
                        await self._session(client)
                except* aiomqtt.MqttError as group:
                    self.counters.connect_failures += 1
                    log.info("link_down device=%s error=%s", self.device_id, group.exceptions[0])
                except* Exception as group:
                    # A bug or a disk error must not end the link: log it, reconnect.
                    self.counters.connect_failures += 1
                    log.error(
                        "link_error device=%s error=%r", self.device_id, group.exceptions[0]
                    )
                finally:
                    self._client = None
                    self.connected.clear()
                    self.accepted.clear()
                if self._stopping:
                    break
                await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
                delay = min(delay * 2, self.config.reconnect_max_s)
        finally:
            commands.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await commands

    async def _session(self, client: aiomqtt.Client) -> None:
        self._client = client
        await client.subscribe(topics.device_subscriptions(self.device_id), qos=1)
        self.connected.set()
        log.info("link_up device=%s boot_id=%d", self.device_id, self.queue.boot_id)
        while not self._boot_replies.empty():
            self._boot_replies.get_nowait()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._reader(client), name="link-reader")
            tg.create_task(self._serve(client), name="link-serve")

    async def _reader(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            if not isinstance(payload, bytes | bytearray):
                self._invalid("payload is not bytes")
                continue
            try:
                topic = topics.parse(str(message.topic))
            except ProtocolError as exc:
                self._invalid(str(exc))
                continue
            if topic.device_id != self.device_id:
                self._invalid(f"message for {topic.device_id}")
                continue
            if topic.channel is Channel.COMMAND:
                try:
                    self._commands.put_nowait(bytes(payload))
                except asyncio.QueueFull:
                    # The cloud floods us: answer BUSY rather than grow without bound.
                    self._reject_result(_command_id_of(payload), RejectReason.BUSY, "busy")
                continue
            try:
                reply = codec.decode_down(topic.channel, bytes(payload))
            except ProtocolError as exc:
                self._invalid(f"{topic.channel}: {exc}")
                continue
            if isinstance(reply, BootReply):
                self._boot_replies.put_nowait(reply)
            elif isinstance(reply, TimeReply):
                correction = self.clock.adjust(reply.server_time_ms, reply.device_ts_ms)
                log.debug("clock_adjusted correction_ms=%d", correction)

    def _invalid(self, reason: str) -> None:
        self.counters.inbound_invalid += 1
        log.warning("inbound_invalid device=%s reason=%s", self.device_id, reason)

    async def _gate(self, client: aiomqtt.Client) -> None:
        """Publish the birth until a BootReply for this boot says ACCEPTED."""
        self.accepted.clear()
        while True:
            birth = dataclasses.replace(self._birth(), pending_from=self.queue.pending_from())
            await client.publish(
                self._topic(Channel.BIRTH),
                codec.encode_up(self._stamp0(), birth),
                qos=1,
                timeout=self.config.publish_timeout_s,
            )
            self.counters.births += 1
            wait = self.config.boot_timeout_s
            reply = await self._await_boot_reply(wait)
            if reply is None:
                continue
            self.boot_status = reply.status
            if reply.status is BootStatus.ACCEPTED:
                if reply.heartbeat_s > 0:
                    self.heartbeat_s = reply.heartbeat_s
                self.clock.adjust(reply.server_time_ms, self.clock.now_ms())
                self.accepted.set()
                log.info("boot_accepted device=%s heartbeat_s=%d", self.device_id, self.heartbeat_s)
                if self._on_accepted is not None:
                    result = self._on_accepted()
                    if result is not None:
                        await result
                return
            if reply.status is BootStatus.PENDING:
                retry: float = reply.retry_after_s or 10
            else:
                retry = self.config.rejected_retry_s
            log.info(
                "boot_%s device=%s retry_s=%s", reply.status.name.lower(), self.device_id, retry
            )
            await asyncio.sleep(retry)

    async def _await_boot_reply(self, wait_s: float) -> BootReply | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while (left := deadline - loop.time()) > 0:
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
                async with asyncio.timeout(left):
                    reply = await self._boot_replies.get()
            except TimeoutError:
                return None
            if reply.boot_id == self.queue.boot_id:
                return reply
            log.info("boot_reply_ignored boot_id=%d mine=%d", reply.boot_id, self.queue.boot_id)
        return None

    async def _serve(self, client: aiomqtt.Client) -> None:
        await self._gate(client)
        loop = asyncio.get_running_loop()
        next_hb = loop.time() + self.heartbeat_s
        while True:
            if self._rebirth.is_set():
                self._rebirth.clear()
                await self._gate(client)
            await self._drain(client)
            now = loop.time()
            if now >= next_hb or self._hb_now:
                self._hb_now = False
                await client.publish(
                    self._topic(Channel.HEARTBEAT),
                    codec.encode_up(self._stamp0(), Heartbeat()),
                    qos=0,
                )
                self.counters.heartbeats += 1
                next_hb = now + self.heartbeat_s
                continue
            self._wake.clear()
            if self.queue.depth():
                continue
            wake = asyncio.ensure_future(self._wake.wait())
            rebirth = asyncio.ensure_future(self._rebirth.wait())
            try:
                await asyncio.wait(
                    (wake, rebirth), timeout=max(0.0, next_hb - now),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                wake.cancel()
                rebirth.cancel()

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Publish queued messages in order at QoS 1; delete each on its PUBACK."""
        while True:
            batch = self.queue.pending(self.config.drain_batch)
            if not batch:
                return
            # Tasks are created (and call paho's publish) in queue order, so the broker
            # receives them in order; we wait for all PUBACKs of the batch.
            pubs = [
                asyncio.ensure_future(
                    client.publish(
                        self._topic(msg.channel),
                        msg.payload,
                        qos=1,
                        timeout=self.config.publish_timeout_s,
                    )
                )
                for msg in batch
            ]
            try:
                await asyncio.gather(*pubs)
            except BaseException:
                for p in pubs:
                    p.cancel()
                raise
            self.queue.ack_many([(msg.boot_id, msg.seq) for msg in batch])
            self.counters.published += len(batch)

    # ---------------------------------------------------------------- commands

    async def _command_worker(self) -> None:
        """Verify and dispatch commands one at a time, in arrival order."""
        while True:
            data = await self._commands.get()
            try:
                await self._handle_command(data)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("command_worker_error device=%s", self.device_id)

    async def _handle_command(self, data: bytes) -> None:
        self.counters.commands += 1
        try:
            envelope = self.verifier.verify(data)
        except CommandRejected as exc:
            cid = exc.command_id or _command_id_of(data)
            self._reject_result(cid, RejectReason(exc.reject_reason), exc.reason)
            return
        if not self.accepted.is_set():
            self._reject_result(envelope.command_id, RejectReason.BUSY, "boot not accepted")
            return
        log.info(
            "command device=%s type=%s id=%s",
            self.device_id,
            type(envelope.command).__name__,
            envelope.command_id.hex(),
        )
        result = await self.router.dispatch(envelope)
        if result.status is ResultStatus.REJECTED and result.reason is not None:
            self._count_rejection(result.reason)
        self._store_result(result)

    def _count_rejection(self, reason: RejectReason) -> None:
        self.counters.commands_rejected += 1
        self.counters.rejections[reason.name] = self.counters.rejections.get(reason.name, 0) + 1

    def _reject_result(self, command_id: bytes, reason: RejectReason, detail: str) -> None:
        self._count_rejection(reason)
        log.warning(
            "command_rejected device=%s reason=%s detail=%s", self.device_id, reason.name, detail
        )
        self._store_result(CommandResult(command_id, ResultStatus.REJECTED, reason, detail[:120]))

    def _store_result(self, result: CommandResult) -> None:
        try:
            self.emit(result)
        except (QueueError, ProtocolError) as exc:
            log.error("result_not_stored device=%s error=%s", self.device_id, exc)
