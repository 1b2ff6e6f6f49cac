"""Store-and-forward: every sequenced message is on disk before it is published.

SQLite in WAL mode. ``append(body)`` stamps the body with the next seq of the
current boot, encodes it with the v1 codec and commits the encoded bytes (plus
channel, boot id, seq and device time) in one transaction, *then* returns; the
link publishes from ``due()`` in insertion order. A message keeps the boot id / seq
it was stamped with for ever, so a replay after a restart is recognised by the
cloud's dedupe (SequenceTracker).

Deletion: with a cloud that answers with end-to-end Acks, a message stays until
an Ack covers it (``ack_ranges``, one transaction per Ack): the broker's PUBACK
only says the broker has it. Meanwhile ``published_ms`` records when the broker
last took it (its PUBACK: ``mark_published``), so ``due()`` hands it out again once
it has waited ``timeout_ms`` unacknowledged, or when it was published before the
current session (``since_ms``). With an older cloud the link deletes on PUBACK
(``ack_many``) and never marks. Queue files of earlier versions get the column in
place on open.

Durability: ``synchronous=FULL`` by default. In WAL mode NORMAL already survives
a killed process (kill -9), but a power cut may lose the last commits; FULL
fsyncs the WAL on every commit, so an event the agent has acted on (a lock
opened) is never lost with the power. One fsync per event is cheap at a
station's event rate. ``synchronous="NORMAL"`` can be chosen where the storage
is slow and the device has a supercap (documented trade-off).

Bounding policy (``max_telemetry``): telemetry is the only thing ever dropped.
When more than ``max_telemetry`` telemetry messages wait, the oldest half of
them is thinned to every ``keep_every``-th message; if that is not enough the
oldest telemetry goes. Events, status and command results are never dropped:
they are bounded only by the disk (a station produces a few hundred a day).
Every drop is counted (``counters.thinned``).

Boot id: a random uint32 per process start, recorded in the ``boots`` table
(the history a technician can read); seqs start at 1 in every boot.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kickstand.edge.core.errors import QueueError
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1.messages import Stamp, UpBody

log = logging.getLogger("kickstand.edge.core.queue")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    boot_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    channel TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    payload BLOB NOT NULL,
    published_ms INTEGER,
    UNIQUE (boot_id, seq)
);
CREATE INDEX IF NOT EXISTS queue_channel ON queue (channel, id);
CREATE TABLE IF NOT EXISTS boots (
    boot_id INTEGER PRIMARY KEY,
    started_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS device_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

# After _SCHEMA: a queue file of an earlier version gets published_ms first (_migrate).
# Partial: only messages awaiting their Ack are in it, so the next one due is found
# without a scan and an older cloud's queue (never marked) pays nothing for it.
_INDEXES = """
CREATE INDEX IF NOT EXISTS queue_published ON queue (published_ms)
    WHERE published_ms IS NOT NULL;
"""

_COLUMNS = "boot_id, seq, channel, ts_ms, payload, id, published_ms"


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """One stored message: publish ``payload`` on the device's ``channel`` topic."""

    boot_id: int
    seq: int
    channel: Channel
    ts_ms: int
    payload: bytes
    row: int  # position in the queue: later messages have larger rows
    published_ms: int | None = None  # last PUBACK (queue clock); None: never published

    @property
    def key(self) -> tuple[int, int]:
        return (self.boot_id, self.seq)


def _message(row: tuple[int, int, str, int, bytes, int, int | None]) -> QueuedMessage:
    boot_id, seq, channel, ts_ms, payload, rowid, published_ms = row
    return QueuedMessage(boot_id, seq, Channel(channel), ts_ms, bytes(payload), rowid, published_ms)


