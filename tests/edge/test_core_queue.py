"""DiskQueue and SqliteReplayGuard: order, durability across reopen, bounding policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from kickstand.edge.core import DiskQueue, QueueError, SqliteReplayGuard
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1.enums import SpotState
from kickstand.protocol.v1.messages import Heartbeat, PowerCut, Status, Telemetry, VehicleDocked


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
