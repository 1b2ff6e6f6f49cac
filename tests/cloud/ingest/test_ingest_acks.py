"""End-to-end acknowledgement (SPEC §4.6) from real workers through real Mosquitto: a device
whose birth asked for Acks gets one per batch for every sequenced message whose fate is
committed — applied, duplicate or dead letter — and nothing before the commit; a device
that did not ask gets none."""

from __future__ import annotations

import asyncio

import cbor2
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud import metrics
from kickstand.cloud.ingest.tables import DeadLetter
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m
from kickstand.testing import MosquittoService
from tests.cloud.ingest.conftest import WorkerFactory
from tests.cloud.ingest.fakes import FakeDevice, now_ms

Maker = async_sessionmaker[AsyncSession]


def birth(acks: bool) -> m.Birth:
    return m.Birth(kind=pe.DeviceKind.STATION, firmware="2.0.0", hardware="v1", acks=acks)


async def acked(dev: FakeDevice, want: set[tuple[int, int]], wait_s: float = 10.0) -> int:
    """Read Acks until ``want`` (boot_id, seq) are covered; returns how many Acks it took."""
    seen: set[tuple[int, int]] = set()
    count = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while not want <= seen:
        ack = await dev.expect(Channel.ACK, wait_s=max(0.1, deadline - loop.time()))
        count += 1
        for r in ack.ranges:
            seen.update((r.boot_id, s) for s in range(r.first, r.last + 1))
    return count


async def test_acks_cover_applied_duplicate_and_dead_lettered_messages(
    mosquitto: MosquittoService, start_worker: WorkerFactory, pg_sessionmaker: Maker
) -> None:
    worker = await start_worker()
    async with FakeDevice(mosquitto.host, mosquitto.port, "st-0001", boot_id=41) as dev:
        await dev.send(birth(acks=True))
        reply = await dev.expect(Channel.BOOT)
        assert reply.status is pe.BootStatus.ACCEPTED and reply.acks is True
        for seq in range(1, 6):
            await dev.send(m.PowerCut(), seq=seq)
        await dev.send(m.Status(spot=1, state=pe.SpotState.EMPTY), seq=6)
        await acked(dev, {(41, s) for s in range(1, 7)})
        # A resend (no Ack seen, say) is a duplicate: Acked again.
        await dev.send(m.PowerCut(), seq=3)
        await acked(dev, {(41, 3)})
        # A payload the codec refuses but whose stamp is readable: a dead letter, Acked.
        await dev.raw(Channel.EVENT, cbor2.dumps([41, 7, now_ms(), {0: 9999}]))
        await acked(dev, {(41, 7)})
    assert worker.stats.duplicates == 1
    assert worker.stats.acks_sent >= 3
    assert 0 <= worker.stats.lag_s <= worker.stats.oldest_s < 30
    exported = worker.stats.export()
    assert exported["acks_sent"] == worker.stats.acks_sent
    assert exported["dead_lettered"] == {"unknown-type": 1}
    scraped = metrics.render().decode()  # what Prometheus reads, rejections logged or not
    assert f'kickstand_ingest_acks_sent_total{{worker="{worker.client_id}"}}' in scraped
    assert "kickstand_ingest_lag_s{" in scraped
    async with pg_sessionmaker() as s:
        letter = (await s.scalars(select(DeadLetter))).one()
    assert (letter.boot_id, letter.seq, letter.reason) == (41, 7, "unknown-type")


async def test_a_device_that_did_not_ask_gets_no_acks(
    mosquitto: MosquittoService, start_worker: WorkerFactory
) -> None:
    worker = await start_worker()
    async with FakeDevice(mosquitto.host, mosquitto.port, "st-0002", boot_id=42) as dev:
        await dev.send(birth(acks=False))
        reply = await dev.expect(Channel.BOOT)
        assert reply.acks is None
        await dev.send(m.PowerCut(), seq=1)
        await dev.send(m.Heartbeat())
        await dev.expect(Channel.TIME)  # the worker is past the event's batch
        with pytest.raises(TimeoutError):
            await dev.expect(Channel.ACK, wait_s=0.5)
    assert worker.stats.acks_sent == 0
