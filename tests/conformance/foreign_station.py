"""A foreign station: a Kickstand v1 station written from the documents alone.

This module is our hold-out (issue 14), with its companions ``foreign_wire`` (codes and
limits), ``foreign_cbor`` (strict decoding, field checks) and ``foreign_commands``
(command verification). They were written from ``protocol/SPEC.md``,
``protocol/schema/*.cddl`` and ``protocol/vectors/v1.json`` only: they import nothing of
``kickstand`` — the standard library, ``cbor2``, ``aiomqtt`` and ``cryptography`` (Ed25519
verify) are all they use. When it needs knowledge of our code to pass, the SPEC is wrong:
fix the SPEC, not this module (CONTRIBUTING.md).

It is a station mainboard without hardware: its spots are a table in memory that a test
changes (``take``, ``dock``, ``present_badge``), and its "non-volatile" storage (queue,
executed command ids, authorization list, Config) lives as long as the object, across
reconnects and reboots.

Where the documents were ambiguous or silent (issue 14's hold-out, first run 2026-12-06).
Fixed in SPEC.md since (this module follows the fixed text):

- §4.3.3 did not say what a device does with a command that arrives before its birth is
  accepted; now: verified, then refused BUSY, the result sent once accepted.
- §7.4 did not say whether UnlockExpired comes with a Locked event (cause AUTO_RELOCK);
  now: UnlockExpired (with the command_id or badge_uid) and the spot's status only.
- §7.4 TriggerMessage BIRTH: whether the re-birth gates the session again was not said;
  now: it does, like any birth.
- §4.7 (badges) and §4.7 (Clock) shared a number (another helper made Clock §4.8;
  ``schema/badge.cddl`` now points badges to §4.7 too).
- §4.3.2 did not say at which QoS a device subscribes; now: QoS 1.
- §4.7: the BadgeReply's and Unlock's ``rent_id`` is "the rent's"; now: the API's rent id
  as decimal text.

Still guessed (the SPEC allows either; what this station does):

1. §4.4 does not say which ``lock`` an EMPTY spot reports; this station reports LOCKED.
2. §7.3: an Unlock that completes at once answers DONE only (no ACCEPTED first), stored
   with the Unlocked event and the status in one step (§4.1.5).
3. §4.6.4 counts ``ack_timeout_s`` "on the device clock"; this station uses a monotonic
   clock, so a clock step causes no resend at all.
4. §7.4 SetSpeedLimit and FirmwareUpdate on a station without boards: NOT_SUPPORTED.
5. §7.2 does not say whether a COSE signature of another length than 64 bytes is
   MALFORMED or BAD_SIGNATURE; the CDDL (``bstr .size 64``) makes it a structure error:
   MALFORMED.
6. §6 does not say what an unknown TriggerKind ``which`` is; refused MALFORMED (a code
   outside its enum is ``schema``, like an unknown state code).
7. §7.4 says the cloud's Unlock carries ``RENT_UNLOCK_WINDOW_S``; the badge Unlocks the
   ingest process signs carry 60 s whatever the API is configured with, so the test sets
   the station's own ``unlock_window_s`` (§7.5).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import aiomqtt
import cbor2

from tests.conformance.foreign_cbor import (
    Malformed,
    Schema,
    a_map,
    boolean,
    bytes_in,
    decode,
    int_in,
    need,
    text_in,
)
from tests.conformance.foreign_commands import Refused, Verified, Verifier
from tests.conformance.foreign_wire import (
    AUTH_FULL,
    CONFIG_KEYS,
    U32,
    U63,
    BadgeOutcome,
    BootStatus,
    Command,
    DeviceState,
    Event,
    Lock,
    LockCause,
    Reject,
    Result,
    SpotState,
    Trigger,
)

log = logging.getLogger("foreign_station")

# -- the station ---------------------------------------------------------------------------


@dataclass
class Queued:
    """A sequenced message in the device's store (§4.1)."""

    boot_id: int
    seq: int
    channel: str
    payload: bytes
    state: str = "new"  # new → inflight → pubacked (→ new again after ack_timeout_s)
    puback_at: float = 0.0


