"""The fleet alert rules: fed by decoded device messages, trip ends and a periodic sweep.

The caller owns the transaction: every entry point only adds to the session (and
flushes), so an alert change and its outbox record commit with the state change
that caused it. Call :meth:`AlertEngine.on_device_message` once per *new* message
(after the dedupe of :class:`~kickstand.protocol.sequence.SequenceTracker`), and
:meth:`AlertEngine.sweep` every minute or so.

One open alert per cause (type + device/spot/vehicle/trip): a recurrence counts an
occurrence on the open alert; a cause that comes back within ``flap_window_s`` of
its alert being stopped reopens that alert instead of making a new one.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.alerts.badge_rules import BadgeRules
from kickstand.cloud.alerts.core import (  # re-exported: the public surface
    AlertChange,
    AlertConfig,
    AlertCore,
    Subject,
    alert_payload,
    causality,
    point,
    trip_subject,
    utcnow,
    vehicle_extra,
    vehicle_subject,
)
from kickstand.cloud.alerts.delivery_rules import DeliveryRules
from kickstand.cloud.alerts.device_rules import (
    AUTHORIZED_UNLOCK_CAUSES,
    BOITIER_CHAIN_TYPE_UPDATED,
    BOITIER_LOCKED,
    BOITIER_PASS_UNRECOGNIZED,
    BOITIER_PIN_INCORRECT,
    BOITIER_UNLOCKED,
    CLEARED_BY_DOCKING,
    MOTION_CLEARED_BY_USE,
    MOTION_TYPES,
    VEHICULE_BATTERY_LOW,
    VEHICULE_BATTERY_VAE_LOW,
    DeviceRef,
    DeviceRules,
)
from kickstand.cloud.alerts.fleet_rules import FleetRules
from kickstand.cloud.alerts.types import (
    AlertType,
)
from kickstand.cloud.models import (
    Network,
    OutOfBorderPolicy,
    Trip,
    Vehicle,
)
from kickstand.protocol.v1 import messages as m

log = logging.getLogger("kickstand.cloud.alerts.engine")


class AlertEngine(BadgeRules, FleetRules):
    """Raises, counts and stops fleet alerts. Stateless apart from counters: share one."""

    # ── entry points ──────────────────────────────────────────────────────────────────

    async def on_device_message(
        self,
        session: AsyncSession,
        device_id: str,
        message: m.UpMessage,
        *,
        now: datetime | None = None,
        device: DeviceRef | None = None,
    ) -> list[AlertChange]:
        """Apply the rules to one decoded device message (not a duplicate). ``device``: the
        station or vehicle the caller knows the device to be (else looked up)."""
        now = now or self.clock()
        ctx = await self._device_context(session, device_id, device)
        if ctx is None:
            self.counters["unknown_device"] += 1
            log.warning(
                "event=alert_message_rejected reason=unknown_device device_id=%s", device_id
            )
            return []
        body = message.body
        self.counters["messages"] += 1
        changes: list[AlertChange] = []
        try:
            if ctx.station_id is not None:
                changes += await self._station_rules(session, ctx, body, now)
                changes += await self._lock_fault_rules(
                    session, device_id, ctx.station_id, body, now
                )
            elif ctx.vehicle_id is not None:
                changes += await self._vehicle_rules(session, ctx, body, now)
        except (TypeError, ValueError, AttributeError) as exc:
            # A malformed body (should not pass the codec) is logged and counted, never raised.
            self.counters["rule_errors"] += 1
            log.warning(
                "event=alert_rule_failed device_id=%s body=%s error=%r",
                device_id,
                type(body).__name__,
                exc,
            )
        return changes

    async def prefetch(
        self, session: AsyncSession, messages: list[tuple[DeviceRef, m.UpMessage]]
    ) -> None:
        """Before :meth:`on_device_message` for many devices' telemetry and statuses (an
        ingest batch): the open alerts their rules may stop, in one query, not one each."""
        await self.prefetch_causes(
            session, [key for ref, msg in messages for key in self._sampled_causes(ref, msg.body)]
        )

    async def on_trip_terminated(
        self, session: AsyncSession, trip: Trip, *, now: datetime | None = None
    ) -> list[AlertChange]:
        """A finished free-float trip that ends outside the network → vehicle-return-outside."""
        now = now or self.clock()
        if not trip.free_floating_end or trip.end_latitude is None or trip.end_longitude is None:
            return []
        network = await session.get(Network, trip.network_id)
        if network is None or network.out_of_border_policy == OutOfBorderPolicy.NONE:
            return []
        inside = self._inside(network, trip.end_latitude, trip.end_longitude)
        if inside is None or inside:
            return []
        subject = await trip_subject(session, trip)
        subject.extra["location"] = point(trip.end_latitude, trip.end_longitude)
        return [
            await self.raise_alert(
                session,
                AlertType.VEHICLE_RETURN_OUTSIDE,
                subject,
                now=now,
                message=f"trip {trip.id} ended outside the network area",
            )
        ]

    async def report_lost(
        self,
        session: AsyncSession,
        vehicle_id: int,
        *,
        user_id: int | None = None,
        note: str | None = None,
        now: datetime | None = None,
    ) -> AlertChange:
        """A rider or an operator reports a vehicle lost (vehicle-lost-reported)."""
        vehicle = await session.get_one(Vehicle, vehicle_id)
        subject = vehicle_subject(vehicle)
        subject.user_id = user_id
        if note:
            subject.extra["note"] = note[:300]
        return await self.raise_alert(
            session,
            AlertType.VEHICLE_LOST_REPORTED,
            subject,
            now=now or self.clock(),
            message=f"vehicle {vehicle.serial_number} reported lost",
        )

    async def sweep(self, session: AsyncSession, now: datetime | None = None) -> list[AlertChange]:
        """The rules of silence and time: run periodically (one worker at a time is enough;
        several are safe: the open-cause index refuses a second alert)."""
        now = now or self.clock()
        changes: list[AlertChange] = []
        changes += await self._sweep_no_tracking(session, now)
        changes += await self._sweep_idle(session, now)
        changes += await self._sweep_operational_period(session, now)
        changes += await self._sweep_not_returned(session, now)
        changes += await self._sweep_lost(session, now)
        changes += await self._sweep_docked_vehicles(session, now)
        changes += await self._sweep_silence_expired(session, now)
        changes += await self._sweep_clock(session, now)
        changes += await self._sweep_offline_stations(session, now)
        changes += await self._sweep_silent_vehicles(session, now)
        changes += await self._sweep_offline_too_long(session, now)
        changes += await self._sweep_two_spots(session, now)
        changes += await self._sweep_certificates_expiring(session, now)
        return changes


__all__ = [
    "AUTHORIZED_UNLOCK_CAUSES",
    "BOITIER_CHAIN_TYPE_UPDATED",
    "BOITIER_LOCKED",
    "BOITIER_PASS_UNRECOGNIZED",
    "BOITIER_PIN_INCORRECT",
    "BOITIER_UNLOCKED",
    "CLEARED_BY_DOCKING",
    "MOTION_CLEARED_BY_USE",
    "MOTION_TYPES",
    "VEHICULE_BATTERY_LOW",
    "VEHICULE_BATTERY_VAE_LOW",
    "AlertChange",
    "AlertConfig",
    "AlertCore",
    "AlertEngine",
    "BadgeRules",
    "DeliveryRules",
    "DeviceRef",
    "DeviceRules",
    "FleetRules",
    "Subject",
    "alert_payload",
    "causality",
    "point",
    "utcnow",
    "vehicle_extra",
    "vehicle_subject",
]
