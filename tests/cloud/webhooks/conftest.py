"""PostgreSQL (harness, fresh database per test) migrated and seeded, plus webhook helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.migrations import upgrade
from kickstand.cloud.models import OutboxEvent
from kickstand.cloud.seed import DemoRefs, seed_demo
from kickstand.cloud.webhooks.delivery import DeliveryPolicy, WebhookWorker
from kickstand.testing import PostgresServer

#: Retries in tens of milliseconds instead of seconds to hours.
FAST = DeliveryPolicy(
    schedule_s=(0.05, 0.05, 0.1, 0.1, 0.2),
    jitter=0.0,
    lease_s=10.0,
    poll_interval_s=0.02,
    connect_timeout_s=1.0,
    read_timeout_s=5.0,
    disable_after_failures=1000,
    disable_after_s=0.0,
    allow_internal_targets=True,  # the receivers listen on 127.0.0.1
)


@dataclass
class PgEnv:
    url: str
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    demo: DemoRefs


async def _migrate_and_seed(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
        async with create_sessionmaker(engine)() as session, session.begin():
            await seed_demo(session)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def webhooks_template(pg_server: PostgresServer) -> Iterator[str]:
    """A migrated, seeded database copied for each test (CREATE DATABASE … TEMPLATE)."""
    database = pg_server.new_database(suffix="webhooks_template")
    asyncio.run(_migrate_and_seed(database.url))
    yield database.name
    pg_server.drop_database(database.name)


@pytest.fixture
async def pg(pg_server: PostgresServer, webhooks_template: str) -> AsyncIterator[PgEnv]:
    database = pg_server.new_database(template=webhooks_template)
    engine = create_engine(database.url, pool_size=10, max_overflow=10)
    maker = create_sessionmaker(engine)
    async with maker() as session, session.begin():
        demo = await seed_demo(session)  # nothing created: the references only
    try:
        yield PgEnv(database.url, engine, maker, demo)
    finally:
        await engine.dispose()
        pg_server.drop_database(database.name)


async def write_events(
    maker: async_sessionmaker[AsyncSession], events: list[tuple[str, str, Any, dict[str, Any]]]
) -> None:
    """Each (topic, resource_type, resource_id, payload) in its own transaction, in order.

    Raw rows, not the typed ``outbox.emit``: these tests are about delivery mechanics
    (order, retries, leases) with small synthetic payloads; test_scoping.py and
    tests/cloud/events/ deliver real, typed events."""
    for topic, rtype, rid, payload in events:
        async with maker() as session, session.begin():
            session.add(
                OutboxEvent(topic=topic, resource_type=rtype, resource_id=str(rid), payload=payload)
            )


async def wait_for(done: Callable[[], bool], limit_s: float = 20.0) -> bool:
    """Poll ``done()`` every 20 ms (receivers run in threads: no event to await)."""
    deadline = time.monotonic() + limit_s
    while not done():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def run_until(
    workers: list[WebhookWorker], done: Callable[[], bool], limit_s: float = 20.0
) -> None:
    """Run the workers' loops until ``done()`` (checked every 20 ms) or fail on timeout."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    deadline = time.monotonic() + limit_s
    try:
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError("webhook workers did not finish in time")
            for task in tasks:
                if task.done():
                    task.result()  # surface a crash
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
