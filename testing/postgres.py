"""Fresh PostgreSQL databases on a server, for one test run or one test.

The server is the machine's (127.0.0.1:5432, trust auth, user postgres; PGHOST / PGPORT /
PGUSER / PGPASSWORD point elsewhere) or a cluster of the harness's own
(`kickstand.testing.pgcluster`; `open_postgres()` picks): this class only creates uniquely
named databases and drops every one of them at `close()`.

    with PostgresServer() as pg:
        url = pg.create_database()             # postgresql+asyncpg://... , empty
        template = pg.create_database()        # migrate it once, then clone per test:
        clone = pg.create_database(template=pg.name_of(template))
        pg.drop_database(pg.name_of(url))
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Self
from urllib.parse import quote, urlsplit

import psycopg
from psycopg import sql

from .errors import HarnessError, PostgresUnavailableError

log = logging.getLogger("kickstand.testing.postgres")

DB_PREFIX = "kstest"
_NAME_RE = re.compile(rf"^{DB_PREFIX}_(\d+)_[0-9a-f]+(?:_\w+)?$")


@dataclass(frozen=True)
class Database:
    """One database the harness created."""

    name: str
    url: str  # SQLAlchemy async URL: postgresql+asyncpg://...
    dsn: str  # plain libpq / psycopg DSN: postgresql://...


class PostgresServer:
    """Admin access to a PostgreSQL server; hands out fresh databases and drops them."""

    def __init__(
        self,
        *,
        host: str | None = None,
        port: int | None = None,
        user: str | None = None,
        password: str | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        self.host = host or os.environ.get("PGHOST") or "127.0.0.1"
        self.port = port or int(os.environ.get("PGPORT") or 5432)
        self.user = user or os.environ.get("PGUSER") or "postgres"
        self.password = password if password is not None else os.environ.get("PGPASSWORD")
        self.connect_timeout = connect_timeout
        self._run_id = f"{DB_PREFIX}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self._counter = 0
        self._created: list[str] = []
        self._lock = threading.Lock()
        self._checked = False
        self._run_database: Database | None = None

    # -- URLs -----------------------------------------------------------------------------

    def _netloc(self) -> str:
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        host = self.host
        if host.startswith("/"):  # unix socket directory: goes in the query string
            return f"{auth}@"
        return f"{auth}@{host}:{self.port}"

    def _query_suffix(self) -> str:
        if self.host.startswith("/"):
            return f"?host={quote(self.host, safe='')}&port={self.port}"
        return ""

    def dsn_for(self, name: str) -> str:
        """The libpq DSN (`postgresql://...`) of database `name`."""
        return f"postgresql://{self._netloc()}/{name}{self._query_suffix()}"

    def url_for(self, name: str) -> str:
        """The SQLAlchemy async URL (`postgresql+asyncpg://...`) of database `name`."""
        return f"postgresql+asyncpg://{self._netloc()}/{name}{self._query_suffix()}"

    @staticmethod
    def name_of(url_or_dsn: str) -> str:
        """The database name in a URL or DSN (a bare name is returned as is)."""
        if "://" not in url_or_dsn:
            return url_or_dsn
        return urlsplit(url_or_dsn).path.lstrip("/")

    # -- admin ----------------------------------------------------------------------------

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            self.dsn_for("postgres"),
            autocommit=True,
            connect_timeout=max(1, int(self.connect_timeout)),
        )

    def reachable(self) -> bool:
        """True when the server answers a query now."""
        try:
            with self._admin() as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def check(self) -> None:
        """Make sure the server answers (PostgresUnavailableError if not)."""
        if self._checked:
            return
        try:
            with self._admin() as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError as exc:
            raise PostgresUnavailableError(self.dsn_for("postgres"), str(exc)) from exc
        self._checked = True
        self._drop_orphans()

    def _is_local(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("/")

    def _drop_orphans(self) -> None:
        # Databases of earlier runs killed before their teardown: their process is gone.
        if not self._is_local():
            return
        try:
            with self._admin() as conn:
                rows = conn.execute(
                    "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database"
                    " WHERE datname LIKE %s",
                    (f"{DB_PREFIX}\\_%",),
                ).fetchall()
                for name, comment in rows:
                    match = _NAME_RE.match(str(name))
                    # Only ours: same machine (the comment), dead creator process.
                    if match is None or comment != _owner_comment(int(match.group(1))):
                        continue
                    if _pid_alive(int(match.group(1))):
                        continue
                    log.info("postgres_drop_orphan database=%s", name)
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(str(name))
                        )
                    )
        except psycopg.Error as exc:
            log.warning("postgres_orphan_cleanup_failed error=%s", exc)

    def new_database(self, *, template: str | None = None, suffix: str = "") -> Database:
        """Create a fresh, uniquely named database (empty, or a copy of `template`)."""
        self.check()
        with self._lock:
            self._counter += 1
            name = f"{self._run_id}{self._counter:04d}"
            if suffix:
                name += "_" + re.sub(r"\W", "_", suffix)[:20].lower()
            self._created.append(name)
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(self.name_of(template))
            )
        try:
            with self._admin() as conn:
                conn.execute(statement)
                conn.execute(
                    sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                        sql.Identifier(name), sql.Literal(_owner_comment(os.getpid()))
                    )
                )
        except psycopg.Error as exc:
            with self._lock:
                self._created.remove(name)
            raise HarnessError(f"CREATE DATABASE {name} failed: {exc}") from exc
        return Database(name=name, url=self.url_for(name), dsn=self.dsn_for(name))

    def create_database(self, *, template: str | None = None) -> str:
        """A fresh database; returns its `postgresql+asyncpg://` URL (see `dsn_for`)."""
        return self.new_database(template=template).url

    def drop_database(self, name: str) -> None:
        """Drop a database (name, URL or DSN), disconnecting whoever is still connected."""
        name = self.name_of(name)
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        with self._lock:
            if name in self._created:
                self._created.remove(name)

    @property
    def run_database(self) -> Database:
        """The one database of this test run (created on first use, dropped at close)."""
        if self._run_database is None:
            self._run_database = self.new_database(suffix="run")
        return self._run_database

    def close(self) -> None:
        """Drop every database this object created."""
        with self._lock:
            names = list(reversed(self._created))
        for name in names:
            try:
                self.drop_database(name)
            except psycopg.Error as exc:
                log.warning("postgres_drop_failed database=%s error=%s", name, exc)
        self._run_database = None

    def __enter__(self) -> Self:
        self.check()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _owner_comment(pid: int) -> str:
    return f"kickstand.testing host={socket.gethostname()} pid={pid}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

