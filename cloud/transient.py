"""Transient or permanent: may the same work succeed later, unchanged?

One classification for the whole cloud. Ingest: a transient failure (the database
restarting, failing over, out of connections, a deadlock) is retried with back-off and
never acknowledged; anything else is permanent and ends, message by message, in the
dead-letter store. The API: a transient database failure answers 503 with Retry-After
(``api/errors.py``). Decided by SQLSTATE class, never by message text.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import DBAPIError

#: SQLSTATE classes whose errors pass (retry the batch): connection exception, insufficient
#: resources (disk full, out of memory, too many connections), system error (I/O).
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "53", "58"})
#: And single states: serialization failure, deadlock, lock not available, admin / crash
#: shutdown, cannot connect now ("the database system is starting up", a standby, a
#: failover), and read-only transaction (a replica not yet promoted answers every write
#: with 25006 during a failover: the same batch succeeds on the promoted primary).
TRANSIENT_SQLSTATES = frozenset(
    {"25006", "40001", "40P01", "55P03", "57P01", "57P02", "57P03"}
)
#: SQLite's busy / locked result codes (primary and extended).
_SQLITE_BUSY = frozenset({5, 6, 261, 262, 517})


def _sqlstate(exc: BaseException) -> str | None:
    code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return code if isinstance(code, str) and len(code) == 5 else None


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, what SQLAlchemy wraps (``orig``) and their causes, without cycles."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        cur = todo.pop()
        if cur is None or any(cur is s for s in seen) or len(seen) > 16:
            continue
        seen.append(cur)
        todo.extend((getattr(cur, "orig", None), cur.__cause__, cur.__context__))
    return seen


def sqlstate_of(exc: BaseException) -> str | None:
    """The first SQLSTATE along the exception's chain (what SQLAlchemy wraps, causes)."""
    return next((code for cur in _chain(exc) if (code := _sqlstate(cur)) is not None), None)


def is_transient(exc: BaseException) -> bool:
    """Will the same batch succeed later, unchanged? Then retry it (never acknowledge it).

    Decided by SQLSTATE (:data:`TRANSIENT_SQLSTATE_CLASSES`, :data:`TRANSIENT_SQLSTATES`),
    never by message text, so "the database system is starting up" (57P03) is a wait and
    a constraint violation (class 23) or a bad value (class 22) is not. Without a SQLSTATE:
    a connection SQLAlchemy invalidated, asyncpg's connection errors, OSError (refused,
    reset), TimeoutError, a pool checkout timeout and SQLite's busy/locked codes pass;
    everything else is permanent.
    """
    import asyncpg  # the PostgreSQL driver; imported here so SQLite-only tools need no PG

    for cur in _chain(exc):
        if isinstance(cur, DBAPIError) and cur.connection_invalidated:
            return True
        code = _sqlstate(cur)
        if code is not None:
            # The first SQLSTATE found decides: a wrapped cause says the same or nothing.
            return code[:2] in TRANSIENT_SQLSTATE_CLASSES or code in TRANSIENT_SQLSTATES
        if isinstance(
            cur,
            OSError
            | TimeoutError
            | asyncpg.exceptions.PostgresConnectionError
            | sa_exc.TimeoutError
            | sa_exc.DisconnectionError,
        ):
            return True
        if getattr(cur, "sqlite_errorcode", None) in _SQLITE_BUSY:
            return True
    return False


__all__ = ["TRANSIENT_SQLSTATES", "TRANSIENT_SQLSTATE_CLASSES", "is_transient", "sqlstate_of"]
