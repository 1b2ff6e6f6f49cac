"""The one liveness rule (SPEC §4.3.6): offline after the current boot's death, or after
three heartbeat intervals of silence (the device's own interval)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kickstand.cloud.liveness import DEFAULT_HEARTBEAT_S, Presence, is_online, why_offline

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def test_online_until_three_heartbeat_intervals_of_silence() -> None:
    assert is_online(Presence(True, NOW - timedelta(seconds=89), 30), NOW)
    assert is_online(Presence(True, NOW - timedelta(seconds=90), 30), NOW)
    silent = Presence(True, NOW - timedelta(seconds=91), 30)
    assert why_offline(silent, NOW) == "device silent for more than 90 s"
    # Its own interval, not a global one.
    assert not is_online(Presence(True, NOW - timedelta(seconds=4), 1), NOW)
    assert is_online(Presence(True, NOW - timedelta(seconds=4), 2), NOW)


def test_no_interval_on_record_counts_the_default() -> None:
    limit = 3 * DEFAULT_HEARTBEAT_S
    assert is_online(Presence(True, NOW - timedelta(seconds=limit - 1)), NOW)
    assert not is_online(Presence(True, NOW - timedelta(seconds=limit + 1)), NOW)


def test_dead_unknown_or_never_seen_is_offline() -> None:
    assert why_offline(None, NOW) == "unknown device"
    assert why_offline(Presence(None, None), NOW) == "unknown device"
    reason = why_offline(Presence(False, NOW - timedelta(seconds=1), 30), NOW)
    assert reason is not None and reason.startswith("device is offline (last seen 2026-12-06")
    assert not is_online(Presence(True, None, 30), NOW)


def test_naive_times_from_sqlite_are_utc() -> None:
    naive = (NOW - timedelta(seconds=10)).replace(tzinfo=None)
    assert is_online(Presence(True, naive, 30), NOW)
    assert not is_online(Presence(True, naive, 3), NOW)