@dataclass(slots=True)
class QueueCounters:
    appended: int = 0
    acked: int = 0  # deleted as delivered: on PUBACK (older cloud) or on an Ack
    thinned: int = 0  # telemetry dropped by the bounding policy (persisted)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class DiskQueue:
    """SQLite-backed, ordered, crash-safe queue of encoded up messages."""

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Callable[[], int] = _now_ms,
        max_telemetry: int = 10_000,
        keep_every: int = 4,
        synchronous: str = "FULL",
        boot_id: int | None = None,
    ) -> None:
        if synchronous.upper() not in {"FULL", "NORMAL", "EXTRA"}:
            raise QueueError(f"synchronous={synchronous!r}: use FULL, NORMAL or EXTRA")
        if max_telemetry < 2 or keep_every < 2:
            raise QueueError("max_telemetry and keep_every must be at least 2")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self.max_telemetry = max_telemetry
        self.keep_every = keep_every
        self._synchronous = synchronous.upper()
        self._closed = False
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={self._synchronous}")
            self._db.executescript(_SCHEMA)
            self._migrate()
            self._db.executescript(_INDEXES)
        except sqlite3.Error as exc:
            raise QueueError(f"cannot open queue {self.path}: {exc}") from exc
        self.boot_id = boot_id if boot_id is not None else self._new_boot_id()
        self._db.execute(
            "INSERT OR REPLACE INTO boots (boot_id, started_ms) VALUES (?, ?)",
            (self.boot_id, self._clock()),
        )
        row = self._db.execute(
            "SELECT max(seq) FROM queue WHERE boot_id = ?", (self.boot_id,)
        ).fetchone()
        self._seq = int(row[0] or 0)  # an explicit boot_id may continue its own sequence
        thinned = self._db.execute(
            "SELECT value FROM counters WHERE name = 'thinned'"
        ).fetchone()
        self.counters = QueueCounters(thinned=int(thinned[0]) if thinned else 0)
        self._telemetry = int(
            self._db.execute("SELECT count(*) FROM queue WHERE channel = 'tlm'").fetchone()[0]
        )
        # Kept in memory: count(*) scans the table, and the link asks at every turn.
        self._depth = int(self._db.execute("SELECT count(*) FROM queue").fetchone()[0])

    def _migrate(self) -> None:
        """Bring a queue file of an earlier version up to date, keeping its messages.

        A station's queue survives agent upgrades: its messages were never published
        as far as this version knows (NULL), so they all go out on the next session.
        """
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(queue)")}
        if "published_ms" not in columns:
            self._db.execute("ALTER TABLE queue ADD COLUMN published_ms INTEGER")
            log.info("queue_migrated path=%s added=published_ms", self.path)

    def _new_boot_id(self) -> int:
        while True:
            candidate = secrets.randbits(32)
            if candidate and not self._db.execute(
                "SELECT 1 FROM boots WHERE boot_id = ?", (candidate,)
            ).fetchone():
                return candidate

    def now_ms(self) -> int:
        """The queue's clock: what ``published_ms`` and ``since_ms`` are measured on."""
        return self._clock()

    # ------------------------------------------------------------------ writing

    @property
    def next_seq(self) -> int:
        return self._seq + 1

    def append(self, body: UpBody) -> Stamp:
        """Stamp, encode and durably store ``body``; returns its stamp.

        Raises EncodeError for a body the codec refuses (nothing stored) and
        QueueError when the disk refuses the write.
        """
        return self.append_batch((body,))[0]

    def append_batch(
        self, bodies: Sequence[UpBody], state: Mapping[str, str] | None = None
    ) -> list[Stamp]:
        """Store several bodies *and* device state (key -> text) in one transaction.

        An agent writes the state change others must hear of (a spot's new state)
        in the same transaction as the events announcing it: after a crash either
        both are on disk or neither, so a restart neither repeats nor loses an event.
        """
        channels = []
        for body in bodies:
            channel = codec.channel_of(body)
            if channel not in codec.SEQUENCED_CHANNELS:
                raise QueueError(f"{type(body).__name__} goes on {channel}, which is not queued")
            channels.append(channel)
        with self._lock:
            stamps: list[Stamp] = []
            rows = []
            seq = self._seq
            now = self._clock()
            for body, channel in zip(bodies, channels, strict=True):
                seq += 1
                stamp = Stamp(self.boot_id, seq, now)
                rows.append((stamp.boot_id, stamp.seq, channel.value, now,
                             codec.encode_up(stamp, body)))
                stamps.append(stamp)
            telemetry = sum(1 for c in channels if c is Channel.TELEMETRY)
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT INTO queue (boot_id, seq, channel, ts_ms, payload) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
                if state:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO device_state (key, value) VALUES (?, ?)",
                        list(state.items()),
                    )
                self._telemetry += telemetry
                if telemetry and self._telemetry > self.max_telemetry:
                    self._thin()
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                self._recount()
                raise QueueError(f"cannot store {len(rows)} message(s): {exc}") from exc
            self._seq = seq
            self._depth += len(rows)
            self.counters.appended += len(rows)
            return stamps

    def save_state(self, state: Mapping[str, str]) -> None:
        """Device state without a message (e.g. a config version)."""
        self.append_batch((), state)

    def load_state(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM device_state WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else str(row[0])

    def _thin(self) -> None:
        """Keep every ``keep_every``-th of the oldest half of telemetry; then drop the oldest."""
        half = self._telemetry // 2
        cur = self._db.execute(
            "DELETE FROM queue WHERE id IN (SELECT id FROM queue WHERE channel = 'tlm' "
            "ORDER BY id LIMIT ?) AND (seq % ?) != 0",
            (half, self.keep_every),
        )
        dropped = cur.rowcount
        self._telemetry -= dropped
        excess = self._telemetry - self.max_telemetry * 3 // 4
        if excess > 0:
            cur = self._db.execute(
                "DELETE FROM queue WHERE id IN (SELECT id FROM queue WHERE channel = 'tlm' "
                "ORDER BY id LIMIT ?)",
                (excess,),
            )
            dropped += cur.rowcount
            self._telemetry -= cur.rowcount
        self.counters.thinned += dropped
        self._depth -= dropped
        self._db.execute(
            "INSERT OR REPLACE INTO counters (name, value) VALUES ('thinned', ?)",
            (self.counters.thinned,),
        )
        log.warning("queue_thinned dropped=%d telemetry_left=%d", dropped, self._telemetry)

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    # ------------------------------------------------------------------ reading

    def pending(self, limit: int = 100, *, after_row: int = 0) -> list[QueuedMessage]:
        """The oldest ``limit`` messages after ``after_row``, in the order they were appended.

        ``after_row``: the row of the last message already taken (published, awaiting
        its ack), so a sender can keep several out without taking them twice.
        """
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM queue WHERE id > ? ORDER BY id LIMIT ?",
                (after_row, limit),
            ).fetchall()
        return [_message(r) for r in rows]

    def due(self, limit: int, *, timeout_ms: int, since_ms: int = 0) -> list[QueuedMessage]:
        """The oldest ``limit`` messages to publish (again), in the order they were appended.

        Due: never published, published more than ``timeout_ms`` ago without an Ack,
        published before ``since_ms`` (the link's current session: after a reconnect
        everything unacknowledged goes again), or marked later than now (the device
        clock was set back: one early resend rather than a message held for hours).
        """
        with self._lock:
            now = self._clock()
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM queue WHERE published_ms IS NULL "
                "OR published_ms <= ? OR published_ms < ? OR published_ms > ? "
                "ORDER BY id LIMIT ?",
                (now - timeout_ms, since_ms, now, limit),
            ).fetchall()
        return [_message(r) for r in rows]

    def next_due_ms(
        self, *, timeout_ms: int, since_ms: int = 0, skip: Collection[int] = ()
    ) -> int | None:
        """When the next published message falls due (queue clock), None if none awaits.

        ``skip``: rows not to consider (still awaiting their PUBACK: republishing those
        would only duplicate them). Unpublished messages are not counted: they are due
        at once and the caller publishes them while its window has room.
        """
        with self._lock:
            now = self._clock()
            ahead = self._db.execute(
                "SELECT id FROM queue WHERE published_ms > ? ORDER BY published_ms DESC LIMIT ?",
                (now, len(skip) + 1),
            ).fetchall()
            if any(rowid not in skip for (rowid,) in ahead):
                return now
            rows = self._db.execute(
                "SELECT id, published_ms FROM queue WHERE published_ms IS NOT NULL "
                "ORDER BY published_ms LIMIT ?",
                (len(skip) + 1,),
            ).fetchall()
        for rowid, published_ms in rows:
            if rowid in skip:
                continue
            if published_ms < since_ms:
                return now
            return int(published_ms) + timeout_ms
        return None

    def mark_published(self, rows: Collection[int]) -> None:
        """Record that the broker took these messages now (their PUBACK), in one transaction.

        The Ack timeout runs from here: the cloud cannot acknowledge what the broker
        has not taken yet (a slow or frozen broker must not make every message
        stale the moment its PUBACK arrives). Not worth an fsync of its own: a lost
        mark only means an earlier resend; it shares the WAL's next sync.
        """
        if not rows:
            return
        with self._lock:
            now = self._clock()
            try:
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "UPDATE queue SET published_ms = ? WHERE id = ?", [(now, row) for row in rows]
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise QueueError(f"cannot mark {len(rows)} published: {exc}") from exc
            finally:
                self._restore_synchronous()

    def _restore_synchronous(self) -> None:
        try:
            self._db.execute(f"PRAGMA synchronous={self._synchronous}")
        except sqlite3.Error as exc:
            # Appends would lose their fsync: refuse to go on rather than risk it.
            raise QueueError(f"cannot restore synchronous={self._synchronous}: {exc}") from exc

    def ack(self, boot_id: int, seq: int) -> bool:
        """Delete one delivered message; False if it was not (or no longer) queued."""
        return self.ack_many(((boot_id, seq),)) == 1

    def ack_many(self, keys: Sequence[tuple[int, int]]) -> int:
        """Delete delivered messages (boot_id, seq) in one transaction; returns how many.

        One commit for a whole batch: a lost delete only means a resend, which the
        cloud's dedupe absorbs, so acks need not cost one fsync each.
        """
        if not keys:
            return 0
        with self._lock:
            deleted = telemetry = 0
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for boot_id, seq in keys:
                    row = self._db.execute(
                        "DELETE FROM queue WHERE boot_id = ? AND seq = ? RETURNING channel",
                        (boot_id, seq),
                    ).fetchone()
                    if row is not None:
                        deleted += 1
                        telemetry += row[0] == Channel.TELEMETRY.value
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                self._recount()
                raise QueueError(f"cannot ack {len(keys)} message(s): {exc}") from exc
            self._telemetry -= telemetry
            self._depth -= deleted
            self.counters.acked += deleted
            return deleted

    def ack_ranges(self, ranges: Sequence[tuple[int, int, int]]) -> int:
        """Delete what an end-to-end Ack covers, ``(boot_id, first_seq, last_seq)`` each.

        One transaction per Ack; returns how many queued messages it deleted (seqs
        already gone, or never queued, are simply not there).
        """
        if not ranges:
            return 0
        with self._lock:
            deleted = telemetry = 0
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for boot_id, first, last in ranges:
                    rows = self._db.execute(
                        "DELETE FROM queue WHERE boot_id = ? AND seq BETWEEN ? AND ? "
                        "RETURNING channel",
                        (boot_id, first, last),
                    ).fetchall()
                    deleted += len(rows)
                    telemetry += sum(1 for (channel,) in rows if channel == Channel.TELEMETRY.value)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                self._recount()
                raise QueueError(f"cannot ack {len(ranges)} range(s): {exc}") from exc
            self._telemetry -= telemetry
            self._depth -= deleted
            self.counters.acked += deleted
            return deleted

    def _recount(self) -> None:
        self._telemetry = int(
            self._db.execute("SELECT count(*) FROM queue WHERE channel = 'tlm'").fetchone()[0]
        )
        self._depth = int(self._db.execute("SELECT count(*) FROM queue").fetchone()[0])

    def depth(self) -> int:
        return self._depth

    def depth_by_channel(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT channel, count(*) FROM queue GROUP BY channel"
            ).fetchall()
        return {c: int(n) for c, n in rows}

    def pending_from(self) -> int:
        """For the birth: the oldest seq of the current boot still queued, else the next seq."""
        with self._lock:
            row = self._db.execute(
                "SELECT min(seq) FROM queue WHERE boot_id = ?", (self.boot_id,)
            ).fetchone()
        return int(row[0]) if row[0] is not None else self._seq + 1

    def awaiting_ack(self) -> int:
        """Messages the broker took (PUBACK) that no Ack covered yet.

        Counted on the partial index (no table scan); 0 with an older cloud (never marked).
        """
        with self._lock:
            row = self._db.execute(
                "SELECT count(*) FROM queue WHERE published_ms IS NOT NULL"
            ).fetchone()
        return int(row[0])

    def oldest_age_ms(self) -> int | None:
        """How long the oldest queued (unacknowledged) message has waited; None if empty."""
        with self._lock:
            row = self._db.execute("SELECT ts_ms FROM queue ORDER BY id LIMIT 1").fetchone()
            now = self._clock()
        return None if row is None else max(0, now - int(row[0]))

    def stats(self) -> dict[str, int | float | None]:
        """For the health endpoint; after ``close()`` (an agent stopping) the in-memory part."""
        oldest = awaiting = None
        if not self._closed:
            oldest, awaiting = self.oldest_age_ms(), self.awaiting_ack()
        return {
            "depth": self.depth(),
            "oldest_unacked_s": None if oldest is None else round(oldest / 1000, 1),
            "awaiting_ack": awaiting,
            "appended": self.counters.appended,
            "acked": self.counters.acked,
            "thinned": self.counters.thinned,
            "boot_id": self.boot_id,
            "next_seq": self.next_seq,
        }

    def close(self) -> None:
        with self._lock:
            self._closed = True
            try:
                self._db.close()
            except sqlite3.Error:
                pass
