"""Ingest fixtures: a migrated, seeded PostgreSQL database and workers on the harness broker."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.alerts.engine import AlertEngine
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.ingest import IngestWorker
from kickstand.testing import MosquittoService
from tests.cloud.ingest.fakes import unique


@pytest.fixture
async def pg_sessionmaker(pg_seeded_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(pg_seeded_url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def maker(
    pg_sessionmaker: async_sessionmaker[AsyncSession],
) -> async_sessionmaker[AsyncSession]:
    """The seeded database's sessions (tests that call the applier directly)."""
    return pg_sessionmaker


WorkerFactory = Callable[..., Awaitable[IngestWorker]]


@pytest.fixture
async def start_worker(
    mosquitto: MosquittoService, pg_sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[WorkerFactory]:
    """Start workers on a group of this test's own (old sessions of other tests stay apart)."""
    group = unique("g")
    async with contextlib.AsyncExitStack() as stack:

        async def start(**kwargs: Any) -> IngestWorker:
            kwargs.setdefault("client_id", unique("ingest-"))
            kwargs.setdefault("group", group)
            kwargs.setdefault("batch_max", 50)
            kwargs.setdefault("alerts", AlertEngine())
            sessionmaker = kwargs.pop("sessionmaker", pg_sessionmaker)
            worker = IngestWorker(mosquitto.url, sessionmaker, **kwargs)
            return await stack.enter_async_context(worker)

        yield start
