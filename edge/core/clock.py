"""The device's idea of the time: the wall clock plus an offset learnt from the cloud.

SPEC §4.8: step at boot (the BootReply's time), slew after. A TimeReply's small
correction is applied gradually (:data:`SLEW_PPM`), so stamps never jump back within a
boot; a correction larger than :data:`STEP_THRESHOLD_MS` (a clock that went badly
wrong) is stepped at once.
"""

from __future__ import annotations

import time

#: A correction larger than this is stepped even after the boot's step.
STEP_THRESHOLD_MS = 2_000
#: How fast a slewed correction is applied: 5 ms per second of wall time (NTP slews at
#: 0.5 ms/s; a device's heartbeat is tens of seconds, and drift between two is small).
SLEW_PPM = 5_000


class DeviceClock:
    """``now_ms()`` = local wall clock + ``offset_ms``; the offset follows the cloud.

    correction = server_time_ms - (device_ts_ms + rtt / 2), with the round trip measured
    on this clock (the heartbeat's stamp is echoed back as ``device_ts_ms``).
    """

    def __init__(self, offset_ms: int = 0) -> None:
        self.offset_ms = offset_ms
        self.last_rtt_ms: int | None = None
        self.synced = False
        #: The part of the last correction not applied yet (slewing), and since when.
        self._slew_ms = 0
        self._slew_from = time.monotonic()

    def now_ms(self) -> int:
        self._slew()
        return time.time_ns() // 1_000_000 + self.offset_ms

    def _slew(self) -> None:
        if not self._slew_ms:
            return
        now = time.monotonic()
        budget = int((now - self._slew_from) * SLEW_PPM / 1000)
        if budget <= 0:
            return
        step = max(-budget, min(budget, self._slew_ms))
        self.offset_ms += step
        self._slew_ms -= step
        self._slew_from = now

    def adjust(
        self,
        server_time_ms: int,
        device_ts_ms: int,
        received_ms: int | None = None,
        *,
        step: bool = False,
    ) -> int:
        """Apply one BootReply (``step=True``) or TimeReply; returns the correction (ms).

        Stepped when asked, before the first sync, or when larger than
        :data:`STEP_THRESHOLD_MS`; otherwise slewed."""
        received = self.now_ms() if received_ms is None else received_ms
        rtt = max(0, received - device_ts_ms)
        correction = server_time_ms - (device_ts_ms + rtt // 2)
        self.last_rtt_ms = rtt
        if step or not self.synced or abs(correction) > STEP_THRESHOLD_MS:
            self.offset_ms += correction
            self._slew_ms = 0
        else:
            self._slew()
            self._slew_ms = correction  # the newest measurement replaces what was pending
            self._slew_from = time.monotonic()
        self.synced = True
        return correction
