"""Ingest merges a device's Acks over ACK_DELAY_S (SPEC §4.6), and never keeps one for ever."""

from __future__ import annotations

import asyncio

from kickstand.cloud.ingest.worker import AckBatcher


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_keys_wait_for_the_delay_then_go_in_one_ack_per_device() -> None:
    sent: list[tuple[str, list[tuple[int, int]]]] = []
    clock = _Clock()
    batcher = AckBatcher(lambda d, keys: sent.append((d, keys)), 10.0, clock=clock)
    batcher.add("vh-AAAA1", 7, 1)
    batcher.add("st-0001", 9, 4)
    batcher.flush_due()
    assert sent == [] and batcher.waiting == 2
    clock.now += 5
    batcher.add("vh-AAAA1", 7, 2)
    batcher.flush_due()
    assert sent == []
    clock.now += 5  # the oldest key of both devices is 10 s old
    batcher.flush_due()
    assert sorted(sent) == [("st-0001", [(9, 4)]), ("vh-AAAA1", [(7, 1), (7, 2)])]
    assert batcher.waiting == 0


def test_no_delay_sends_at_once_and_a_busy_device_does_not_wait() -> None:
    sent: list[tuple[str, list[tuple[int, int]]]] = []
    clock = _Clock()
    now = AckBatcher(lambda d, keys: sent.append((d, keys)), 0.0, clock=clock)
    now.add("st-0001", 1, 1)
    now.flush_due()
    assert sent == [("st-0001", [(1, 1)])]
    sent.clear()
    busy = AckBatcher(lambda d, keys: sent.append((d, keys)), 10.0, flush_keys=3, clock=clock)
    for seq in (1, 2, 3):
        busy.add("st-0002", 1, seq)
    busy.flush_due()
    assert sent == [("st-0002", [(1, 1), (1, 2), (1, 3)])]


async def test_the_ticker_flushes_and_close_sends_what_waits() -> None:
    sent: list[str] = []
    batcher = AckBatcher(lambda d, keys: sent.append(d), 0.2)
    batcher.start()
    batcher.add("st-0001", 1, 1)
    await asyncio.sleep(0.5)
    assert sent == ["st-0001"]  # no batch came after it: the ticker sent it
    batcher.add("st-0002", 1, 1)
    await batcher.close()
    assert sent == ["st-0001", "st-0002"]  # committed keys are acknowledged on the way out
