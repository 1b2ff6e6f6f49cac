"""A minimal cloud peer for edge tests, rigs and demos (not the real cloud).

It logs in to the broker as the cloud, answers births (BootReply) and heartbeats
(TimeReply), signs commands and collects every device message, deduplicated the
way the real ingest does (SequenceTracker, ``delivered_below`` on births).

    async with CloudPeer(host, port, username=..., password=...) as cloud:
        cid = await cloud.send_command("st-0001", Unlock(spot=3))
        result = await cloud.wait_result(cid)
        evt = await cloud.wait_for("st-0001", lambda m: isinstance(m.body, VehicleRemoved))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from kickstand.protocol import topics
from kickstand.protocol.errors import ProtocolError
from kickstand.protocol.sequence import SequenceTracker, Verdict
from kickstand.protocol.signing import CommandSigner, generate_private_key
from kickstand.protocol.topics import Channel
from kickstand.protocol.transport import SOCKET_OPTIONS
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1.enums import BootStatus
from kickstand.protocol.v1.messages import (
    BadgeReply,
    Birth,
    BootReply,
    CommandBody,
    CommandEnvelope,
    CommandResult,
    Heartbeat,
    TimeReply,
    UpMessage,
)

log = logging.getLogger("kickstand.simulators.station.cloudpeer")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class Received:
    device_id: str
    channel: Channel
    message: UpMessage
    new: bool  # False: a duplicate by (boot, seq)

    @property
    def body(self) -> Any:
        return self.message.body


@dataclass(slots=True)
class DeviceView:
    births: list[Birth] = field(default_factory=list)
    messages: list[Received] = field(default_factory=list)  # deduplicated, arrival order
    duplicates: int = 0
    deaths: int = 0
    heartbeats: int = 0


class CloudPeer:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        signer: CommandSigner | None = None,
        boot_status: BootStatus = BootStatus.ACCEPTED,
        heartbeat_s: int = 60,
        retry_after_s: int = 1,
        client_id: str | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.signer = signer or CommandSigner(generate_private_key())
        self.boot_status = boot_status
        self.heartbeat_s = heartbeat_s
        self.retry_after_s = retry_after_s
        self.client_id = client_id or f"cloudpeer-{secrets.token_hex(4)}"
        self.devices: dict[str, DeviceView] = {}
        self.tracker = SequenceTracker()
        self.invalid = 0
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self.connected = asyncio.Event()

    @property
    def public_key_hex(self) -> str:
        return self.signer.public_key.hex()

    def view(self, device_id: str) -> DeviceView:
        return self.devices.setdefault(device_id, DeviceView())

    async def __aenter__(self) -> CloudPeer:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.connected.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        """Stay connected: a broker restart only pauses the peer (state is kept)."""
        while True:
            client = aiomqtt.Client(
                self.host,
                self.port,
                username=self.username,
                password=self.password,
                identifier=self.client_id,
                socket_options=SOCKET_OPTIONS,
            )
            try:
                async with client:
                    await client.subscribe(f"{topics.ROOT}/d/+/+", qos=1)
                    self._client = client
                    self.connected.set()
                    await self._read(client)
            except aiomqtt.MqttError as exc:
                log.info("cloudpeer_disconnected error=%s", exc)
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(0.2)

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            try:
                topic = topics.parse(str(message.topic))
                payload = message.payload
                assert isinstance(payload, bytes | bytearray)
                up = codec.decode_up(topic.channel, bytes(payload))
            except (ProtocolError, AssertionError) as exc:
                self.invalid += 1
                log.warning("cloudpeer_invalid topic=%s error=%s", message.topic, exc)
                continue
            try:
                await self._on_up(topic.device_id, topic.channel, up)
            except aiomqtt.MqttError:
                raise
            except Exception:
                log.exception("cloudpeer_handler_failed")

    async def _on_up(self, device_id: str, channel: Channel, up: UpMessage) -> None:
        view = self.view(device_id)
        assert self._client is not None
        if isinstance(up.body, Birth):
            view.births.append(up.body)
            self.tracker.boot(device_id, up.stamp.boot_id).delivered_below(up.body.pending_from)
            reply = BootReply(
                self.boot_status,
                now_ms(),
                self.heartbeat_s,
                up.stamp.boot_id,
                self.retry_after_s if self.boot_status is BootStatus.PENDING else None,
            )
            await self._client.publish(
                topics.down(device_id, Channel.BOOT), codec.encode_down(reply), qos=1
            )
        elif isinstance(up.body, Heartbeat):
            view.heartbeats += 1
            await self._client.publish(
                topics.down(device_id, Channel.TIME),
                codec.encode_down(TimeReply(now_ms(), up.stamp.ts_ms)),
                qos=0,
            )
        elif channel is Channel.DEATH:
            view.deaths += 1
        elif channel in codec.SEQUENCED_CHANNELS:
            verdict = self.tracker.accept(device_id, up.stamp.boot_id, up.stamp.seq)
            if verdict is Verdict.NEW:
                view.messages.append(Received(device_id, channel, up, True))
            else:
                view.duplicates += 1
        async with self._changed:
            self._changed.notify_all()

    # ---------------------------------------------------------------- commands

    def envelope(
        self,
        device_id: str,
        command: CommandBody,
        *,
        command_id: bytes | None = None,
        ttl_ms: int = 30_000,
        issued_at_ms: int | None = None,
    ) -> CommandEnvelope:
        issued = now_ms() if issued_at_ms is None else issued_at_ms
        return CommandEnvelope(
            command_id or secrets.token_bytes(16), device_id, issued, issued + ttl_ms, command
        )

    async def send_command(
        self, device_id: str, command: CommandBody, **kwargs: Any
    ) -> bytes:
        envelope = self.envelope(device_id, command, **kwargs)
        await self.send_raw(device_id, self.signer.sign(envelope))
        return envelope.command_id

    async def send_envelope(self, envelope: CommandEnvelope, device_id: str | None = None) -> None:
        await self.send_raw(device_id or envelope.device_id, self.signer.sign(envelope))

    async def send_raw(self, device_id: str, payload: bytes) -> None:
        await self.send_down(device_id, Channel.COMMAND, payload)

    async def send_badge_reply(self, device_id: str, reply: BadgeReply) -> None:
        """The cloud's answer to a badge (SPEC §4.7), on ``ks/v1/c/<id>/badge``."""
        await self.send_down(device_id, Channel.BADGE, codec.encode_down(reply))

    async def send_down(self, device_id: str, channel: Channel, payload: bytes) -> None:
        await asyncio.wait_for(self.connected.wait(), 10)
        assert self._client is not None
        await self._client.publish(topics.down(device_id, channel), payload, qos=1)

    # ---------------------------------------------------------------- waiting

    def bodies(self, device_id: str, kind: type | tuple[type, ...] = object) -> list[Any]:
        return [r.body for r in self.view(device_id).messages if isinstance(r.body, kind)]

    async def wait_for(
        self,
        device_id: str,
        predicate: Callable[[Received], bool],
        within: float = 10.0,
        start: int = 0,
    ) -> Received:
        """The first deduplicated message (from index ``start``) matching ``predicate``."""
        async with asyncio.timeout(within):
            async with self._changed:
                while True:
                    for r in self.view(device_id).messages[start:]:
                        if predicate(r):
                            return r
                    await self._changed.wait()

    async def wait_until(self, condition: Callable[[], bool], within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            async with self._changed:
                while not condition():
                    await self._changed.wait()

    async def wait_result(
        self, device_id: str, command_id: bytes, within: float = 10.0
    ) -> CommandResult:
        r = await self.wait_for(
            device_id,
            lambda r: isinstance(r.body, CommandResult) and r.body.command_id == command_id,
            within,
        )
        result: CommandResult = r.body
        return result

    async def wait_birth(self, device_id: str, count: int = 1, within: float = 10.0) -> Birth:
        await self.wait_until(lambda: len(self.view(device_id).births) >= count, within)
        return self.view(device_id).births[-1]


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Poll a condition of local state (queue depth, a flag) until it holds."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - polls state no event announces
            await asyncio.sleep(0.02)
