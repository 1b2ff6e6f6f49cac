"""A persistent replay guard: a reboot does not let a replayed command through."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kickstand.edge.core.errors import QueueError


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SqliteReplayGuard:
    """Remembers executed command ids (until they expire, plus a margin) in SQLite.

    Implements kickstand.protocol.signing.ReplayGuard. Expired ids are purged every
    ``purge_every`` checks; an id is kept ``keep_after_expiry_ms`` beyond its expiry
    so a device whose clock jumps back a little still refuses it.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Callable[[], int] = _now_ms,
        keep_after_expiry_ms: int = 3_600_000,
        purge_every: int = 256,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._keep = keep_after_expiry_ms
        self._purge_every = purge_every
        self._checks = 0
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS seen_commands ("
                "command_id BLOB PRIMARY KEY, expires_at_ms INTEGER NOT NULL)"
            )
        except sqlite3.Error as exc:
            raise QueueError(f"cannot open replay guard {self.path}: {exc}") from exc

    def check_and_remember(self, command_id: bytes, expires_at_ms: int) -> bool:
        with self._lock:
            self._checks += 1
            if self._checks % self._purge_every == 0:
                self._db.execute(
                    "DELETE FROM seen_commands WHERE expires_at_ms < ?",
                    (self._clock() - self._keep,),
                )
            cur = self._db.execute(
                "INSERT OR IGNORE INTO seen_commands (command_id, expires_at_ms) VALUES (?, ?)",
                (bytes(command_id), expires_at_ms),
            )
            return cur.rowcount == 1

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM seen_commands").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
