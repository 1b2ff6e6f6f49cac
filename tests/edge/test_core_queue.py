"""DiskQueue and SqliteReplayGuard: order, durability across reopen, bounding policy."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kickstand.edge.core import DiskQueue, QueueError, SqliteReplayGuard
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1.enums import SpotState
from kickstand.protocol.v1.messages import (
    Heartbeat,
    PowerCut,
    Stamp,
    Status,
    Telemetry,
    VehicleDocked,
)


def test_append_stamps_in_order_and_stores_encoded(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q.db")
    s1 = q.append(VehicleDocked(1, "AB1234"))
    s2 = q.append(Status(1, SpotState.DOCKED_LOCKED))
    assert (s1.seq, s2.seq) == (1, 2)
    assert s1.boot_id == s2.boot_id == q.boot_id != 0
    pending = q.pending()
    assert [(m.seq, m.channel) for m in pending] == [(1, Channel.EVENT), (2, Channel.STATUS)]
    decoded = codec.decode_up(pending[0].channel, pending[0].payload)
    assert decoded.body == VehicleDocked(1, "AB1234") and decoded.stamp == s1
    assert q.pending_from() == 1
    assert q.ack(q.boot_id, 1) and not q.ack(q.boot_id, 1)
    assert q.pending_from() == 2 and q.depth() == 1


def test_survives_reopen_new_boot_keeps_old_stamps(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q.db")
    old_boot = q.boot_id
    q.append(PowerCut())
    q.append(VehicleDocked(2, "XY99887"))
    q.close()
    q2 = DiskQueue(tmp_path / "q.db")
    assert q2.boot_id != old_boot
    assert q2.pending_from() == 1  # nothing of the new boot queued yet
    s = q2.append(PowerCut())
    assert s.boot_id == q2.boot_id and s.seq == 1
    order = [(m.boot_id, m.seq) for m in q2.pending()]
    assert order == [(old_boot, 1), (old_boot, 2), (s.boot_id, 1)]


def test_pending_after_a_row_skips_what_was_taken_even_when_acked_out_of_order(
    tmp_path: Path,
) -> None:
    q = DiskQueue(tmp_path / "q.db")
    for spot in range(1, 5):
        q.append(VehicleDocked(spot, f"AB{spot:04d}"))
    taken = q.pending(2)
    assert [m.seq for m in taken] == [1, 2] and taken[0].row < taken[1].row
    assert [m.seq for m in q.pending(10, after_row=taken[-1].row)] == [3, 4]
    q.ack(q.boot_id, 2)  # the later PUBACK first
    q.append(PowerCut())
    assert [m.seq for m in q.pending(10, after_row=taken[-1].row)] == [3, 4, 5]
    assert [m.seq for m in q.pending(10)] == [1, 3, 4, 5]  # a new session starts over


def test_unqueued_channel_refused(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q.db")
    with pytest.raises(QueueError):
        q.append(Heartbeat())
    assert q.depth() == 0


def test_telemetry_thinned_events_never_dropped(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q.db", max_telemetry=40, keep_every=4)
    for i in range(200):
        q.append(Telemetry(energy_wh=i))
        if i % 10 == 0:
            q.append(PowerCut())
    by = q.depth_by_channel()
    assert by["evt"] == 20  # every event kept
    assert by["tlm"] <= 40
    assert q.counters.thinned == 200 - by["tlm"]
    seqs = [m.seq for m in q.pending(1000)]
    assert seqs == sorted(seqs)
    # the newest telemetry is always kept
    last = q.pending(1000)[-1]
    assert codec.decode_up(last.channel, last.payload).body == Telemetry(energy_wh=199)


def test_replay_guard_persists(tmp_path: Path) -> None:
    g = SqliteReplayGuard(tmp_path / "r.db")
    cid = bytes(range(16))
    assert g.check_and_remember(cid, 10**13)
    assert not g.check_and_remember(cid, 10**13)
    g.close()
    g2 = SqliteReplayGuard(tmp_path / "r.db")
    assert not g2.check_and_remember(cid, 10**13)
    assert g2.check_and_remember(bytes(16), 10**13)


def test_ack_many_and_depth_track_the_disk(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q.db", max_telemetry=10, keep_every=2)
    stamps = [q.append(PowerCut()) for _ in range(5)] + [q.append(Telemetry()) for _ in range(30)]
    assert q.depth() == 35 - q.counters.thinned
    assert q.ack_many([(s.boot_id, s.seq) for s in stamps[:5]] + [(1, 1)]) == 5
    left = q.depth()
    assert left == sum(q.depth_by_channel().values()) == 30 - q.counters.thinned
    q.close()
    assert DiskQueue(tmp_path / "q.db").depth() == left


# ---------------------------------------------------------------- end-to-end acks


class FakeClock:
    """The queue's clock, moved by the test (ms)."""

    def __init__(self, now_ms: int = 1_800_000_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def test_due_hands_out_unpublished_then_stale_oldest_first(tmp_path: Path) -> None:
    clock = FakeClock()
    q = DiskQueue(tmp_path / "q.db", clock=clock)
    for spot in range(1, 5):
        q.append(VehicleDocked(spot, f"AB{spot:04d}"))
    first = q.due(2, timeout_ms=30_000)
    assert [m.seq for m in first] == [1, 2] and all(m.published_ms is None for m in first)
    q.mark_published([m.row for m in first])
    assert q.awaiting_ack() == 2
    assert [m.seq for m in q.due(10, timeout_ms=30_000)] == [3, 4]  # 1, 2 await their Ack
    clock.now_ms += 10_000
    q.mark_published([m.row for m in q.due(10, timeout_ms=30_000)])
    assert q.due(10, timeout_ms=30_000) == [] and q.awaiting_ack() == 4
    assert q.next_due_ms(timeout_ms=30_000) == clock.now_ms - 10_000 + 30_000
    clock.now_ms += 20_000  # 1, 2 waited 30 s unacknowledged; 3, 4 only 20 s
    again = q.due(10, timeout_ms=30_000)
    assert [(m.seq, m.published_ms) for m in again] == [(1, clock.now_ms - 30_000),
                                                        (2, clock.now_ms - 30_000)]
    assert [m.payload for m in again] == [m.payload for m in first]  # same stamp, same bytes
    q.mark_published([m.row for m in again])
    assert q.due(10, timeout_ms=30_000) == []  # at most once per timeout
    assert q.next_due_ms(timeout_ms=30_000) == clock.now_ms + 10_000  # 3, 4 next
    assert q.depth() == 4 and q.pending_from() == 1  # nothing deleted by publishing


def test_due_after_a_new_session_and_a_clock_set_back(tmp_path: Path) -> None:
    clock = FakeClock()
    q = DiskQueue(tmp_path / "q.db", clock=clock)
    q.append(PowerCut())
    q.append(PowerCut())
    q.mark_published([m.row for m in q.due(10, timeout_ms=30_000)])
    clock.now_ms += 1_000
    session = clock.now_ms  # a reconnect: everything unacknowledged goes again
    assert [m.seq for m in q.due(10, timeout_ms=30_000, since_ms=session)] == [1, 2]
    assert q.next_due_ms(timeout_ms=30_000, since_ms=session) == clock.now_ms
    q.mark_published([m.row for m in q.due(1, timeout_ms=30_000, since_ms=session)])
    assert [m.seq for m in q.due(10, timeout_ms=30_000, since_ms=session)] == [2]
    # rows being published (awaiting their PUBACK) are skipped when asking what falls due next
    first_row = q.pending(1)[0].row
    assert q.next_due_ms(timeout_ms=30_000, since_ms=session, skip={first_row + 1}) == (
        session + 30_000
    )
    clock.now_ms -= 3_600_000  # the device clock was an hour ahead and got corrected
    assert [m.seq for m in q.due(10, timeout_ms=30_000)] == [1, 2]


def test_ack_ranges_delete_in_one_go_and_keep_pending_from(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q.db", max_telemetry=1000)
    stamps = [q.append(PowerCut()) for _ in range(6)] + [q.append(Telemetry()) for _ in range(2)]
    q.mark_published([m.row for m in q.due(100, timeout_ms=30_000)])
    boot = q.boot_id
    assert q.ack_ranges([(boot, 2, 3), (boot, 5, 7), (boot + 1, 1, 8)]) == 5
    assert [m.seq for m in q.pending(100)] == [1, 4, 8]
    assert q.depth() == 3 and q.depth_by_channel() == {"evt": 2, "tlm": 1}
    assert q.awaiting_ack() == 3 and q.counters.acked == 5
    assert q.pending_from() == 1  # the lowest seq still queued, acked ones above it or not
    assert q.ack_ranges([(boot, 1, 1), (boot, 1, 2**32 - 1)]) == 3
    assert q.depth() == 0 and q.pending_from() == stamps[-1].seq + 1
    assert q.ack_ranges([]) == 0 and q.oldest_age_ms() is None


def test_stats_report_depth_awaiting_and_oldest_age(tmp_path: Path) -> None:
    clock = FakeClock()
    q = DiskQueue(tmp_path / "q.db", clock=clock)
    q.append(PowerCut())
    clock.now_ms += 2_500
    q.append(PowerCut())
    q.mark_published([m.row for m in q.due(1, timeout_ms=30_000)])
    clock.now_ms += 1_000
    stats = q.stats()
    assert (stats["depth"], stats["awaiting_ack"], stats["oldest_unacked_s"]) == (2, 1, 3.5)


def test_marks_survive_reopen(tmp_path: Path) -> None:
    clock = FakeClock()
    q = DiskQueue(tmp_path / "q.db", clock=clock)
    q.append(PowerCut())
    q.mark_published([m.row for m in q.due(1, timeout_ms=30_000)])
    q.close()
    q2 = DiskQueue(tmp_path / "q.db", clock=clock)
    assert q2.awaiting_ack() == 1 and q2.pending(1)[0].published_ms == clock.now_ms
    assert q2.due(1, timeout_ms=30_000) == []
    assert [m.seq for m in q2.due(1, timeout_ms=30_000, since_ms=clock.now_ms + 1)] == [1]


def test_a_queue_file_of_the_previous_version_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(
        """
        CREATE TABLE queue (
            id INTEGER PRIMARY KEY AUTOINCREMENT, boot_id INTEGER NOT NULL,
            seq INTEGER NOT NULL, channel TEXT NOT NULL, ts_ms INTEGER NOT NULL,
            payload BLOB NOT NULL, UNIQUE (boot_id, seq)
        );
        CREATE INDEX queue_channel ON queue (channel, id);
        CREATE TABLE boots (boot_id INTEGER PRIMARY KEY, started_ms INTEGER NOT NULL);
        CREATE TABLE device_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        """
    )
    stamp = Stamp(77, 3, 1_800_000_000_000)
    payload = codec.encode_up(stamp, PowerCut())
    old.execute(
        "INSERT INTO queue (boot_id, seq, channel, ts_ms, payload) VALUES (?, ?, ?, ?, ?)",
        (77, 3, "evt", stamp.ts_ms, payload),
    )
    old.execute("INSERT INTO device_state (key, value) VALUES ('spot.1', 'docked')")
    old.close()

    q = DiskQueue(path)
    (message,) = q.due(10, timeout_ms=30_000)
    assert (message.key, message.payload, message.published_ms) == ((77, 3), payload, None)
    assert q.load_state("spot.1") == "docked" and q.depth() == 1
    q.mark_published([message.row])
    assert q.ack_ranges([(77, 3, 3)]) == 1
    q.close()
    assert DiskQueue(path).depth() == 0  # and it opens again without migrating twice


def test_stats_after_close_keep_what_is_in_memory(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q.db")
    q.append(PowerCut())
    q.close()  # an agent that stopped still answers its health endpoint
    stats = q.stats()
    assert (stats["depth"], stats["awaiting_ack"], stats["oldest_unacked_s"]) == (1, None, None)
