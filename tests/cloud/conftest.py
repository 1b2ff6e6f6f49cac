"""Cloud-core fixtures: a migrated, seeded database per test (SQLite file or PostgreSQL).

The schema comes from the Alembic migrations and the data from the demo seed, built once
per run as a template; each test gets a copy (SQLite file copy / PostgreSQL TEMPLATE).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.migrations import upgrade
from kickstand.cloud.seed import DemoRefs, seed_demo
from kickstand.testing import PostgresServer

#: The seed's references per template URL (ids are the same in every copy).
DEMO_REFS: dict[str, DemoRefs] = {}


def _build_template(url: str) -> DemoRefs:
    async def build() -> DemoRefs:
        engine = create_engine(url)
        try:
            await upgrade(engine)
            async with create_sessionmaker(engine)() as session, session.begin():
                return await seed_demo(session)
        finally:
            await engine.dispose()  # the last SQLite connection closing checkpoints the WAL

    # A thread of its own: this may be requested from inside a running event loop.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, build()).result()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    DEMO_REFS["sqlite"] = _build_template(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    target = tmp_path / "kickstand.sqlite3"
    shutil.copy(sqlite_template, target)
    return f"sqlite+aiosqlite:///{target}"


@pytest.fixture(scope="session")
def pg_template(pg_server: PostgresServer) -> str:
    url = pg_server.create_database()
    DEMO_REFS["postgres"] = _build_template(url)
    return url


@pytest.fixture
def pg_seeded_url(pg_server: PostgresServer, pg_template: str) -> Iterator[str]:
    """A fresh clone of the migrated, seeded template (postgresql+asyncpg:// URL)."""
    database = pg_server.new_database(template=pg_template)
    try:
        yield database.url
    finally:
        pg_server.drop_database(database.name)


def demo_refs(url: str) -> DemoRefs:
    return DEMO_REFS["postgres" if url.startswith("postgresql") else "sqlite"]


@pytest.fixture
async def engine(sqlite_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(sqlite_url)
    yield eng
    await eng.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
async def session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as s:
        yield s
        await s.rollback()


@pytest.fixture
def demo(sqlite_url: str) -> DemoRefs:
    """The seed's references (ids of the demo network in this test's database)."""
    return demo_refs(sqlite_url)
