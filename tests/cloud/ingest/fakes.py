"""A scripted device at the MQTT wire (for ingest and command tests): it publishes encoded
v1 messages under its own client id, as a real agent does, and records what it receives."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

import aiomqtt

from kickstand.cloud.ingest.batch import Inbound
from kickstand.protocol import topics
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1 import messages as m


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def inbound(
    device: str, body: m.UpBody, seq: int, *, boot: int = 5, ts_ms: int | None = None
) -> Inbound:
    """A decoded message as ingest's batch holds it (for tests that call the applier)."""
    channel = codec.channel_of(body)
    stamp = m.Stamp(boot, seq if channel in codec.SEQUENCED_CHANNELS else 0, ts_ms or now_ms())
    return Inbound(device, channel, m.UpMessage(stamp, body))


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


class FakeDevice:
    def __init__(self, host: str, port: int, device_id: str, boot_id: int = 1) -> None:
        self.device_id = device_id
        self.boot_id = boot_id
        self.seq = 0
        self._client = aiomqtt.Client(host, port, identifier=device_id, clean_session=True)
        self.received: dict[Channel, asyncio.Queue[bytes]] = {
            ch: asyncio.Queue() for ch in (Channel.BOOT, Channel.TIME, Channel.COMMAND, Channel.ACK)
        }
        self._reader: asyncio.Task[None] | None = None
        #: Called with each command payload; may publish a result.
        self.on_command: Callable[[bytes], Awaitable[None]] | None = None

    async def __aenter__(self) -> Self:
        await self._client.__aenter__()
        await self._client.subscribe(topics.device_subscriptions(self.device_id), qos=1)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._client.__aexit__(et, e, tb)

    async def _read(self) -> None:
        async for message in self._client.messages:
            channel = topics.parse(str(message.topic)).channel
            payload = bytes(message.payload)  # type: ignore[arg-type]
            if channel is Channel.COMMAND and self.on_command is not None:
                await self.on_command(payload)
            self.received[channel].put_nowait(payload)

    def stamp(self, body: Any, *, seq: int | None = None, ts_ms: int | None = None) -> m.Stamp:
        if codec.channel_of(body) in codec.SEQUENCED_CHANNELS:
            if seq is None:
                self.seq += 1
                seq = self.seq
        else:
            seq = 0
        return m.Stamp(self.boot_id, seq, ts_ms if ts_ms is not None else now_ms())

    async def send(
        self, body: Any, *, seq: int | None = None, ts_ms: int | None = None, qos: int = 1
    ) -> bytes:
        payload = codec.encode_up(self.stamp(body, seq=seq, ts_ms=ts_ms), body)
        await self.raw(codec.channel_of(body), payload, qos=qos)
        return payload

    async def raw(self, channel: Channel, payload: bytes, qos: int = 1) -> None:
        await self._client.publish(topics.up(self.device_id, channel), payload, qos=qos)

    async def expect(self, channel: Channel, wait_s: float = 5.0) -> Any:
        data = await asyncio.wait_for(self.received[channel].get(), wait_s)
        if channel is Channel.COMMAND:
            return data
        return codec.decode_down(channel, data)


async def eventually(check: Callable[[], Awaitable[bool]], wait_s: float = 10.0) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {wait_s} s")
        await asyncio.sleep(0.05)
