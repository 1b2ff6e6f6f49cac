"""End-to-end acks (SPEC §4.6) between CloudLink and a test cloud, over the real Mosquitto.

The test cloud answers births with BootReply(acks=...) and acknowledges only when
the test says so: what the broker PUBACKed but the cloud never acked must come again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from kickstand.edge.core import DeviceClock, DiskQueue, SqliteReplayGuard
from kickstand.edge.core.health import HealthServer, fetch_status
from kickstand.edge.core.link import CloudLink, CommandRouter, LinkConfig
from kickstand.protocol import topics
from kickstand.protocol.signing import CommandSigner, CommandVerifier, generate_private_key, key_id
from kickstand.protocol.topics import Channel
from kickstand.protocol.transport import SOCKET_OPTIONS
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1.enums import BootStatus, DeviceKind
from kickstand.protocol.v1.messages import AlarmTriggered, Birth, BootReply, Stamp
from kickstand.simulators.station.cloudpeer import eventually, now_ms
from kickstand.testing import MosquittoService

DEVICE = "st-acks01"


@dataclass(frozen=True, slots=True)
class Copy:
    """One copy of a sequenced message as the cloud received it."""

    stamp: Stamp
    payload: bytes
    at: float  # monotonic receive time

    @property
    def key(self) -> tuple[int, int]:
        return (self.stamp.boot_id, self.stamp.seq)


@dataclass(slots=True)
class AckCloud:
    """A cloud that answers births with ``acks`` and acks only on request.

    ``client_id`` with ``clean_session=False`` is an ingest with a persistent session:
    while it is away the broker holds (in memory) what the device published.
    """

    broker: MosquittoService
    acks: bool | None = True
    client_id: str = "ack-cloud"
    clean_session: bool = True
    births: list[Birth] = field(default_factory=list)
    copies: list[Copy] = field(default_factory=list)
    _client: aiomqtt.Client | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[AckCloud]:
        client = aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            username=self.broker.cloud_username,
            password=self.broker.cloud_password,
            identifier=self.client_id,
            clean_session=self.clean_session,
            socket_options=SOCKET_OPTIONS,
        )
        async with client:
            await client.subscribe(f"{topics.ROOT}/d/+/+", qos=1)
            self._client = client
            reader = asyncio.create_task(self._read(client))
            try:
                yield self
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                self._client = None

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = topics.parse(str(message.topic))
            assert isinstance(message.payload, bytes)
            up = codec.decode_up(topic.channel, message.payload)
            if isinstance(up.body, Birth):
                self.births.append(up.body)
                reply = BootReply(BootStatus.ACCEPTED, now_ms(), 60, up.stamp.boot_id,
                                  acks=self.acks)
                await client.publish(topics.down(topic.device_id, Channel.BOOT),
                                     codec.encode_down(reply), qos=1)
            elif topic.channel in codec.SEQUENCED_CHANNELS:
                self.copies.append(Copy(up.stamp, message.payload, time.monotonic()))

    async def ack(self, keys: Iterable[tuple[int, int]]) -> None:
        assert self._client is not None
        for ack in codec.acks_for(keys):
            await self._client.publish(topics.down(DEVICE, Channel.ACK),
                                       codec.encode_down(ack), qos=0)

    def copies_of(self, key: tuple[int, int]) -> list[Copy]:
        return [c for c in self.copies if c.key == key]

    def keys(self) -> set[tuple[int, int]]:
        return {c.key for c in self.copies}


@contextlib.asynccontextmanager
async def running_link(
    broker: MosquittoService, state: Path, **config: Any
) -> AsyncIterator[CloudLink]:
    clock = DeviceClock()
    queue = DiskQueue(state / "queue.db", clock=clock.now_ms)
    guard = SqliteReplayGuard(state / "replay.db")
    pub = CommandSigner(generate_private_key()).public_key
    link = CloudLink(
        LinkConfig(DEVICE, broker.host, broker.port, reconnect_min_s=0.1, reconnect_max_s=0.5,
                   boot_timeout_s=1, **config),
        queue=queue,
        birth=lambda: Birth(DeviceKind.STATION, "1.0", "sim"),
        verifier=CommandVerifier(DEVICE, {key_id(pub): pub}, guard, clock=clock.now_ms),
        router=CommandRouter(),
        clock=clock,
    )
    task = asyncio.create_task(link.run())
    try:
        yield link
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        queue.close()
        guard.close()


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    await eventually(condition, within)


async def test_unacked_is_republished_after_the_timeout_same_bytes_then_deleted_on_ack(
    mosquitto: MosquittoService, tmp_path: Path
) -> None:
    cloud = AckCloud(mosquitto)
    async with cloud.running(), running_link(mosquitto, tmp_path, ack_timeout_s=1.0) as link:
        await asyncio.wait_for(link.accepted.wait(), 5)
        assert cloud.births[-1].acks is True and link.acks_on
        stamp = link.emit(AlarmTriggered("door"))
        key = (stamp.boot_id, stamp.seq)
        await until(lambda: link.counters.published == 1)  # the broker's PUBACK
        assert link.queue.depth() == 1  # … deletes nothing
        await until(lambda: len(cloud.copies_of(key)) == 3, within=4)
        first, second, third = cloud.copies_of(key)
        assert first.payload == second.payload == third.payload  # original stamp and bytes
        assert first.stamp == stamp
        # at most once per ack_timeout_s (1 s): no resend in a hot loop
        assert second.at - first.at > 0.9 and third.at - second.at > 0.9
        assert link.counters.republished == 2

        await cloud.ack([key])
        await until(lambda: link.queue.depth() == 0)
        assert (link.counters.acks, link.counters.acknowledged) == (1, 1)
        copies = len(cloud.copies)
        await asyncio.sleep(1.5)
        assert len(cloud.copies) == copies  # acknowledged: never again


async def test_republication_goes_through_the_window_oldest_first_without_spinning(
    mosquitto_private: MosquittoService, tmp_path: Path
) -> None:
    broker = mosquitto_private
    cloud = AckCloud(broker)
    async with cloud.running(), running_link(broker, tmp_path, ack_timeout_s=0.5,
                                             publish_window=4) as link:
        await asyncio.wait_for(link.accepted.wait(), 5)
        broker.pause()  # no PUBACK comes back: the window fills and stays full
        try:
            stamps = [link.emit(AlarmTriggered(f"a{i}")) for i in range(10)]
            await until(lambda: link.snapshot()["link"]["awaiting_puback"] == 4)
            cpu = time.process_time()
            await asyncio.sleep(1.5)  # three timeouts: the four out are stale, still in flight
            assert time.process_time() - cpu < 0.3  # waiting, not spinning
            assert link.snapshot()["link"]["awaiting_puback"] == 4
            assert link.counters.republished == 0  # nothing duplicated while awaiting PUBACKs
        finally:
            broker.resume()
        keys = [(s.boot_id, s.seq) for s in stamps]
        await until(lambda: cloud.keys() == set(keys))
        await until(lambda: len(cloud.copies) >= 20, within=5)  # a second round after 0.5 s
        rounds = [c.key for c in cloud.copies]
        assert rounds[:10] == keys and rounds[10:20] == keys  # oldest first, both times
        await cloud.ack(keys)
        await until(lambda: link.queue.depth() == 0)


async def test_broker_killed_after_puback_before_ack_loses_nothing(
    mosquitto_private: MosquittoService, tmp_path: Path
) -> None:
    broker = mosquitto_private
    # An ingest with a persistent session that is away: the broker PUBACKs and holds the
    # messages for it in memory, which a kill -9 loses.
    cloud = AckCloud(broker, client_id="ingest-1", clean_session=False)
    async with running_link(broker, tmp_path) as link:  # ack_timeout_s: the default 30 s
        health = HealthServer(link.snapshot)
        await health.start()
        try:
            async with cloud.running():
                await asyncio.wait_for(link.accepted.wait(), 5)
            stamps = [link.emit(AlarmTriggered(f"a{i}")) for i in range(10)]
            await until(lambda: link.counters.published == 10)  # all PUBACKed
            assert link.queue.depth() == 10 and not cloud.copies
            sent = {m.key: m.payload for m in link.queue.pending(100)}

            broker.kill()
            broker.start()
            async with cloud.running():
                await until(lambda: link.counters.republished == 10, within=10)
                await until(lambda: cloud.keys() == set(sent), within=5)
                assert {c.key: c.payload for c in cloud.copies} == sent  # the same bytes
                assert link.queue.depth() == 10  # the broker's PUBACK is not the cloud's Ack

                status = await asyncio.to_thread(fetch_status, f"http://127.0.0.1:{health.port}")
                assert status["link"]["reconnects"] >= 1
                assert status["link"]["end_to_end_acks"] is True
                assert status["link"]["republished"] == 10
                assert status["queue"]["depth"] == 10 and status["queue"]["awaiting_ack"] == 10
                assert status["queue"]["oldest_unacked_s"] >= 0

                keys = [(s.boot_id, s.seq) for s in stamps]
                await cloud.ack(keys[:4])
                await until(lambda: link.queue.depth() == 6)
                assert link.queue.pending_from() == keys[4][1]  # the lowest seq still queued
                await cloud.ack(keys[4:])
                await until(lambda: link.queue.depth() == 0)
                status = await asyncio.to_thread(fetch_status, f"http://127.0.0.1:{health.port}")
                assert status["queue"]["oldest_unacked_s"] is None
                assert status["link"]["acknowledged"] == 10
        finally:
            await health.stop()


async def test_an_older_cloud_keeps_delete_on_puback(
    mosquitto: MosquittoService, tmp_path: Path
) -> None:
    cloud = AckCloud(mosquitto, acks=None)  # a BootReply without key 5
    async with cloud.running(), running_link(mosquitto, tmp_path, ack_timeout_s=0.5) as link:
        await asyncio.wait_for(link.accepted.wait(), 5)
        assert cloud.births[-1].acks is True and not link.acks_on
        stamp = link.emit(AlarmTriggered("old"))
        await until(lambda: link.queue.depth() == 0)  # gone on the broker's PUBACK
        await asyncio.sleep(1.0)
        assert [c.key for c in cloud.copies] == [(stamp.boot_id, stamp.seq)]  # sent once
        assert link.snapshot()["link"]["end_to_end_acks"] is False


async def test_a_device_with_acks_off_ignores_the_clouds_offer(
    mosquitto: MosquittoService, tmp_path: Path
) -> None:
    cloud = AckCloud(mosquitto, acks=True)
    async with cloud.running(), running_link(mosquitto, tmp_path, acks=False) as link:
        await asyncio.wait_for(link.accepted.wait(), 5)
        assert cloud.births[-1].acks is False and not link.acks_on
        link.emit(AlarmTriggered("old device"))
        await until(lambda: link.queue.depth() == 0)


async def test_a_clock_set_back_does_not_make_every_message_due(
    mosquitto: MosquittoService, tmp_path: Path
) -> None:
    cloud = AckCloud(mosquitto)
    async with cloud.running(), running_link(mosquitto, tmp_path) as link:
        await asyncio.wait_for(link.accepted.wait(), 5)
        link.clock.offset_ms -= 60_000  # a TimeReply corrects a clock that ran a minute ahead
        for i in range(3):
            link.emit(AlarmTriggered(f"c{i}"))
        await until(lambda: link.counters.published == 3)
        await asyncio.sleep(0.5)
        assert len(cloud.copies) == 3 and link.counters.republished == 0
        assert link.queue.depth() == 3  # still awaiting the Ack, not resent meanwhile
