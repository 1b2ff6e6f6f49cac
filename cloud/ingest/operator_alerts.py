"""What ingest tells operators about delivery, in the transaction of the batch that found it:
dead letters stored (``device-message-dead-lettered``: one alert per device and reason, each
letter an occurrence) and device clocks flagged by :func:`~kickstand.cloud.ingest.rules.
device_time` (``device-clock-wrong``). The rules themselves are the alert engine's
(:mod:`kickstand.cloud.alerts.delivery_rules`).

Raising never costs the batch: it runs in a savepoint, and a failure that is not transient
is counted (``IngestStats.alert_failures``) and logged — a dead letter must be stored even
when its alert cannot be raised (else the store would fail, be retried, fail again…).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.ingest.batch import DeviceInfo, Inbound, IngestStats
from kickstand.cloud.ingest.deadletters import Letter
from kickstand.cloud.transient import is_transient

if TYPE_CHECKING:
    from kickstand.cloud.alerts.engine import AlertEngine

#: Per-worker memory of the clock alerts raised (a device at most once per interval).
_MEMORY_MAX = 100_000


@dataclass
class OperatorAlerts:
    alerts: AlertEngine
    stats: IngestStats
    #: A device's flagged clock counts on its alert at most this often per worker: every
    #: message of a device with a wrong clock is flagged, and each raise locks the alert's
    #: row (workers would queue on it). The sweep stops the alert ``clock_ok_s`` after the
    #: last raise, well above this.
    clock_every_s: float = 60.0
    _clock_raised: dict[str, float] = field(default_factory=dict)

    async def letters(
        self, session: AsyncSession, letters: Iterable[Letter], infos: dict[str, DeviceInfo]
    ) -> None:
        """Dead letters stored in this transaction (not replays: an operator is on those)."""
        groups: dict[tuple[str, str], list[Letter]] = {}
        for letter in letters:
            if letter.replay_of is None and letter.device_id in infos:
                assert letter.device_id is not None
                groups.setdefault((letter.device_id, letter.reason), []).append(letter)
        if not groups:
            return

        async def raise_all() -> None:
            for (device_id, reason), group in sorted(groups.items()):
                await self.alerts.on_dead_letters(
                    session,
                    device_id,
                    reason,
                    len(group),
                    device=infos[device_id].ref,
                    error=group[-1].error,
                )

        await self._guarded(session, raise_all)

    async def clocks(
        self, session: AsyncSession, items: Iterable[Inbound], infos: dict[str, DeviceInfo]
    ) -> None:
        """Messages whose device clock ``prepare`` flagged (of devices the cloud knows)."""
        flagged: dict[str, list[Inbound]] = {}
        for item in items:
            if item.flagged_ts_ms is not None and item.device_id in infos:
                flagged.setdefault(item.device_id, []).append(item)
        if not flagged:
            return
        now = time.monotonic()
        due = sorted(
            device_id
            for device_id in flagged
            if self._clock_raised.get(device_id, -1e18) + self.clock_every_s <= now
        )
        if not due:
            return
        if len(self._clock_raised) > _MEMORY_MAX:
            self._clock_raised.clear()

        async def raise_all() -> None:
            for device_id in due:
                last = flagged[device_id][-1]
                assert last.flagged_ts_ms is not None
                await self.alerts.on_clock_flagged(
                    session,
                    device_id,
                    len(flagged[device_id]),
                    ts_ms=last.flagged_ts_ms,
                    received_ms=last.received_ms,
                    device=infos[device_id].ref,
                )

        if await self._guarded(session, raise_all):
            for device_id in due:
                self._clock_raised[device_id] = now

    async def _guarded(
        self, session: AsyncSession, raise_all: Callable[[], Awaitable[None]]
    ) -> bool:
        try:
            async with session.begin_nested():
                await raise_all()
        except Exception as exc:
            if is_transient(exc):
                raise
            self.alerts.forget_causes(session)
            self.stats.alert_failures += 1
            self.stats.log_limited("ingest_alert_failed", type(exc).__name__, error=exc)
            return False
        return True


__all__ = ["OperatorAlerts"]
