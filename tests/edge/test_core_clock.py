"""The device clock (SPEC §4.8): step at boot, slew small corrections after, step a large
one; stamps never jump back for a small correction."""

from __future__ import annotations

import itertools

import pytest

from kickstand.edge.core import clock as clock_module
from kickstand.edge.core.clock import SLEW_PPM, STEP_THRESHOLD_MS, DeviceClock

WALL_MS = 1_800_000_000_000


class FakeTime:
    """Wall and monotonic time that move only when told."""

    def __init__(self) -> None:
        self.wall_ms = WALL_MS
        self.mono_s = 100.0

    def time_ns(self) -> int:
        return self.wall_ms * 1_000_000

    def monotonic(self) -> float:
        return self.mono_s

    def advance(self, seconds: float) -> None:
        self.wall_ms += int(seconds * 1000)
        self.mono_s += seconds


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(clock_module, "time", fake)
    return fake


def test_the_boot_reply_steps_the_clock(fake_time: FakeTime) -> None:
    clock = DeviceClock()
    correction = clock.adjust(WALL_MS + 6_000, clock.now_ms(), step=True)
    assert correction == 6_000
    assert clock.now_ms() == WALL_MS + 6_000


def test_a_small_correction_is_slewed_never_stepped_back(fake_time: FakeTime) -> None:
    clock = DeviceClock()
    clock.adjust(WALL_MS, clock.now_ms(), step=True)
    # The local clock ran 500 ms fast; a TimeReply (server time unchanged) says so.
    fake_time.wall_ms += 500
    before = clock.now_ms()
    assert clock.adjust(WALL_MS, before, received_ms=before) == -500
    assert clock.now_ms() == before  # nothing jumps
    stamps = []
    for _ in range(200):
        fake_time.advance(1.0)
        stamps.append(clock.now_ms())
    assert all(b > a for a, b in itertools.pairwise(stamps))  # never back
    # 500 ms at SLEW_PPM (5 ms/s) take 100 s: absorbed within the 200 s.
    assert SLEW_PPM == 5_000
    assert stamps[-1] == fake_time.wall_ms - 500


def test_a_large_correction_is_stepped_even_after_boot(fake_time: FakeTime) -> None:
    clock = DeviceClock()
    clock.adjust(WALL_MS, clock.now_ms(), step=True)
    now = clock.now_ms()
    big = STEP_THRESHOLD_MS + 1_000
    clock.adjust(now - big, now, received_ms=now)
    assert clock.now_ms() == now - big
