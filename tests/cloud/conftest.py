"""Cloud-core fixtures: a migrated database per test (SQLite file or harness PostgreSQL)."""

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


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrated and seeded once; each test gets a copy (fast, and still via Alembic)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"

    async def build() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        await upgrade(engine)
        async with create_sessionmaker(engine)() as session, session.begin():
            await seed_demo(session)
        await engine.dispose()  # the last connection closing checkpoints the WAL

    # A thread of its own: this may be requested from inside a running event loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, build()).result()
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    target = tmp_path / "kickstand.sqlite3"
    shutil.copy(sqlite_template, target)
    return f"sqlite+aiosqlite:///{target}"


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


@pytest.fixture
async def demo(session: AsyncSession) -> DemoRefs:
    """The seed's references (the seed already ran in the template: nothing is created)."""
    refs = await seed_demo(session)
    await session.commit()
    assert refs.created == 0
    return refs


@pytest.fixture(scope="session")
def pg_template(pg_server: PostgresServer) -> str:
    """A PostgreSQL database migrated (Alembic) and seeded once; tests get clones of it."""
    url = pg_server.create_database()

    async def build() -> None:
        engine = create_engine(url)
        await upgrade(engine)
        async with create_sessionmaker(engine)() as session, session.begin():
            await seed_demo(session)
        await engine.dispose()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, build()).result()
    return url


@pytest.fixture
def pg_seeded_url(pg_server: PostgresServer, pg_template: str) -> Iterator[str]:
    """A fresh clone of the migrated, seeded template (postgresql+asyncpg:// URL)."""
    database = pg_server.new_database(template=pg_template)
    try:
        yield database.url
    finally:
        pg_server.drop_database(database.name)
