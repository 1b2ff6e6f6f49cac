"""Engine and session factories (nothing is built at import time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from kickstand.cloud.config import Settings


def prepare_sqlite_path(url: str) -> None:
    """Create the folder of a relative or absolute SQLite file."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def create_engine(url_or_settings: str | Settings, **kwargs: Any) -> AsyncEngine:
    url = url_or_settings if isinstance(url_or_settings, str) else url_or_settings.DATABASE_URL
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        prepare_sqlite_path(url)
        kwargs.setdefault("connect_args", {"timeout": 30})
    else:
        kwargs.setdefault("pool_pre_ping", True)
    engine = create_async_engine(url, **kwargs)
    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy emit BEGIN itself (pysqlite's implicit transactions break
    # SAVEPOINTs and BEGIN IMMEDIATE); enforce foreign keys; WAL for concurrent readers.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # durable enough with WAL, far fewer fsyncs
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_on_begin(conn: Any) -> None:
    # Writers take the lock up front: no deadlock-prone read→write upgrades.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
