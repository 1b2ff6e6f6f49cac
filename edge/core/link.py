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
publish nothing else). Once accepted: publish the DiskQueue in order at QoS 1;
heartbeats every ``heartbeat_s`` (TimeReply adjusts the DeviceClock). A broker
that is down for days only means more reconnect attempts with back-off (capped);
the queue keeps everything.

Reconnects (:class:`ReconnectBackoff`): "decorrelated jitter" (AWS Architecture Blog,
*Exponential Backoff And Jitter*): each wait is ``min(cap, uniform(base, previous * 3))``, so
a fleet that lost its broker at the same instant does not come back in the same second,
and the back-off returns to ``base`` only once a connection has stayed up for
``reconnect_stable_s``: a broker that accepts and drops a device at once gets ever rarer
attempts from it, not one every ``base`` seconds.

TLS (``LinkConfig.tls``, an ``mqtts://`` URL): the broker is verified against ``ca_file``
(hostname included; never weakened: the name checked is the host dialled, or
``server_name`` for a device that reaches the broker through a local proxy), the device
presents ``cert_file`` / ``key_file``, its identity at the broker (issue 17). A
certificate that cannot be used is a
:class:`~kickstand.edge.core.errors.DeviceCertificateError` kept in ``tls_error`` (and the
snapshot): files missing or unreadable (no attempt is made), or the broker refusing it
(revoked, another CA, expired): the link goes on retrying with back-off exactly as for a cut
link, so the agent's offline mode goes on, and a certificate put in place is picked up at
the next attempt. A certificate expired by the device's own clock is only reported, and
still tried: a device with a wrong clock must not lock itself out of the TimeReply that
would set it right; the broker's clock decides.

End-to-end acknowledgement (SPEC §4.6): the birth says ``acks=True``. When the
BootReply says ``acks=True`` too, a message stays queued until an ``Ack`` on
``ks/v1/c/<id>/ack`` covers it (one transaction per Ack): a PUBACK only means the
broker has it, which a broker crash can undo. A message published and not
acknowledged within ``ack_timeout_s`` of its PUBACK is published again, oldest first, with its
original bytes, at most once per ``ack_timeout_s``; after a reconnect (or a new
birth) every unacknowledged message goes again. A BootReply without ``acks`` (an
older cloud): each message is deleted on its PUBACK, as before. An Ack is acted
on whenever it comes: it says the cloud committed those messages.

Publishing is a window, not a batch: up to ``publish_window`` messages are out
awaiting their PUBACK, and a message queued meanwhile (a command result) goes out
at once behind them, in queue order, instead of waiting for the previous
PUBACKs. Republications go through the same window. Without acks, the PUBACKs
that have arrived are deleted together, one transaction per turn of the loop;
with acks, their PUBACK time is recorded instead (the Ack timeout runs from it).

Commands: verified one at a time in arrival order (CommandVerifier; the replay
guard sees them in the order they came), then routed by type to the handler
registered with ``@router.on(CommandClass)``; every outcome (refusal included)
is answered with a CommandResult through the queue. A command registered with
``concurrent=True`` (one spot's unlock or lock: it waits on hardware) runs as its
own task beside the others of its kind, at most ``max_commands_in_flight`` at a
time; beyond that it is refused BUSY and counted (``commands_over_limit``). Any
other command is *exclusive*: it starts once every command before it has ended
and ends before any command after it starts (device-wide state: config, reboot,
maintenance, the authorization list). A handler's Outcome may carry bodies and
device state to store in the same transaction as its result (one fsync: the
event of the action and its DONE are on disk together or not at all).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiomqtt
import cbor2

from kickstand.edge.core.certdates import file_validity
from kickstand.edge.core.clock import DeviceClock
from kickstand.edge.core.errors import (
    CommandFailed,
    CommandRefused,
    DeviceCertificateError,
    QueueError,
)
from kickstand.edge.core.queue import DiskQueue
from kickstand.protocol import cose, topics
from kickstand.protocol.errors import CommandRejected, ProtocolError
from kickstand.protocol.signing import CommandVerifier
from kickstand.protocol.topics import Channel
from kickstand.protocol.transport import SOCKET_OPTIONS
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1.enums import BootStatus, RejectReason, ResultStatus
from kickstand.protocol.v1.fields import fit_text
from kickstand.protocol.v1.messages import (
    Ack,
    BadgeReply,
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
# aiomqtt warns at every publish beyond 10 in flight: normal with a publish window.
_mqtt_log = logging.getLogger("kickstand.edge.core.link.mqtt")
_mqtt_log.setLevel(logging.ERROR)

NO_COMMAND_ID = bytes(16)  # answer to a command whose id could not even be read

C = TypeVar("C")


# ------------------------------------------------------------------ commands


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a handler returns: DONE by default; ACCEPTED when a later result follows.

    ``bodies`` and ``state`` are stored in the result's transaction, bodies first: the
    handler hands over what it would otherwise write on its own just before.
    """

    status: ResultStatus = ResultStatus.DONE
    reason: RejectReason | None = None
    detail: str | None = None
    bodies: tuple[UpBody, ...] = ()
    state: Mapping[str, str] | None = None


_NOTHING_TO_STORE = Outcome()


Handler = Callable[[CommandEnvelope, Any], Awaitable["Outcome | None"]]


class CommandRouter:
    """Handlers registered per command class; unknown commands → NOT_SUPPORTED.

    ``concurrent=True``: commands of that class may run beside each other (each acts
    on one spot and its handler refuses a spot that is busy); all others run alone.
    """

    def __init__(self) -> None:
        self._handlers: dict[type, Handler] = {}
        self._concurrent: set[type] = set()

    def on(
        self, command_type: type[C], *, concurrent: bool = False
    ) -> Callable[
        [Callable[[CommandEnvelope, C], Awaitable[Outcome | None]]],
        Callable[[CommandEnvelope, C], Awaitable[Outcome | None]],
    ]:
        def register(
            fn: Callable[[CommandEnvelope, C], Awaitable[Outcome | None]],
        ) -> Callable[[CommandEnvelope, C], Awaitable[Outcome | None]]:
            self.add(command_type, fn, concurrent=concurrent)
            return fn

        return register

    def add(self, command_type: type, handler: Handler, *, concurrent: bool = False) -> None:
        self._handlers[command_type] = handler
        if concurrent:
            self._concurrent.add(command_type)
        else:
            self._concurrent.discard(command_type)

    def supports(self, command: CommandBody) -> bool:
        return type(command) in self._handlers

    def concurrent(self, command: CommandBody) -> bool:
        return type(command) in self._concurrent

    async def dispatch(self, envelope: CommandEnvelope) -> tuple[CommandResult, Outcome]:
        """Run the handler; never raises: every outcome becomes a CommandResult.

        Returned with the Outcome whose bodies and state go in the result's transaction.
        """
        cid = envelope.command_id
        handler = self._handlers.get(type(envelope.command))
        if handler is None:
            return CommandResult(
                cid,
                ResultStatus.REJECTED,
                RejectReason.NOT_SUPPORTED,
                f"{type(envelope.command).__name__} not supported",
            ), _NOTHING_TO_STORE
        try:
            outcome = await handler(envelope, envelope.command)
        except CommandRefused as exc:
            return CommandResult(
                cid, ResultStatus.REJECTED, exc.reject_reason, exc.detail or None
            ), _NOTHING_TO_STORE
        except CommandFailed as exc:
            return CommandResult(
                cid, ResultStatus.FAILED, exc.reject_reason, exc.detail or None
            ), _NOTHING_TO_STORE
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("command_handler_crashed command=%s", type(envelope.command).__name__)
            return CommandResult(
                cid,
                ResultStatus.FAILED,
                RejectReason.HARDWARE_FAULT,
                fit_text(f"handler error: {exc}", 128),
            ), _NOTHING_TO_STORE
        outcome = outcome or _NOTHING_TO_STORE
        return CommandResult(cid, outcome.status, outcome.reason, outcome.detail), outcome


def _command_id_of(data: bytes) -> bytes:
    """Best effort: the command id of an envelope that failed verification."""
    try:
        msg = cose.decode_sign1(bytes(data))
        # Key 0 of the payload map, read without decoding the rest: a command of a type this
        # device does not know (SPEC §8) is answered NOT_SUPPORTED *with its id*, so the
        # cloud can match the refusal to what it sent.
        wire = cbor2.loads(msg.payload)
        cid = wire.get(0) if isinstance(wire, dict) else None
        return cid if isinstance(cid, bytes) and len(cid) == 16 else NO_COMMAND_ID
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
    reconnect_stable_s: float = 60.0  # up this long: the next drop starts from reconnect_min_s
    boot_timeout_s: float = 10.0  # no BootReply within it: publish the birth again
    rejected_retry_s: float = 300.0
    default_heartbeat_s: int = 60
    publish_window: int = 50  # queued messages published and awaiting their PUBACK
    acks: bool = True  # announce end-to-end acks in the birth (SPEC §4.6)
    ack_timeout_s: float = 30.0  # published, no Ack within it: publish again
    max_commands_in_flight: int = 64  # concurrent commands running; beyond: BUSY
    publish_timeout_s: float = 10.0
    connect_timeout_s: float = 5.0  # a half-open connect (a proxy that accepts and drops)
    # TLS (mqtts://): the broker verified against ca_file (None: the system's CAs), the
    # device's identity in cert_file / key_file (PEM; None: no client certificate).
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    # The name the broker's certificate must carry when it is not ``host`` (a device that
    # dials a local proxy: 127.0.0.1 on the wire, the broker's name in its certificate).
    server_name: str | None = None


class _NamedContext(ssl.SSLContext):
    """A client context that checks (and sends as SNI) ``server_name`` instead of the host
    the MQTT client dials: paho passes its host to ``wrap_socket``, with no other hook."""

    server_name: str | None = None

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        if self.server_name is not None:
            kwargs["server_hostname"] = self.server_name
        return super().wrap_socket(sock, *args, **kwargs)


def tls_context(config: LinkConfig) -> ssl.SSLContext:
    """The TLS context of the device's link: server verified (CERT_REQUIRED, hostname
    checked) against ``config.ca_file``, client certificate loaded.

    :class:`DeviceCertificateError` (``missing`` / ``unreadable``) when a configured file is
    absent, is not PEM, or the key is not the certificate's.
    """
    for path in (config.ca_file, config.cert_file, config.key_file):
        if path is not None and not os.path.exists(path):
            raise DeviceCertificateError("missing", "no such file", path=path)
    if (config.cert_file is None) != (config.key_file is None):
        missing = "key_file" if config.key_file is None else "cert_file"
        raise DeviceCertificateError("missing", f"{missing} is not configured")
    # What ssl.create_default_context(SERVER_AUTH) makes (CERT_REQUIRED, hostname checked),
    # in the class that checks ``server_name`` when one is set.
    context = _NamedContext(ssl.PROTOCOL_TLS_CLIENT)
    context.server_name = config.server_name
    try:
        if config.ca_file is not None:
            context.load_verify_locations(cafile=config.ca_file)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    except (ssl.SSLError, OSError) as exc:
        raise DeviceCertificateError("unreadable", str(exc), path=config.ca_file) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.cert_file is not None and config.key_file is not None:
        try:
            context.load_cert_chain(config.cert_file, config.key_file)
        except (ssl.SSLError, OSError) as exc:
            # Not PEM, or a key that is not the certificate's (e.g. a rotation half done).
            raise DeviceCertificateError("unreadable", str(exc), path=config.cert_file) from None
    return context


def certificate_validity(path: str, now: datetime) -> DeviceCertificateError | None:
    """``expired`` / ``not-yet-valid`` when the certificate's dates exclude ``now``, else None.

    Only a report: the broker's clock decides (see the module docstring). The dates are read
    by :mod:`.certdates`, not ``cryptography.x509`` (an idle station's memory, issue 17);
    the certificate itself was loaded by OpenSSL in :func:`tls_context` just before."""
    try:
        not_before, not_after = file_validity(path)
    except (OSError, ValueError) as exc:
        return DeviceCertificateError("unreadable", str(exc), path=path)
    if now > not_after:
        return DeviceCertificateError(
            "expired", f"not valid after {not_after:%Y-%m-%dT%H:%MZ}", path=path
        )
    if now < not_before:
        return DeviceCertificateError(
            "not-yet-valid", f"not valid before {not_before:%Y-%m-%dT%H:%MZ}", path=path
        )
    return None


class _TlsAlerts(logging.Filter):
    """The last TLS alert paho logged. paho reports a broker's handshake refusal (TLS 1.3
    sends it after the client's Finished) only as a log line, then the CONNECT times out:
    this line is the only place that says *why* (certificate revoked, unknown ca, ...)."""

    def __init__(self) -> None:
        super().__init__()
        self.last: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "[SSL" in message:
            self.last = message
        return True


class ReconnectBackoff:
    """How long to wait before the next connection attempt (see the module docstring).

    ``delay()`` after every failed attempt or lost connection; ``connected(at)`` when a
    connection is up and ``disconnected(at)`` when it ends: only a connection that lasted
    ``stable_s`` resets the back-off. ``rng`` is injectable so the policy is testable alone.
    """

    def __init__(
        self,
        base_s: float,
        cap_s: float,
        stable_s: float,
        rng: random.Random | None = None,
    ) -> None:
        self.base_s = base_s
        self.cap_s = max(cap_s, base_s)
        self.stable_s = stable_s
        self._rng = rng or random.Random()
        self._previous = base_s
        self._connected_at: float | None = None

    def delay(self) -> float:
        wait = min(self.cap_s, self._rng.uniform(self.base_s, self._previous * 3))
        self._previous = wait
        return wait

    def connected(self, at: float) -> None:
        self._connected_at = at

    def disconnected(self, at: float) -> None:
        if self._connected_at is not None and at - self._connected_at >= self.stable_s:
            self._previous = self.base_s
        self._connected_at = None


@dataclass(slots=True)
class LinkCounters:
    connects: int = 0
    connect_failures: int = 0
    tls_failures: int = 0  # attempts not made or refused because of the device certificate
    births: int = 0
    published: int = 0  # PUBACKs received
    republished: int = 0  # publications of a message published before (acks on)
    acks: int = 0  # Ack messages received
    acknowledged: int = 0  # queued messages deleted by an Ack
    heartbeats: int = 0
    commands: int = 0
    commands_rejected: int = 0
    commands_over_limit: int = 0  # refused BUSY: max_commands_in_flight were running
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
        on_badge_reply: Callable[[BadgeReply], None] | None = None,
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
        self._on_badge_reply = on_badge_reply
        self.counters = LinkCounters()
        self.backoff = ReconnectBackoff(
            config.reconnect_min_s, config.reconnect_max_s, config.reconnect_stable_s
        )
        self.connected = asyncio.Event()
        self.accepted = asyncio.Event()
        self.boot_status: BootStatus | None = None
        self.heartbeat_s = config.default_heartbeat_s
        self._wake = asyncio.Event()  # something was appended: drain
        self._rebirth = asyncio.Event()  # TriggerMessage(BIRTH): re-send the birth
        self._boot_replies: asyncio.Queue[BootReply] = asyncio.Queue()
        self._commands: asyncio.Queue[bytes] = asyncio.Queue(maxsize=256)
        self._running: set[asyncio.Task[None]] = set()  # concurrent commands
        # Publications awaiting their PUBACK: queue row -> ((boot_id, seq), publish).
        self._inflight: dict[int, tuple[tuple[int, int], asyncio.Future[None]]] = {}
        self.acks_on = False  # the last BootReply said acks=True (and so did our birth)
        self._accepted_ms = 0  # queue clock at that BootReply: published before it goes again
        self._client: aiomqtt.Client | None = None
        self._stopping = False
        self._hb_now = False
        #: Why the device's certificate keeps the link down (None: it does not).
        self.tls_error: DeviceCertificateError | None = None
        # One paho logger per link: the TLS alert it logs belongs to this device's attempt.
        self._mqtt_log = logging.getLogger(f"{_mqtt_log.name}.{config.device_id}")
        self._tls_alerts = _TlsAlerts()
        self._mqtt_log.addFilter(self._tls_alerts)

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
            "tls_error": (
                {"reason": self.tls_error.reason, "detail": str(self.tls_error)}
                if self.tls_error is not None
                else None
            ),
            "queue": self.queue.stats(),
            "link": {
                "connects": c.connects,
                "reconnects": max(0, c.connects - 1),
                "connect_failures": c.connect_failures,
                "tls_failures": c.tls_failures,
                "births": c.births,
                "end_to_end_acks": self.acks_on,
                "published": c.published,
                "awaiting_puback": len(self._inflight),
                "republished": c.republished,
                "acks_received": c.acks,
                "acknowledged": c.acknowledged,
                "heartbeats": c.heartbeats,
                "commands": c.commands,
                "commands_rejected": c.commands_rejected,
                "commands_in_flight": len(self._running),
                "commands_over_limit": c.commands_over_limit,
                "inbound_invalid": c.inbound_invalid,
                "rejections": dict(c.rejections),
            },
        }

    def stop(self) -> None:
        self._stopping = True

    def reconnect(self) -> None:
        """End the current MQTT connection: :meth:`run` connects again at once, reading the
        certificate files again (a renewed identity). What a broker restart does, which the
        link is built for: nothing queued is lost."""
        client = self._client
        # aiomqtt has no synchronous disconnect; paho's ends the session from any task.
        paho = getattr(client, "_client", None) if client is not None else None
        if paho is not None:
            paho.disconnect()

    async def publish_death(self, reason: str) -> bool:
        """On a graceful stop: say why (the broker's Will only covers a lost connection)."""
        client = self._client
        if client is None or not self.connected.is_set():
            return False
        try:
            await client.publish(
                self._topic(Channel.DEATH),
                codec.encode_up(self._stamp0(), Death(fit_text(reason, 60))),
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
        loop = asyncio.get_running_loop()
        backoff = self.backoff
        try:
            while not self._stopping:
                will = aiomqtt.Will(
                    self._topic(Channel.DEATH),
                    codec.encode_up(self._stamp0(), Death()),
                    qos=1,
                )
                context: ssl.SSLContext | None = None
                if self.config.tls:
                    try:
                        context = self._tls_context()
                    except DeviceCertificateError as exc:
                        self._tls_failed(exc)
                        if self._stopping:
                            break
                        await asyncio.sleep(backoff.delay())
                        continue
                self._tls_alerts.last = None
                connected_before = self.counters.connects
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
                    # paho's own limit (20) would hold back part of our publish window
                    max_inflight_messages=self.config.publish_window,
                    logger=self._mqtt_log,
                    socket_options=SOCKET_OPTIONS,
                    tls_context=context,
                )
                try:
                    async with client:
                        self.counters.connects += 1
                        backoff.connected(loop.time())
                        if self.tls_error is not None:
                            log.info("link_tls_ok device=%s", self.device_id)
                            self.tls_error = None
                        await self._session(client)
                except* aiomqtt.MqttError as group:
                    self.counters.connect_failures += 1
                    refused = self._tls_refusal(group.exceptions[0])
                    if refused is not None and self.counters.connects == connected_before:
                        self._tls_failed(refused)
                    else:
                        log.info(
                            "link_down device=%s error=%s", self.device_id, group.exceptions[0]
                        )
                except* Exception as group:
                    # A bug or a disk error must not end the link: log it, reconnect.
                    self.counters.connect_failures += 1
                    log.error("link_error device=%s error=%r", self.device_id, group.exceptions[0])
                finally:
                    backoff.disconnected(loop.time())
                    self._client = None
                    self.connected.clear()
                    self.accepted.clear()
                if self._stopping:
                    break
                await asyncio.sleep(backoff.delay())
        finally:
            commands.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await commands

    def _tls_context(self) -> ssl.SSLContext:
        context = tls_context(self.config)
        if self.config.cert_file is not None:
            now = datetime.fromtimestamp(self.clock.now_ms() / 1000, UTC)
            dated = certificate_validity(self.config.cert_file, now)
            if dated is not None and (
                self.tls_error is None or self.tls_error.reason != dated.reason
            ):
                log.warning("link_certificate device=%s %s", self.device_id, dated)
        return context

    def _tls_refusal(self, error: BaseException) -> DeviceCertificateError | None:
        """The certificate error behind a failed connect (None: not a TLS matter)."""
        if not self.config.tls:
            return None
        cause = error.__cause__ or error.__context__
        if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(
            error
        ):
            return DeviceCertificateError("server-untrusted", str(error))
        alert = self._tls_alerts.last
        if alert is not None and "alert" in alert.lower():
            # "failed to receive on socket: [SSL: X] tlsv1 alert unknown ca (_ssl.c:2580)"
            detail = alert.split("]", 1)[-1].split(" (_ssl", 1)[0].strip()
            return DeviceCertificateError(
                "refused", f"the broker refused the TLS handshake: {detail}"
            )
        return None

    def _tls_failed(self, error: DeviceCertificateError) -> None:
        self.counters.tls_failures += 1
        repeated = self.tls_error is not None and str(self.tls_error) == str(error)
        self.tls_error = error
        # Once per change: a device retrying for days must not fill its log.
        (log.debug if repeated else log.warning)(
            "link_tls_error device=%s reason=%s error=%s", self.device_id, error.reason, error
        )

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
            if isinstance(reply, Ack):
                self._on_ack(reply)
            elif isinstance(reply, BootReply):
                self._boot_replies.put_nowait(reply)
            elif isinstance(reply, BadgeReply):
                if self._on_badge_reply is None:
                    self._invalid("badge reply: this device has no badge reader")
                else:
                    self._on_badge_reply(reply)
            elif isinstance(reply, TimeReply):
                correction = self.clock.adjust(reply.server_time_ms, reply.device_ts_ms)
                log.debug("clock_adjusted correction_ms=%d", correction)

    def _on_ack(self, ack: Ack) -> None:
        """Forget what the cloud committed. A disk error only means those come again."""
        self.counters.acks += 1
        try:
            self.counters.acknowledged += self.queue.ack_ranges(
                [(r.boot_id, r.first, r.last) for r in ack.ranges]
            )
        except QueueError as exc:
            log.error("ack_not_applied device=%s error=%s", self.device_id, exc)

    def _invalid(self, reason: str) -> None:
        self.counters.inbound_invalid += 1
        log.warning("inbound_invalid device=%s reason=%s", self.device_id, reason)

    async def _gate(self, client: aiomqtt.Client) -> None:
        """Publish the birth until a BootReply for this boot says ACCEPTED."""
        self.accepted.clear()
        while True:
            birth = dataclasses.replace(
                self._birth(), pending_from=self.queue.pending_from(), acks=self.config.acks
            )
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
                self.clock.adjust(reply.server_time_ms, self.clock.now_ms(), step=True)
                self.acks_on = self.config.acks and reply.acks is True
                self._accepted_ms = self.queue.now_ms()
                self.accepted.set()
                log.info(
                    "boot_accepted device=%s heartbeat_s=%d acks=%s",
                    self.device_id,
                    self.heartbeat_s,
                    self.acks_on,
                )
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
        self._inflight = {}
        try:
            while True:
                if self._rebirth.is_set():
                    await self._settle()  # the birth gates everything after it
                    self._rebirth.clear()
                    await self._gate(client)
                self._wake.clear()
                self._publish_more(client)
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
                wait = next_hb - loop.time()
                if (due_in := self._next_due_s()) is not None:
                    wait = min(wait, due_in)
                await self._await_news(max(0.0, wait))
                self._collect_pubacks()
        finally:
            for _key, publish in self._inflight.values():
                publish.cancel()
            self._inflight = {}

    @property
    def _ack_timeout_ms(self) -> int:
        return int(self.config.ack_timeout_s * 1000)

    def _publish_more(self, client: aiomqtt.Client) -> None:
        """Publish what is due, oldest first, while the window has room.

        Due: not yet published in this session or, with acks, unacknowledged for
        ``ack_timeout_s``. Each publish task calls paho's publish when it first runs,
        and tasks run in the order they were created: the broker receives the
        messages in queue order.
        """
        inflight = self._inflight
        room = self.config.publish_window - len(inflight)
        if room <= 0:
            return
        # Rows awaiting their PUBACK may be among the due ones: ask for enough to skip them.
        due = self.queue.due(
            room + len(inflight), timeout_ms=self._ack_timeout_ms, since_ms=self._accepted_ms
        )
        batch = [msg for msg in due if msg.row not in inflight][:room]
        if self.acks_on:
            self.counters.republished += sum(1 for m in batch if m.published_ms is not None)
        for msg in batch:
            inflight[msg.row] = (
                msg.key,
                asyncio.ensure_future(
                    client.publish(
                        self._topic(msg.channel),
                        msg.payload,
                        qos=1,
                        timeout=self.config.publish_timeout_s,
                    )
                ),
            )

    def _next_due_s(self) -> float | None:
        """Seconds until an unacknowledged message falls due again; None: nothing to time.

        With a full window the next PUBACK wakes the loop anyway. Rows awaiting their
        PUBACK do not count: they cannot go again before it, so a stale one in flight
        cannot make the loop spin.
        """
        if not self.acks_on or len(self._inflight) >= self.config.publish_window:
            return None
        due_ms = self.queue.next_due_ms(
            timeout_ms=self._ack_timeout_ms, since_ms=self._accepted_ms, skip=self._inflight
        )
        if due_ms is None:
            return None
        return max(0.0, (due_ms - self.queue.now_ms()) / 1000)

    async def _await_news(self, wait_s: float) -> None:
        """Until something was queued, a PUBACK came, a rebirth was asked, or ``wait_s``."""
        wake = asyncio.ensure_future(self._wake.wait())
        rebirth = asyncio.ensure_future(self._rebirth.wait())
        news: list[asyncio.Future[Any]] = [
            wake,
            rebirth,
            *(publish for _key, publish in self._inflight.values()),
        ]
        try:
            await asyncio.wait(
                news,
                timeout=wait_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            wake.cancel()
            rebirth.cancel()

    def _collect_pubacks(self) -> None:
        """Free the window of every message whose PUBACK arrived.

        Without acks (an older cloud) they are deleted, in one transaction; with acks
        they stay queued until the cloud's Ack and their Ack timeout starts now (one
        transaction too). A failed publish (timeout, connection lost) raises: the
        session ends and the next one republishes whatever is still queued, oldest first.
        """
        inflight = self._inflight
        done = [row for row, (_key, publish) in inflight.items() if publish.done()]
        if not done:
            return
        for row in done:
            error = inflight[row][1].exception()
            if error is not None:
                raise error
        if self.acks_on:
            # A device clock set back below the session's start would make these look
            # published before it, hence due at every turn: the start follows the clock.
            self._accepted_ms = min(self._accepted_ms, self.queue.now_ms())
            self.queue.mark_published(done)
        else:
            self.queue.ack_many([inflight[row][0] for row in done])
        for row in done:
            del inflight[row]
        self.counters.published += len(done)

    async def _settle(self) -> None:
        if self._inflight:
            await asyncio.wait(tuple(publish for _key, publish in self._inflight.values()))
            self._collect_pubacks()

    # ---------------------------------------------------------------- commands

    async def _command_worker(self) -> None:
        """Verify in arrival order; run concurrent commands as tasks, the others alone."""
        running = self._running
        try:
            while True:
                data = await self._commands.get()
                try:
                    envelope = self._admit(data)
                    if envelope is None:
                        continue
                    if not self.router.concurrent(envelope.command):
                        if running:
                            await asyncio.wait(tuple(running))
                        await self._execute(envelope)
                        continue
                    if len(running) >= self.config.max_commands_in_flight:
                        self.counters.commands_over_limit += 1
                        self._reject_result(
                            envelope.command_id, RejectReason.BUSY, "too many commands in flight"
                        )
                        continue
                    task = asyncio.create_task(
                        self._execute(envelope),
                        name=f"command-{envelope.command_id.hex()[:8]}",
                    )
                    running.add(task)
                    task.add_done_callback(running.discard)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("command_worker_error device=%s", self.device_id)
        finally:
            tasks = tuple(running)
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)

    def _admit(self, data: bytes) -> CommandEnvelope | None:
        """The verified envelope, or None once a refusal is queued."""
        self.counters.commands += 1
        try:
            envelope = self.verifier.verify(data)
        except CommandRejected as exc:
            cid = exc.command_id or _command_id_of(data)
            self._reject_result(cid, RejectReason(exc.reject_reason), exc.reason)
            return None
        if not self.accepted.is_set():
            self._reject_result(envelope.command_id, RejectReason.BUSY, "boot not accepted")
            return None
        log.info(
            "command device=%s type=%s id=%s",
            self.device_id,
            type(envelope.command).__name__,
            envelope.command_id.hex(),
        )
        return envelope

    async def _execute(self, envelope: CommandEnvelope) -> None:
        try:
            result, outcome = await self.router.dispatch(envelope)
            # Nothing is awaited from the handler's return to this store: no other task
            # can queue a message about the same spot in between: events keep their order.
            if result.status is ResultStatus.REJECTED and result.reason is not None:
                self._count_rejection(result.reason)
            self._store_result(result, outcome.bodies, outcome.state)
        except Exception:
            # A concurrent command's task has nobody awaiting it: say it here.
            log.exception("command_execution_error device=%s", self.device_id)

    def _count_rejection(self, reason: RejectReason) -> None:
        self.counters.commands_rejected += 1
        self.counters.rejections[reason.name] = self.counters.rejections.get(reason.name, 0) + 1

    def _reject_result(self, command_id: bytes, reason: RejectReason, detail: str) -> None:
        self._count_rejection(reason)
        log.warning(
            "command_rejected device=%s reason=%s detail=%s", self.device_id, reason.name, detail
        )
        # The detail quotes what was refused: text the codec would refuse in turn.
        result = CommandResult(command_id, ResultStatus.REJECTED, reason, fit_text(detail, 128))
        self._store_result(result)

    def _store_result(
        self,
        result: CommandResult,
        bodies: Sequence[UpBody] = (),
        state: Mapping[str, str] | None = None,
    ) -> None:
        try:
            self.emit_batch((*bodies, result), state)
            return
        except (QueueError, ProtocolError) as exc:
            log.error("result_not_stored device=%s error=%s", self.device_id, exc)
            if not bodies and not state:
                return
        # What came with the result could not be stored: at least answer the command.
        try:
            self.emit(result)
        except (QueueError, ProtocolError) as exc:
            log.error("result_not_stored device=%s error=%s", self.device_id, exc)
