"""Rules of delivery (issue 13): a device's messages the cloud kept as dead letters, a device
clock ingest did not trust, and messages a device sent that never reached the cloud.

Fed by ingest (:mod:`kickstand.cloud.ingest`) in the transaction that stored the letters,
applied the messages or checked the gap; the alert sits on the device's station or vehicle
(so an operator sees the alerts of their networks only).

* ``device-message-dead-lettered`` — one open alert per device and dead-letter reason; more
  letters count occurrences on it. Resolving it is the operator's, after replaying or
  discarding the letters (the dashboard's dead-letter routes): a replay does not stop it,
  since a device's other letters of that reason may still wait, and an alert that vanished
  by itself would hide a bug that was fixed only for the one letter tried.
* ``device-clock-wrong`` — one open alert per device, occurrences counted; it stops by
  itself (:meth:`DeliveryRules._sweep_clock`) once the device kept talking for
  ``clock_ok_s`` after its last implausible stamp.
* ``device-messages-missing`` — one open alert per device, raised by ingest's gap check
  (:mod:`kickstand.cloud.ingest.gaps`) with the number missing; it stops when the messages
  come after all (a worker far behind), else an operator resolves it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.alerts.core import AlertChange, Subject, _aware, vehicle_subject
from kickstand.cloud.alerts.device_rules import DeviceRef, DeviceRules, _DeviceContext
from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import OPEN_STATES, AlertType
from kickstand.cloud.models import Device

log = logging.getLogger("kickstand.cloud.alerts.delivery_rules")

#: Dead-letter reasons, as an operator reads them in an alert's message.
_REASON_TEXT = {
    "unknown-device": "the device is unknown",
    "decommissioned-device": "the device is decommissioned",
    "no-boot": "no birth of the device was accepted",
    "vehicle-spot-status": "a vehicle reported a spot status",
    "unstorable": "a value the database cannot store",
    "apply-failed": "applying it failed",
}


def _subject_key(ctx: _DeviceContext) -> str:
    # What _spot_subject (spot 0) and vehicle_subject name the device by.
    return ctx.device_id if ctx.station_id is not None else f"vehicle:{ctx.vehicle_id}"


class DeliveryRules(DeviceRules):
    """Dead letters, device clocks and lost messages of stations and vehicles."""

    async def _device_subject(
        self, session: AsyncSession, device_id: str, ref: DeviceRef | None
    ) -> Subject | None:
        """The device's station (cluster, network) or vehicle; None: neither (a device
        unknown to the cloud has no network an operator could be shown it in)."""
        ctx = await self._device_context(session, device_id, ref)
        if ctx is None:
            self.counters["unknown_device"] += 1
            return None
        if ctx.station_id is not None:
            return await self._spot_subject(session, ctx, 0)
        return vehicle_subject(await self._load_vehicle(session, ctx))

    async def on_dead_letters(
        self,
        session: AsyncSession,
        device_id: str,
        reason: str,
        count: int,
        *,
        device: DeviceRef | None = None,
        error: str = "",
        now: datetime | None = None,
    ) -> AlertChange | None:
        """``count`` messages of the device were stored as dead letters for ``reason`` (in
        this transaction): one alert per device and reason, each letter an occurrence."""
        subject = await self._device_subject(session, device_id, device)
        if subject is None:
            return None
        subject.key = f"{subject.key}#{reason}"
        why = _REASON_TEXT.get(reason, reason)
        return await self.raise_alert(
            session,
            AlertType.DEVICE_MESSAGE_DEAD_LETTERED,
            subject,
            now=now or self.clock(),
            message=f"messages of {subject.label} kept as dead letters ({why}): replay or "
            "discard them once the cause is fixed",
            extra={"dead_letter_reason": reason, "last_error": error[:200]},
            count=count,
        )

    async def on_clock_flagged(
        self,
        session: AsyncSession,
        device_id: str,
        count: int,
        *,
        ts_ms: int,
        received_ms: int,
        device: DeviceRef | None = None,
        now: datetime | None = None,
    ) -> AlertChange | None:
        """``count`` messages of the device came stamped outside the plausible window
        (SPEC §4.2) and were applied at their receive time: its clock is wrong."""
        subject = await self._device_subject(session, device_id, device)
        if subject is None:
            return None
        return await self.raise_alert(
            session,
            AlertType.DEVICE_CLOCK_WRONG,
            subject,
            now=now or self.clock(),
            message=f"clock of {subject.label} is wrong: its messages are applied at the "
            "time the cloud received them",
            extra={
                "device_ts_ms": ts_ms,
                "received_ms": received_ms,
                "clock_offset_s": round((ts_ms - received_ms) / 1000),
            },
            count=count,
        )

    async def on_messages_missing(
        self,
        session: AsyncSession,
        device_id: str,
        *,
        boot_id: int,
        missing: int,
        pending_from: int,
        delivered: int,
        device: DeviceRef | None = None,
        now: datetime | None = None,
    ) -> AlertChange | None:
        """Of the ``pending_from - 1`` messages the device's boot sent before its last birth,
        ``missing`` never reached the cloud (lost for good: the device no longer holds them)."""
        subject = await self._device_subject(session, device_id, device)
        if subject is None:
            return None
        return await self.raise_alert(
            session,
            AlertType.DEVICE_MESSAGES_MISSING,
            subject,
            now=now or self.clock(),
            message=f"{missing} messages of {subject.label} never reached the cloud (boot "
            f"{boot_id}: {delivered} of {pending_from - 1} arrived); telemetry the device "
            "thinned when its queue was full counts as missing too",
            extra={
                "boot_id": boot_id,
                "missing": missing,
                "pending_from": pending_from,
                "delivered": delivered,
            },
        )

    async def on_messages_recovered(
        self,
        session: AsyncSession,
        device_id: str,
        *,
        device: DeviceRef | None = None,
        now: datetime | None = None,
    ) -> AlertChange | None:
        """The messages reported missing came after all (no boot of the device misses any)."""
        ctx = await self._device_context(session, device_id, device)
        if ctx is None:
            return None
        return await self.stop_alert(
            session, AlertType.DEVICE_MESSAGES_MISSING, _subject_key(ctx), now=now or self.clock()
        )

    async def _sweep_clock(self, session: AsyncSession, now: datetime) -> list[AlertChange]:
        """A device-clock-wrong alert stops when the device kept talking ``clock_ok_s``
        after its last implausible stamp: every message meanwhile had a plausible one (ingest
        counts an occurrence, i.e. moves ``last_seen_at``, at least once a minute while they
        do not). A device that went silent keeps its alert: nothing says its clock is right."""
        quiet = timedelta(seconds=self.config.clock_ok_s)
        rows = await session.execute(
            select(FleetAlert, Device.last_seen_at)
            .join(Device, Device.device_id == FleetAlert.device_id)
            .where(
                FleetAlert.alert_type == AlertType.DEVICE_CLOCK_WRONG,
                FleetAlert.state.in_(OPEN_STATES),
                FleetAlert.last_seen_at < now - quiet,
                Device.last_seen_at.is_not(None),
            )
            .order_by(FleetAlert.id)
            .with_for_update(of=FleetAlert)
        )
        # The interval compared here, not in SQL (SQLite has no timestamp arithmetic).
        changes: list[AlertChange] = []
        for row in rows.all():
            alert: FleetAlert = row[0]
            seen: datetime | None = row[1]
            if seen is not None and _aware(seen) >= _aware(alert.last_seen_at) + quiet:
                changes.append(self.stop(session, alert, now))
        return changes


__all__ = ["DeliveryRules"]