@dataclass
class Spot:
    number: int
    serial: str | None = None
    lock: Lock = Lock.LOCKED
    maintenance: bool = False
    #: What opened the spot: (command_id, None) or (None, badge_uid).
    opened_by: tuple[bytes | None, bytes | None] | None = None
    window: asyncio.Task[None] | None = None


@dataclass
class ResultRecord:
    command_id: bytes
    ctype: Command | None
    status: Result
    reason: Reject | None = None


@dataclass
class BadgeReply:
    uid: bytes
    outcome: BadgeOutcome
    reason: int | None
    spot: int | None
    rent_id: str | None


@dataclass
class Counters:
    published: int = 0
    resent: int = 0
    acks: int = 0
    acks_ignored: int = 0
    bad_cloud_messages: int = 0
    births: int = 0
    heartbeats: int = 0
    time_replies: int = 0


@dataclass
class AuthList:
    version: int = 0
    uids: set[bytes] = field(default_factory=set)


class ForeignStation:
    """``async with ForeignStation(...) as st:`` connects, births and runs until the block
    ends. ``docked`` maps spot numbers to the serial numbers docked there at power-up."""

    def __init__(
        self,
        device_id: str,
        host: str,
        port: int,
        *,
        command_keys: Iterable[bytes | str],
        spots: int = 6,
        docked: Mapping[int, str] | None = None,
        acks: bool = True,
        ack_timeout_s: float = 30.0,
        rtc_error_ms: int = 0,
        unlock_window_s: int | None = None,
        firmware: str = "foreign-1.0",
        hardware: str = "paper-1",
    ) -> None:
        keys = [bytes.fromhex(k) if isinstance(k, str) else k for k in command_keys]
        self.device_id = device_id
        self.host, self.port = host, port
        self.verifier = Verifier(device_id, keys)
        self.spots = {n: Spot(n) for n in range(1, spots + 1)}
        for n, serial in (docked or {}).items():
            self.spots[n].serial = serial
        self.want_acks = acks
        self.ack_timeout_s = ack_timeout_s
        self.firmware, self.hardware = firmware, hardware
        #: The device clock = wall clock + this offset (a power-up RTC error, then corrected).
        self.offset_ms = rtc_error_ms
        self.boot_id = _new_boot_id()
        self._next_seq = 1
        self.queue: dict[tuple[int, int], Queued] = {}
        #: §7.5 settings (a Config command changes them at run time).
        self.config: dict[str, Any] = {}
        if unlock_window_s is not None:
            self.config["unlock_window_s"] = unlock_window_s
        #: The window_s of every Unlock received (what the cloud asked for).
        self.unlock_windows: list[int | None] = []
        self.config_version = 0
        self.auth = AuthList()
        self.station_maintenance = False
        # What the tests read.
        self.counters = Counters()
        self.sent: set[tuple[int, int]] = set()
        #: How many times each (boot_id, seq) was published, and on which channel.
        self.publishes: Counter[tuple[int, int, str]] = Counter()
        self.acked: set[tuple[int, int]] = set()
        self.results: list[ResultRecord] = []
        self.auth_updates: list[tuple[int, int, Result, Reject | None]] = []
        self.badge_replies: list[BadgeReply] = []
        self.boot_replies: list[dict[int, Any]] = []
        self.accepted = asyncio.Event()
        self.ignore_acks = False
        # Session state.
        self.heartbeat_s = 30
        self._session_acks = False
        self._client: aiomqtt.Client | None = None
        self._wake = asyncio.Event()
        self._boot_replies: asyncio.Queue[dict[int, Any]] = asyncio.Queue()
        self._hb_sent: dict[int, float] = {}
        self._birth_sent_at = 0.0
        self._reconnect = asyncio.Event()
        self._rebooting = False
        #: A triggered birth awaits its BootReply: nothing queued is sent meanwhile.
        self._gated = False
        #: Cleared while the test holds the station's link down (go_offline).
        self._link_up = asyncio.Event()
        self._link_up.set()
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._runner = asyncio.create_task(self._run(), name=f"foreign {self.device_id}")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """A clean shutdown: a Death with a reason (§4.3.6), then disconnect."""
        client = self._client
        if client is not None and self.accepted.is_set():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._publish_death(client, "shutdown"), 2)
        for task in [*self._tasks, *([self._runner] if self._runner else [])]:
            task.cancel()
        for task in [*self._tasks, *([self._runner] if self._runner else [])]:
            with contextlib.suppress(BaseException):
                await task

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    async def reconnect(self) -> None:
        """Drop the connection (the broker publishes the Will) and connect again, same boot."""
        self.accepted.clear()
        self._reconnect.set()
        await asyncio.wait_for(self.accepted.wait(), 30)

    async def go_offline(self) -> None:
        """The link goes down (the station keeps running: badges decided offline, §4.7)."""
        self._link_up.clear()
        self.accepted.clear()
        self._reconnect.set()
        await self.wait_for(lambda: self._client is None, 10)

    async def go_online(self) -> None:
        """The link is back: birth, then every message not yet acknowledged."""
        self._link_up.set()
        await asyncio.wait_for(self.accepted.wait(), 30)

    async def _run(self) -> None:
        backoff = 1.0
        while True:
            try:
                await self._session()
                backoff = 1.0
            except aiomqtt.MqttError as e:
                log.info("event=foreign_disconnected device=%s error=%s", self.device_id, e)
            self.accepted.clear()
            self._client = None
            asked = self._reconnect.is_set()
            self._reconnect.clear()
            if self._rebooting:  # §7.4 Reboot: a new boot at power-up, same store
                self._rebooting = False
                self.boot_id = _new_boot_id()
                self._next_seq = 1
                continue
            if not self._link_up.is_set():
                await self._link_up.wait()
                continue
            if asked:
                continue
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30)

    async def _session(self) -> None:
        # §4.3.1: the Will is the Death of this boot, stamped at connect.
        will = aiomqtt.Will(
            self._topic("death"), cbor2.dumps([self.boot_id, 0, self.now_ms(), {}]), qos=1
        )
        self._gated = False
        async with aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.device_id,
            clean_session=True,
            keepalive=60,
            will=will,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        ) as client:
            self._client = client
            await client.subscribe(f"ks/v1/c/{self.device_id}/+", qos=1)
            receiver = asyncio.create_task(self._receive(client))
            session: list[asyncio.Task[Any]] = [receiver]
            try:
                await self._gate(client)
                session += [
                    asyncio.create_task(self._heartbeats(client)),
                    asyncio.create_task(self._sender(client)),
                ]
                stop = asyncio.create_task(self._reconnect.wait())
                done, _ = await asyncio.wait([*session, stop], return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                for task in done:
                    if task is not stop and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
            finally:
                for task in session:
                    task.cancel()
                for task in session:
                    with contextlib.suppress(BaseException):
                        await task
            if self._rebooting:
                await self._publish_death(client, "reboot")

    # -- §4.3 birth and boot gating ---------------------------------------------------------

    def _birth(self) -> bytes:
        mine = [s for b, s in self.queue if b == self.boot_id]
        body: dict[int, Any] = {
            0: 1,  # DeviceKind STATION
            1: self.firmware,
            2: self.hardware,
            3: self.config_version,
            4: self.auth.version,
            5: [["spot", n, self.firmware] for n in self.spots],
            6: min(mine) if mine else self._next_seq,
            8: self.want_acks,
        }
        return cbor2.dumps([self.boot_id, 0, self.now_ms(), body])

    async def _gate(self, client: aiomqtt.Client) -> None:
        wait_s = 10.0
        while True:
            self._birth_sent_at = time.monotonic()
            await client.publish(self._topic("birth"), self._birth(), qos=1)
            self.counters.births += 1
            try:
                reply = await asyncio.wait_for(self._boot_replies.get(), wait_s)
            except TimeoutError:
                wait_s = min(wait_s * 2, 300)  # no reply: back off up to 5 minutes
                continue
            status = reply[0]
            if status == BootStatus.ACCEPTED:
                self._accepted(reply)
                return
            if status == BootStatus.PENDING:
                await asyncio.sleep(reply.get(4, 10))
            else:
                await asyncio.sleep(300)

    def _accepted(self, reply: dict[int, Any]) -> None:
        rtt_ms = (time.monotonic() - self._birth_sent_at) * 1000
        # §4.7 Clock: step at every accepted BootReply.
        self.offset_ms = int(reply[1] + rtt_ms / 2) - time.time_ns() // 1_000_000
        self.heartbeat_s = max(1, reply[2])
        self._session_acks = self.want_acks and reply.get(5) is True
        self._gated = False
        # §4.4: every spot's status after an accepted birth; §4.6.4: everything not yet
        # acknowledged again, oldest first.
        self._queue_all_status()
        for q in self.queue.values():
            q.state = "new"
        self.accepted.set()
        self._wake.set()

    async def _publish_death(self, client: aiomqtt.Client, reason: str) -> None:
        payload = cbor2.dumps([self.boot_id, 0, self.now_ms(), {0: reason}])
        await client.publish(self._topic("death"), payload, qos=1)

    # -- §4.3.4 heartbeats ------------------------------------------------------------------

    async def _heartbeats(self, client: aiomqtt.Client) -> None:
        while True:
            await self._heartbeat(client)
            await asyncio.sleep(self.heartbeat_s)

    async def _heartbeat(self, client: aiomqtt.Client) -> None:
        ts = self.now_ms()
        self._hb_sent[ts] = time.monotonic()
        if len(self._hb_sent) > 64:
            self._hb_sent.pop(next(iter(self._hb_sent)))
        await client.publish(self._topic("hb"), cbor2.dumps([self.boot_id, 0, ts, {}]), qos=0)
        self.counters.heartbeats += 1

    # -- §4.1 / §4.6 the store and the sender -----------------------------------------------

    def _enqueue(self, channel: str, body: dict[int, Any]) -> int:
        seq = self._next_seq
        self._next_seq += 1
        payload = cbor2.dumps([self.boot_id, seq, self.now_ms(), body])
        self.queue[(self.boot_id, seq)] = Queued(self.boot_id, seq, channel, payload)
        self._wake.set()
        return seq

    async def _sender(self, client: aiomqtt.Client) -> None:
        while True:
            self._wake.clear()
            now = time.monotonic()
            if self._session_acks:
                for q in self.queue.values():
                    if q.state == "pubacked" and now - q.puback_at >= self.ack_timeout_s:
                        q.state = "new"
                        self.counters.resent += 1
            for key, q in list(self.queue.items()):
                if self._gated:
                    break
                if q.state != "new" or key not in self.queue:
                    continue
                q.state = "inflight"
                # aiomqtt returns once the broker's PUBACK came (a window of one).
                await client.publish(f"ks/v1/d/{self.device_id}/{q.channel}", q.payload, qos=1)
                self.counters.published += 1
                self.sent.add(key)
                self.publishes[(*key, q.channel)] += 1
                q.state, q.puback_at = "pubacked", time.monotonic()
                if not self._session_acks:
                    self.queue.pop(key, None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.2)

    # -- receiving ---------------------------------------------------------------------------

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            channel = str(message.topic).rsplit("/", 1)[-1]
            raw = message.payload if isinstance(message.payload, bytes) else b""
            try:
                if channel == "cmd":
                    await self._on_command(raw)
                    continue
                body = a_map(decode(channel, raw))
                if channel == "boot":
                    self._on_boot(body)
                elif channel == "time":
                    self._on_time(body)
                elif channel == "ack":
                    self._on_ack(body)
                elif channel == "badge":
                    self._on_badge(body)
            except (Malformed, Schema) as e:
                self.counters.bad_cloud_messages += 1
                log.warning("event=foreign_bad_message channel=%s error=%s", channel, e)

    def _on_boot(self, m: dict[Any, Any]) -> None:
        status = int_in(need(m, 0), 1, 3)
        int_in(need(m, 1), 0, U63)
        int_in(need(m, 2), 0, 86400)
        if int_in(need(m, 3), 1, U32) != self.boot_id:
            return  # an answer to another boot's birth
        if 4 in m:
            int_in(m[4], 0, 86400)
        if 5 in m:
            boolean(m[5])
        self.boot_replies.append(m)
        if self.accepted.is_set():
            if status == BootStatus.ACCEPTED:  # the answer to a triggered birth
                self._accepted(m)
            elif self._gated:  # PENDING or REJECTED: the session starts over
                self._reconnect.set()
            return
        self._boot_replies.put_nowait(m)

    def _on_time(self, m: dict[Any, Any]) -> None:
        server = int_in(need(m, 0), 0, U63)
        echoed = int_in(need(m, 1), 0, U63)
        sent = self._hb_sent.pop(echoed, None)
        if sent is None:
            return
        rtt_ms = (time.monotonic() - sent) * 1000
        # §4.3.4: offset = server_time_ms − (device_ts_ms + rtt / 2), applied at once.
        self.offset_ms += int(server - (echoed + rtt_ms / 2))
        self.counters.time_replies += 1

    def _on_ack(self, m: dict[Any, Any]) -> None:
        ranges = need(m, 0)
        if not isinstance(ranges, list) or not 1 <= len(ranges) <= 128:
            raise Schema("1..128 ack ranges expected")
        checked = []
        for r in ranges:
            if not isinstance(r, list) or len(r) != 3:
                raise Schema("an ack range is [boot_id, first, last]")
            boot, first, last = int_in(r[0], 1, U32), int_in(r[1], 1, U32), int_in(r[2], 1, U32)
            if first > last:
                raise Schema("first > last")
            checked.append((boot, first, last))
        if self.ignore_acks:  # a test makes this Ack "lost"
            self.counters.acks_ignored += 1
            return
        self.counters.acks += 1
        for boot, first, last in checked:
            for key in [k for k in self.queue if k[0] == boot and first <= k[1] <= last]:
                del self.queue[key]
            self.acked.update(k for k in self.sent if k[0] == boot and first <= k[1] <= last)

    def _on_badge(self, m: dict[Any, Any]) -> None:
        uid = bytes_in(need(m, 0), 4, 10)
        outcome = int_in(need(m, 1), 1, 3)
        reason = int_in(m[2], 1, 255) if 2 in m else None
        spot = int_in(m[3], 0, 255) if 3 in m else None
        rent_id = text_in(m[4], 0, 40) if 4 in m else None
        self.badge_replies.append(BadgeReply(uid, BadgeOutcome(outcome), reason, spot, rent_id))

    # -- §7 commands -------------------------------------------------------------------------

    async def _on_command(self, raw: bytes) -> None:
        outcome = self.verifier.verify(raw, self.now_ms())
        if isinstance(outcome, Refused):
            self._result(outcome.command_id, None, Result.REJECTED, outcome.reason, outcome.detail)
            return
        if not self.accepted.is_set() or self._gated:
            # §4.3.3: no command before the birth is accepted; refused BUSY, the result
            # sent once the session is accepted.
            self._refuse(outcome, Reject.BUSY, "boot not accepted")
            return
        handler = {
            Command.UNLOCK: self._unlock,
            Command.LOCK: self._lock,
            Command.SET_MAINTENANCE: self._set_maintenance,
            Command.AUTH_LIST_UPDATE: self._auth_list_update,
            Command.CONFIG: self._configure,
            Command.REBOOT: self._reboot,
            Command.TRIGGER_MESSAGE: self._trigger,
        }.get(outcome.ctype)
        if handler is None:
            self._result(outcome.command_id, outcome.ctype, Result.REJECTED, Reject.NOT_SUPPORTED)
            return
        await handler(outcome)

    def _result(
        self,
        cid: bytes,
        ctype: Command | None,
        status: Result,
        reason: Reject | None = None,
        detail: str | None = None,
    ) -> int:
        body: dict[int, Any] = {0: cid, 1: int(status)}
        if reason is not None:
            body[2] = int(reason)
        if detail:
            body[3] = detail[:128]
        seq = self._enqueue("res", body)
        self.results.append(ResultRecord(cid, ctype, status, reason))
        return seq

    def _refuse(self, cmd: Verified, reason: Reject, detail: str) -> None:
        self._result(cmd.command_id, cmd.ctype, Result.REJECTED, reason, detail)

    async def _unlock(self, cmd: Verified) -> None:
        n = cmd.args.get(0, 0)
        spot = self.spots.get(n)
        if spot is None:  # spot 0 or one this station does not have
            self._refuse(cmd, Reject.INVALID_STATE, f"no spot {n}")
            return
        if spot.maintenance or self.station_maintenance:
            self._refuse(cmd, Reject.MAINTENANCE, f"spot {n} in maintenance")
            return
        if spot.serial is None:
            self._refuse(cmd, Reject.INVALID_STATE, f"spot {n} is empty")
            return
        if spot.lock is Lock.OPEN:
            self._refuse(cmd, Reject.BUSY, f"spot {n} is already open")
            return
        self.unlock_windows.append(cmd.args.get(1))
        window = self.config.get("unlock_window_s") or cmd.args.get(1) or 30
        # §4.1.5: the event, the status it changes and the result, in that order.
        self._open(spot, window, command_id=cmd.command_id)
        self._enqueue("evt", {0: Event.UNLOCKED, 1: n, 8: LockCause.COMMAND, 3: cmd.command_id})
        self._queue_status(spot)
        self._result(cmd.command_id, cmd.ctype, Result.DONE)

    def _open(
        self,
        spot: Spot,
        window_s: int,
        *,
        command_id: bytes | None = None,
        badge_uid: bytes | None = None,
    ) -> None:
        spot.lock = Lock.OPEN
        spot.opened_by = (command_id, badge_uid)
        spot.window = self._spawn(self._window(spot, window_s))

    async def _window(self, spot: Spot, window_s: int) -> None:
        await asyncio.sleep(window_s)
        if spot.lock is Lock.OPEN and spot.serial is not None:
            cid, uid = spot.opened_by or (None, None)
            spot.lock, spot.opened_by, spot.window = Lock.LOCKED, None, None
            body: dict[int, Any] = {0: Event.UNLOCK_EXPIRED, 1: spot.number}
            if cid is not None:
                body[3] = cid
            if uid is not None:
                body[4] = uid
            self._enqueue("evt", body)
            self._queue_status(spot)

    async def _lock(self, cmd: Verified) -> None:
        spot = self.spots.get(cmd.args.get(0, 0))
        if spot is None:
            self._refuse(cmd, Reject.INVALID_STATE, "no such spot")
            return
        if spot.window is not None:
            spot.window.cancel()
        spot.lock, spot.opened_by, spot.window = Lock.LOCKED, None, None
        self._queue_status(spot)
        self._result(cmd.command_id, cmd.ctype, Result.DONE)

    async def _set_maintenance(self, cmd: Verified) -> None:
        n, on = cmd.args[0], cmd.args[1]
        if n == 0:
            self.station_maintenance = on
            self._queue_station_status()
        elif n in self.spots:
            self.spots[n].maintenance = on
            self._queue_status(self.spots[n])
        else:
            self._refuse(cmd, Reject.INVALID_STATE, f"no spot {n}")
            return
        self._result(cmd.command_id, cmd.ctype, Result.DONE)

    async def _auth_list_update(self, cmd: Verified) -> None:
        kind, version = cmd.args[0], cmd.args[1]
        add = set(cmd.args.get(3, []))
        if kind == AUTH_FULL:
            self.auth = AuthList(version, add)
        elif cmd.args.get(2) != self.auth.version:
            self._refuse(cmd, Reject.VERSION_MISMATCH, f"holding {self.auth.version}")
            self.auth_updates.append((kind, version, Result.REJECTED, Reject.VERSION_MISMATCH))
            return
        else:
            self.auth = AuthList(version, (self.auth.uids | add) - set(cmd.args.get(4, [])))
        self.auth_updates.append((kind, version, Result.DONE, None))
        self._result(cmd.command_id, cmd.ctype, Result.DONE)

    async def _configure(self, cmd: Verified) -> None:
        values: dict[str, Any] = cmd.args.get(1, {})
        unknown = sorted(k for k in values if k not in CONFIG_KEYS)
        if unknown:
            self._refuse(cmd, Reject.NOT_SUPPORTED, "unknown keys: " + ", ".join(unknown))
            return
        for k, v in values.items():
            kind = CONFIG_KEYS[k]
            ok = (
                (kind == "bool" and isinstance(v, bool))
                or (kind == "int" and isinstance(v, int) and not isinstance(v, bool))
                or (kind == "float" and isinstance(v, int | float) and not isinstance(v, bool))
            )
            if not ok:
                self._refuse(cmd, Reject.MALFORMED, f"{k}: {kind} expected")
                return
        self.config.update(values)
        self.config_version = cmd.args[0]
        self._result(cmd.command_id, cmd.ctype, Result.DONE)

    async def _reboot(self, cmd: Verified) -> None:
        seq = self._result(cmd.command_id, cmd.ctype, Result.DONE)
        key = (self.boot_id, seq)

        async def restart() -> None:
            # The DONE leaves before the restart (its PUBACK, at most a few seconds).
            with contextlib.suppress(AssertionError):
                await self.wait_for(
                    lambda: key not in self.queue or self.queue[key].state == "pubacked", 5
                )
            self._rebooting = True
            self._reconnect.set()

        self._spawn(restart())

    async def _trigger(self, cmd: Verified) -> None:
        which, n = cmd.args[0], cmd.args.get(1, 0)
        client = self._client
        if which == Trigger.STATUS:
            if n and n not in self.spots:
                self._refuse(cmd, Reject.INVALID_STATE, f"no spot {n}")
                return
            if n:
                self._queue_station_status()
                self._queue_status(self.spots[n])
            else:
                self._queue_all_status()
        elif which == Trigger.TELEMETRY:
            self._enqueue("tlm", {11: [[s, 215] for s in self.spots]})
        elif client is not None and which == Trigger.HEARTBEAT:
            await self._heartbeat(client)
        elif client is not None and which == Trigger.BIRTH:
            # §7.4: a triggered birth gates like any birth (§4.3.3): nothing is sent until
            # its BootReply (the result of this command included).
            self._result(cmd.command_id, cmd.ctype, Result.DONE)
            self._gated = True
            self._birth_sent_at = time.monotonic()
            await client.publish(self._topic("birth"), self._birth(), qos=1)
            return
        self._result(cmd.command_id, cmd.ctype, Result.DONE)

    # -- §4.4 status -------------------------------------------------------------------------

    def _queue_station_status(self) -> None:
        state = DeviceState.MAINTENANCE if self.station_maintenance else DeviceState.OPERATIVE
        self._enqueue("status", {0: 0, 1: int(state)})

    def _queue_status(self, spot: Spot) -> None:
        if spot.maintenance:
            state = SpotState.MAINTENANCE
        elif spot.serial is None:
            state = SpotState.EMPTY
        elif spot.lock is Lock.OPEN:
            state = SpotState.UNLOCKED_AWAITING_REMOVAL
        else:
            state = SpotState.DOCKED_LOCKED
        body: dict[int, Any] = {0: spot.number, 1: int(state), 2: int(spot.lock)}
        if spot.serial is not None:
            body[3] = spot.serial
        self._enqueue("status", body)

    def _queue_all_status(self) -> None:
        self._queue_station_status()
        for spot in self.spots.values():
            self._queue_status(spot)

    # -- the street (what a test does to the station) ----------------------------------------

    def take(self, n: int) -> str:
        """A rider takes the vehicle out of an open spot: VehicleRemoved (§4.5)."""
        spot = self.spots[n]
        assert spot.serial is not None and spot.lock is Lock.OPEN, f"spot {n} not open"
        serial, (cid, uid) = spot.serial, spot.opened_by or (None, None)
        if spot.window is not None:
            spot.window.cancel()
        spot.serial, spot.window, spot.opened_by, spot.lock = None, None, None, Lock.LOCKED
        body: dict[int, Any] = {0: Event.VEHICLE_REMOVED, 1: n, 2: serial}
        if uid is not None:  # key order of the §6 table: 4 before 3
            body[4] = uid
        if cid is not None:
            body[3] = cid
        self._enqueue("evt", body)
        self._queue_status(spot)
        return serial

    def dock(self, n: int, serial: str) -> None:
        """A vehicle pushed into an empty spot latches: VehicleDocked (§4.4: on every
        docking) and the spot's status."""
        spot = self.spots[n]
        assert spot.serial is None, f"spot {n} is taken"
        spot.serial, spot.lock = serial, Lock.LOCKED
        self._enqueue("evt", {0: Event.VEHICLE_DOCKED, 1: n, 2: serial})
        self._queue_status(spot)

    async def present_badge(self, uid: bytes, wait_s: float = 5.0) -> BadgeReply | None:
        """A badge at the reader (§4.7). Online: BadgePresented and the cloud's answer (None
        if none came within ``wait_s``: "try again"). Offline: the local list decides."""
        if self.accepted.is_set():
            before = len(self.badge_replies)
            self._enqueue(
                "evt",
                {0: Event.BADGE_PRESENTED, 4: uid, 5: uid in self.auth.uids, 6: False, 1: 0},
            )
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                for reply in self.badge_replies[before:]:
                    if reply.uid == uid:
                        return reply
                await asyncio.sleep(0.02)
            return None
        allowed = uid in self.auth.uids or bool(self.config.get("offline_allow_unknown"))
        spot = None
        if allowed and not self.station_maintenance:
            spot = next(
                (
                    s
                    for s in self.spots.values()
                    if s.serial and s.lock is Lock.LOCKED and not s.maintenance
                ),
                None,
            )
        number = spot.number if spot else 0
        self._enqueue(
            "evt",
            {0: Event.BADGE_PRESENTED, 4: uid, 5: uid in self.auth.uids, 6: True, 1: number},
        )
        if spot is None:
            return BadgeReply(uid, BadgeOutcome.REFUSED, None, None, None)
        self._open(spot, int(self.config.get("offline_window_s", 30)), badge_uid=uid)
        self._enqueue("evt", {0: Event.UNLOCKED, 1: number, 8: LockCause.OFFLINE_BADGE, 4: uid})
        self._queue_status(spot)
        return BadgeReply(uid, BadgeOutcome.UNLOCKING, None, number, None)

    async def wait_for(self, check: Callable[[], bool], wait_s: float = 10.0) -> None:
        deadline = time.monotonic() + wait_s
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"foreign station {self.device_id}: not within {wait_s} s")
            await asyncio.sleep(0.02)

    # -- helpers -----------------------------------------------------------------------------

    def _topic(self, channel: str) -> str:
        return f"ks/v1/d/{self.device_id}/{channel}"

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _new_boot_id() -> int:
    return secrets.randbelow(U32) + 1  # 1..2^32−1, never 0 (§3)
