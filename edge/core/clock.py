"""The device's idea of the time: the wall clock plus an offset learnt from the cloud."""

from __future__ import annotations

import time


class DeviceClock:
    """``now_ms()`` = local wall clock + ``offset_ms``; the offset follows TimeReply.

    offset correction = server_time_ms - (device_ts_ms + rtt / 2), with the round trip
    measured on this clock (the heartbeat's stamp is echoed back as ``device_ts_ms``).
    """

    def __init__(self, offset_ms: int = 0) -> None:
        self.offset_ms = offset_ms
        self.last_rtt_ms: int | None = None
        self.synced = False

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    def adjust(self, server_time_ms: int, device_ts_ms: int, received_ms: int | None = None) -> int:
        """Apply one TimeReply; returns the correction applied (ms)."""
        received = self.now_ms() if received_ms is None else received_ms
        rtt = max(0, received - device_ts_ms)
        correction = server_time_ms - (device_ts_ms + rtt // 2)
        self.offset_ms += correction
        self.last_rtt_ms = rtt
        self.synced = True
        return correction
