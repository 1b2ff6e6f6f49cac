"""The live feed on PostgreSQL: an outbox row committed after a row with a higher id was read
(ids are drawn at insert, rows seen at commit) still reaches the browsers, once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.console.live import LiveEvent, LiveFeed, Subscriber
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.models import OutboxEvent

pytestmark = pytest.mark.postgres


@pytest.fixture
async def maker(pg_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(pg_url)
    async with engine.begin() as conn:
        # The outbox alone: the feed reads nothing else.
        await conn.run_sync(OutboxEvent.__table__.create)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


def station_updated(station_id: int) -> OutboxEvent:
    return OutboxEvent(
        topic="station.updated", resource_type="station", resource_id=str(station_id),
        payload={"network_id": 1, "station_id": station_id},
    )  # fmt: skip


async def next_event(subscriber: Subscriber) -> LiveEvent:
    event = await asyncio.wait_for(subscriber.queue.get(), 5)
    assert event is not None
    return event


async def test_a_row_committed_after_a_higher_id_was_read_is_delivered_once(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    feed = LiveFeed(maker, poll_s=0.02)
    try:
        async with feed.subscribe(frozenset({1}), None) as browser:
            assert await feed._wait_started()
            async with maker() as slow, maker() as quick:
                slow.add(station_updated(1))
                await slow.flush()  # its id drawn, not visible until it commits
                quick.add(station_updated(2))
                await quick.flush()
                await quick.commit()
                first = await next_event(browser)
                assert first.resource_id == "2"
                await asyncio.sleep(0.2)  # the feed reads past the slow row's id, many times
                assert browser.queue.empty()
                await slow.commit()
            late = await next_event(browser)
            assert late.resource_id == "1" and late.id < first.id
            assert late.read_after == first.id
            # The browser's Last-Event-ID does not go back (its data names the row).
            assert late.sse().startswith(f"id: {first.id}\n")
            assert f'"id":{late.id},' in late.sse()
            await asyncio.sleep(0.2)
            assert browser.queue.empty()  # each once
            assert feed.stats.events_late == 1

            # A browser that left having seen the higher id gets the late row on reconnecting
            # (read from the feed's memory).
            async with feed.subscribe(frozenset({1}), None, after=first.id) as back:
                again = back.queue.get_nowait()
                assert again is not None and again.id == late.id and not back.gap
                assert back.queue.empty()
    finally:
        await feed.close()


async def test_a_rolled_back_id_is_looked_for_a_while_then_forgotten(
    maker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kickstand.cloud.console.live.GAP_S", 0.3)
    feed = LiveFeed(maker, poll_s=0.02)
    try:
        async with feed.subscribe(frozenset({1}), None) as browser:
            assert await feed._wait_started()
            async with maker() as aborted:
                aborted.add(station_updated(1))
                await aborted.flush()
                await aborted.rollback()
            async with maker() as session:
                session.add(station_updated(2))
                await session.commit()
            assert (await next_event(browser)).resource_id == "2"
            assert feed._gaps
            await asyncio.sleep(0.6)
            assert not feed._gaps and feed.stats.gaps_expired == 1
            assert browser.queue.empty()
    finally:
        await feed.close()
