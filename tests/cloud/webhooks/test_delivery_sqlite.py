"""The embedded default: one delivery worker over the SQLite database."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.models import OutboxEvent
from kickstand.cloud.webhooks import service
from kickstand.cloud.webhooks.delivery import WebhookWorker, start_worker
from kickstand.cloud.webhooks.models import DeliveryStatus, WebhookDelivery
from kickstand.cloud.webhooks.receiver import Receiver

from .conftest import FAST, run_until, wait_for, write_events


async def test_one_worker_on_sqlite_delivers_in_order_after_failures(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    with Receiver(behaviour=lambda n, _e: (500 if n in (0, 2, 5) else 200, 0.0)) as receiver:
        async with sessionmaker() as session, session.begin():
            endpoint = await service.create_endpoint(session, url=receiver.url, topics=["dock.*"])
        receiver.secret = endpoint.secret
        events = [
            ("dock.updated", "spot", spot, {"spot_id": spot, "version": version})
            for version in range(1, 5)
            for spot in (1, 2)
        ]
        await write_events(sessionmaker, events)
        async with WebhookWorker(sessionmaker, FAST) as worker:
            await run_until([worker], lambda: len(receiver.accepted()) >= len(events))
        accepted = receiver.accepted()
    assert len(accepted) == len(events) and all(r.signature_ok for r in accepted)
    versions: dict[int, list[int]] = defaultdict(list)
    for r in accepted:
        versions[r.envelope["data"]["spot_id"]].append(r.envelope["data"]["version"])
    assert versions == {1: [1, 2, 3, 4], 2: [1, 2, 3, 4]}


async def test_start_worker_handle_for_the_embedded_launcher(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    with Receiver() as receiver:
        async with sessionmaker() as session, session.begin():
            endpoint = await service.create_endpoint(session, url=receiver.url, topics=["*"])
        receiver.secret = endpoint.secret
        handle = await start_worker(sessionmaker, FAST)
        try:
            await write_events(sessionmaker, [("rent.created", "rent", 1, {"rent_id": 1})])
            assert await wait_for(lambda: len(receiver.accepted()) == 1, 10)
        finally:
            await handle.stop()
        assert handle.task.done() and handle.worker.counters["delivered"] == 1
        [got] = receiver.accepted()
    assert got.signature_ok and got.envelope["event"] == "rent.created"


async def test_prune_keeps_pending_and_recent(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    with Receiver(behaviour=lambda _n, e: (200 if e["data"]["ok"] else 500, 0.0)) as receiver:
        async with sessionmaker() as session, session.begin():
            endpoint = await service.create_endpoint(session, url=receiver.url, topics=["*"])
        receiver.secret = endpoint.secret
        await write_events(
            sessionmaker,
            [("rent.created", "rent", 1, {"ok": True}), ("rent.created", "rent", 2, {"ok": False})],
        )
        async with WebhookWorker(sessionmaker, FAST) as worker:
            await run_until([worker], lambda: len(receiver.snapshot()) >= 2)
    later = datetime.now(UTC) + timedelta(days=40)
    assert await WebhookWorker(sessionmaker, FAST).prune() == 0  # all recent
    removed = await WebhookWorker(sessionmaker, FAST, clock=lambda: later).prune()
    async with sessionmaker() as session:
        left: list[DeliveryStatus] = list(await session.scalars(select(WebhookDelivery.status)))
        outbox_left = await session.scalar(select(func.count()).select_from(OutboxEvent))
    # The delivered event's outbox row and delivery; the pending one's row stays with it.
    assert removed == 2
    assert left == [DeliveryStatus.PENDING] and outbox_left == 1
