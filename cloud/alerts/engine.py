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
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ScalarResult, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import outbox
from kickstand.cloud.alerts import types as t
from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import (
    DEFAULT_SEVERITY,
    OPEN_STATES,
    AlertSeverity,
    AlertState,
    AlertType,
)
from kickstand.cloud.billing import RuleBook
from kickstand.cloud.errors import NoPricingRuleError
from kickstand.cloud.models import (
    ACTIVE_TRIP_STATUSES,
    Cluster,
    Network,
    OutOfBorderPolicy,
    PricingRule,
    Spot,
    Station,
    Trip,
    Vehicle,
    VehicleState,
)
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import BatteryKind, LockCause, MotionKind

log = logging.getLogger("kickstand.cloud.alerts.engine")

# Device events that map straight onto seed 000 webhook topics (vehicle lock box).
BOITIER_LOCKED = "boitier.locked"
BOITIER_UNLOCKED = "boitier.unlocked"
BOITIER_PASS_UNRECOGNIZED = "boitier.pass.unrecognized"
BOITIER_PIN_INCORRECT = "boitier.pin.incorrect"
BOITIER_CHAIN_TYPE_UPDATED = "boitier.chain_type.updated"
VEHICULE_BATTERY_LOW = "vehicule.battery.low"
VEHICULE_BATTERY_VAE_LOW = "vehicule.battery_vae.low"

MOTION_TYPES = {
    MotionKind.LIFTED: AlertType.VEHICLE_LIFTED,
    MotionKind.FALLEN: AlertType.VEHICLE_FALLEN,
    MotionKind.ILLEGAL_MOVING: AlertType.VEHICLE_ILLEGAL_MOVING,
    MotionKind.DISMANTLING: AlertType.VEHICLE_DISMANTLING,
}
#: Motion that a legitimate unlock or a docking explains (dismantling stays for people).
MOTION_CLEARED_BY_USE = (
    AlertType.VEHICLE_LIFTED,
    AlertType.VEHICLE_FALLEN,
    AlertType.VEHICLE_ILLEGAL_MOVING,
)
#: Vehicle alerts a docking at a station clears (the vehicle is back, in the network).
CLEARED_BY_DOCKING = (
    *MOTION_CLEARED_BY_USE,
    AlertType.VEHICLE_OUT_OF_NETWORK_AREA,
    AlertType.VEHICLE_RIDE_OUTSIDE,
    AlertType.VEHICLE_RETURN_OUTSIDE,
    AlertType.VEHICLE_LOST_REPORTED,
)
AUTHORIZED_UNLOCK_CAUSES = (LockCause.COMMAND, LockCause.BADGE, LockCause.OFFLINE_BADGE)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AlertConfig:
    #: Internal battery level (%) at or under which a low-battery alert is "high".
    battery_high_severity_pct: int = 10
    #: Level (%) from which a reported battery clears the low-battery alert (hysteresis).
    battery_clear_pct: int = 25
    #: No position for that long → lock-no-tracking.
    no_tracking_s: int = 3600
    #: No trip for that long (available vehicle) → vehicle-too-long-idle.
    idle_s: int = 72 * 3600
    #: A cause recurring within this time after its alert stopped reopens that alert.
    flap_window_s: int = 600
    #: A recurrence on an open alert writes a `fleet_alert.updated` event only if the cause
    #: was quiet for this long before (or the severity rose); it is always counted.
    recurrence_event_min_s: int = 60


@dataclass(frozen=True)
class AlertChange:
    """An alert that changed in this call and the outbox topic written for it."""

    alert: FleetAlert
    topic: str


@dataclass
class Subject:
    """What an alert is about, resolved from a device id, a vehicle or a trip."""

    key: str
    network_id: int | None = None
    cluster_id: int | None = None
    station_id: int | None = None
    spot_id: int | None = None
    spot_number: int | None = None
    vehicle_id: int | None = None
    trip_id: int | None = None
    user_id: int | None = None
    device_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    label: str = ""


@dataclass
class _DeviceContext:
    device_id: str
    station: Station | None = None
    cluster: Cluster | None = None
    vehicle: Vehicle | None = None

    @property
    def network_id(self) -> int | None:
        if self.vehicle is not None:
            return self.vehicle.network_id
        return self.cluster.network_id if self.cluster is not None else None


def point(lat: float | None, lon: float | None) -> dict[str, Any] | None:
    """A GeoJSON Point (coordinates [lng, lat]) or None."""
    if lat is None or lon is None:
        return None
    return {"type": "Point", "coordinates": [lon, lat]}


def vehicle_extra(vehicle: Vehicle) -> dict[str, Any]:
    """Seed 003 `extra` of a vehicle causality: location, state of charge, references."""
    extra: dict[str, Any] = {
        "vehicle_id": vehicle.id,
        "vehicle_serial_number": vehicle.serial_number,
        "vehicle_type": str(vehicle.vehicle_type),
        "lock_device_id": vehicle.device_id,
    }
    location = point(vehicle.latitude, vehicle.longitude)
    if location is not None:
        extra["location"] = location
    if vehicle.battery_level is not None:
        extra["state_of_charge"] = vehicle.battery_level
    if vehicle.assist_battery_level is not None:
        extra["assist_state_of_charge"] = vehicle.assist_battery_level
    return extra


def vehicle_subject(vehicle: Vehicle, key: str | None = None) -> Subject:
    return Subject(
        key=key or f"vehicle:{vehicle.id}",
        network_id=vehicle.network_id,
        vehicle_id=vehicle.id,
        device_id=vehicle.device_id,
        extra=vehicle_extra(vehicle),
        label=f"vehicle {vehicle.serial_number}",
    )


class AlertEngine:
    """Raises, counts and stops fleet alerts. Stateless apart from counters: share one."""

    def __init__(
        self,
        config: AlertConfig | None = None,
        *,
        emit_device_topics: bool = True,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config or AlertConfig()
        #: Also write the seed 000 device topics (boitier.*, vehicule.battery*.low).
        self.emit_device_topics = emit_device_topics
        self.clock = clock
        self.counters: Counter[str] = Counter()
        self._borders: dict[int, tuple[int, Any]] = {}

    # ── entry points ──────────────────────────────────────────────────────────────────

    async def on_device_message(
        self,
        session: AsyncSession,
        device_id: str,
        message: m.UpMessage,
        *,
        now: datetime | None = None,
    ) -> list[AlertChange]:
        """Apply the rules to one decoded device message (not a duplicate)."""
        now = now or self.clock()
        ctx = await self._device_context(session, device_id)
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
            if ctx.station is not None:
                changes += await self._station_rules(session, ctx, body, now)
            if ctx.vehicle is not None:
                changes += await self._vehicle_rules(session, ctx, ctx.vehicle, body, now)
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
        vehicle = await session.get(Vehicle, trip.vehicle_id)
        subject = (
            vehicle_subject(vehicle, f"trip:{trip.id}")
            if vehicle is not None
            else Subject(key=f"trip:{trip.id}", network_id=trip.network_id)
        )
        subject.trip_id, subject.user_id = trip.id, trip.user_id
        subject.extra["location"] = point(trip.end_latitude, trip.end_longitude)
        subject.extra["trip_id"] = trip.id
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
        changes += await self._sweep_lost(session, now)
        changes += await self._sweep_docked_vehicles(session, now)
        changes += await self._sweep_silence_expired(session, now)
        return changes

    # ── raising and stopping ──────────────────────────────────────────────────────────

    async def raise_alert(
        self,
        session: AsyncSession,
        alert_type: AlertType,
        subject: Subject,
        *,
        now: datetime,
        message: str | None = None,
        severity: AlertSeverity | None = None,
        extra: dict[str, Any] | None = None,
    ) -> AlertChange:
        """Open an alert for the cause, or count an occurrence on the one already open."""
        severity = severity or DEFAULT_SEVERITY[alert_type]
        cause_key = f"{alert_type.value}|{subject.key}"
        merged_extra = {**subject.extra, **(extra or {})}
        text = (message or f"{alert_type.value}: {subject.label or subject.key}")[:300]
        alert = await self._open_alert(session, cause_key)
        if alert is None:
            alert = await self._recently_stopped(session, cause_key, now)
            if alert is not None:
                alert.state = AlertState.NEW
                alert.stopped_at = None
                self.counters["reopened"] += 1
                return self._recur(session, alert, severity, merged_extra, now, notify=True)
            fresh = FleetAlert(
                network_id=subject.network_id,
                alert_type=alert_type,
                severity=severity,
                state=AlertState.NEW,
                cause_key=cause_key,
                device_id=subject.device_id,
                cluster_id=subject.cluster_id,
                station_id=subject.station_id,
                spot_id=subject.spot_id,
                spot_number=subject.spot_number,
                vehicle_id=subject.vehicle_id,
                trip_id=subject.trip_id,
                user_id=subject.user_id,
                message=text,
                extra=outbox.jsonable(merged_extra),
                occurrences=1,
                created_at=now,
                modified_at=now,
                last_seen_at=now,
            )
            try:
                async with session.begin_nested():
                    session.add(fresh)
                    await session.flush()
            except IntegrityError:
                # Another worker opened it between our look and our insert: count on theirs.
                self.counters["raise_races"] += 1
                alert = await self._open_alert(session, cause_key)
                if alert is None:
                    raise
                return self._recur(session, alert, severity, merged_extra, now)
            self.counters["raised"] += 1
            log.info(
                "event=fleet_alert_raised alert_id=%s type=%s cause=%s severity=%s",
                fresh.id,
                alert_type.value,
                cause_key,
                severity.value,
            )
            return self._emit(session, fresh, t.ALERT_CREATED)
        return self._recur(session, alert, severity, merged_extra, now)

    async def stop_alert(
        self, session: AsyncSession, alert_type: AlertType, subject_key: str, *, now: datetime
    ) -> AlertChange | None:
        """The condition cleared: the open alert of this cause (if any) becomes `stopped`."""
        alert = await self._open_alert(session, f"{alert_type.value}|{subject_key}")
        if alert is None:
            return None
        return self.stop(session, alert, now)

    def stop(self, session: AsyncSession, alert: FleetAlert, now: datetime) -> AlertChange:
        alert.state = AlertState.STOPPED
        alert.stopped_at = now
        alert.modified_at = now
        self.counters["stopped"] += 1
        log.info("event=fleet_alert_stopped alert_id=%s cause=%s", alert.id, alert.cause_key)
        return self._emit(session, alert, t.ALERT_STOPPED)

    async def _stop_many(
        self, session: AsyncSession, types: Iterable[AlertType], subject_key: str, now: datetime
    ) -> list[AlertChange]:
        changes = []
        for alert_type in types:
            change = await self.stop_alert(session, alert_type, subject_key, now=now)
            if change is not None:
                changes.append(change)
        return changes

    async def _stop_vehicle_alerts(
        self, session: AsyncSession, types: Iterable[AlertType], vehicle_id: int, now: datetime
    ) -> list[AlertChange]:
        """Stop every open alert of these types about the vehicle (whatever its cause key)."""
        rows: ScalarResult[FleetAlert] = await session.scalars(
            select(FleetAlert)
            .where(
                FleetAlert.vehicle_id == vehicle_id,
                FleetAlert.alert_type.in_(list(types)),
                FleetAlert.state.in_(OPEN_STATES),
            )
            .order_by(FleetAlert.id)
            .with_for_update()
        )
        return [self.stop(session, alert, now) for alert in rows.all()]

    def _recur(
        self,
        session: AsyncSession,
        alert: FleetAlert,
        severity: AlertSeverity,
        extra: dict[str, Any],
        now: datetime,
        *,
        notify: bool = False,
    ) -> AlertChange:
        previous = alert.last_seen_at
        alert.occurrences += 1
        alert.last_seen_at = now
        alert.modified_at = now
        if severity.rank > AlertSeverity(alert.severity).rank:
            alert.severity = severity
            notify = True
        alert.extra = {**(alert.extra or {}), **outbox.jsonable(extra)}
        self.counters["recurrences"] += 1
        quiet_s = self.config.recurrence_event_min_s
        if notify or previous is None or (now - _aware(previous)).total_seconds() >= quiet_s:
            return self._emit(session, alert, t.ALERT_UPDATED)
        # A sensor repeating itself: counted on the alert, no outbox event (no webhook flood).
        self.counters["recurrences_unannounced"] += 1
        return AlertChange(alert, t.ALERT_UPDATED)

    def _emit(self, session: AsyncSession, alert: FleetAlert, topic: str) -> AlertChange:
        outbox.emit(session, topic, "fleet_alert", alert.id, alert_payload(alert))
        return AlertChange(alert, topic)

    async def _open_alert(self, session: AsyncSession, cause_key: str) -> FleetAlert | None:
        return await session.scalar(
            select(FleetAlert)
            .where(FleetAlert.cause_key == cause_key, FleetAlert.state.in_(OPEN_STATES))
            .with_for_update()
        )

    async def _recently_stopped(
        self, session: AsyncSession, cause_key: str, now: datetime
    ) -> FleetAlert | None:
        since = now - timedelta(seconds=self.config.flap_window_s)
        return await session.scalar(
            select(FleetAlert)
            .where(
                FleetAlert.cause_key == cause_key,
                FleetAlert.state == AlertState.STOPPED,
                FleetAlert.stopped_at >= since,
            )
            .order_by(FleetAlert.id.desc())
            .limit(1)
            .with_for_update()
        )

    # ── device rules ──────────────────────────────────────────────────────────────────

    async def _device_context(self, session: AsyncSession, device_id: str) -> _DeviceContext | None:
        station = await session.scalar(select(Station).where(Station.device_id == device_id))
        if station is not None:
            cluster = await session.get(Cluster, station.cluster_id)
            return _DeviceContext(device_id, station=station, cluster=cluster)
        vehicle = await session.scalar(select(Vehicle).where(Vehicle.device_id == device_id))
        if vehicle is not None:
            return _DeviceContext(device_id, vehicle=vehicle)
        return None

    async def _spot_subject(self, session: AsyncSession, ctx: _DeviceContext, spot: int) -> Subject:
        station, cluster = ctx.station, ctx.cluster
        assert station is not None
        subject = Subject(
            key=f"{ctx.device_id}/{spot}" if spot else ctx.device_id,
            network_id=ctx.network_id,
            cluster_id=station.cluster_id,
            station_id=station.id,
            spot_number=spot or None,
            device_id=ctx.device_id,
            label=f"station {station.name}" + (f" spot {spot}" if spot else ""),
        )
        subject.extra = {
            "station_id": station.id,
            "station_device_id": station.device_id,
            "cluster_id": station.cluster_id,
        }
        if cluster is not None:
            subject.extra["cluster_name"] = cluster.name
            subject.extra["location"] = point(cluster.latitude, cluster.longitude)
        if spot:
            row = await session.scalar(
                select(Spot).where(Spot.station_id == station.id, Spot.displayed_number == spot)
            )
            subject.extra["spot_number"] = spot
            if row is not None:
                subject.spot_id = row.id
                subject.extra["spot_id"] = row.id
                docked = await session.scalar(select(Vehicle).where(Vehicle.spot_id == row.id))
                if docked is not None:
                    subject.extra["vehicle_id"] = docked.id
                    subject.extra["vehicle_serial_number"] = docked.serial_number
        return subject

    async def _station_rules(
        self, session: AsyncSession, ctx: _DeviceContext, body: m.UpBody, now: datetime
    ) -> list[AlertChange]:
        device = ctx.device_id
        stamp_extra: dict[str, Any] = {}
        match body:
            case m.PowerCut():
                subject = await self._spot_subject(session, ctx, 0)
                return [
                    await self.raise_alert(
                        session,
                        AlertType.STATION_POWER_CUT,
                        subject,
                        now=now,
                        message=f"power cut at {subject.label}",
                    )
                ]
            case m.PowerRestored():
                return await self._stop_many(session, [AlertType.STATION_POWER_CUT], device, now)
            case m.AlarmTriggered(reason=reason):
                subject = await self._spot_subject(session, ctx, 0)
                stamp_extra = {"reason": reason} if reason else {}
                return [
                    await self.raise_alert(
                        session,
                        AlertType.STATION_ALARM_TRIGGERED,
                        subject,
                        now=now,
                        message=f"alarm triggered at {subject.label}"
                        + (f": {reason}" if reason else ""),
                        extra=stamp_extra,
                    )
                ]
            case m.AlarmCleared():
                return await self._stop_many(
                    session, [AlertType.STATION_ALARM_TRIGGERED], device, now
                )
            case m.Temperature(spot=spot, celsius=celsius, high=high):
                key = f"{device}/{spot}" if spot else device
                if not high:
                    return await self._stop_many(
                        session, [AlertType.SPOT_HIGH_TEMPERATURE], key, now
                    )
                subject = await self._spot_subject(session, ctx, spot)
                return [
                    await self.raise_alert(
                        session,
                        AlertType.SPOT_HIGH_TEMPERATURE,
                        subject,
                        now=now,
                        message=f"high temperature {celsius:.1f} °C at {subject.label}",
                        extra={"temperature_c": celsius},
                    )
                ]
            case m.SpotIdentifyFail(spot=spot):
                subject = await self._spot_subject(session, ctx, spot)
                return [
                    await self.raise_alert(
                        session,
                        AlertType.SPOT_IDENTIFY_FAIL,
                        subject,
                        now=now,
                        message=f"vehicle not identified at {subject.label}",
                    )
                ]
            case m.BoardRecovered(spot=spot):
                return await self._stop_many(
                    session, [AlertType.SPOT_IDENTIFY_FAIL], f"{device}/{spot}", now
                )
            case m.Unlocked(spot=spot) if not _authorized_unlock(body):
                subject = await self._spot_subject(session, ctx, spot)
                return [
                    await self.raise_alert(
                        session,
                        AlertType.UNEXPECTED_UNLOCK,
                        subject,
                        now=now,
                        message=f"unlocked without command or badge at {subject.label}",
                        extra={"lock_cause": body.cause.name.lower()},
                    )
                ]
            case m.Locked(spot=spot):
                return await self._stop_many(
                    session, [AlertType.UNEXPECTED_UNLOCK], f"{device}/{spot}", now
                )
            case m.VehicleDocked(spot=spot, serial_number=serial):
                changes = await self._stop_many(
                    session,
                    [AlertType.UNEXPECTED_UNLOCK, AlertType.SPOT_IDENTIFY_FAIL],
                    f"{device}/{spot}",
                    now,
                )
                vehicle = await session.scalar(
                    select(Vehicle).where(Vehicle.serial_number == serial)
                )
                if vehicle is not None:
                    changes += await self._stop_vehicle_alerts(
                        session, CLEARED_BY_DOCKING, vehicle.id, now
                    )
                return changes
        return []

    async def _vehicle_rules(
        self,
        session: AsyncSession,
        ctx: _DeviceContext,
        vehicle: Vehicle,
        body: m.UpBody,
        now: datetime,
    ) -> list[AlertChange]:
        vkey = f"vehicle:{vehicle.id}"
        match body:
            case m.Motion(kind=kind):
                alert_type = MOTION_TYPES[MotionKind(kind)]
                return [
                    await self.raise_alert(
                        session,
                        alert_type,
                        vehicle_subject(vehicle),
                        now=now,
                        message=f"{alert_type.value.removeprefix('vehicle-').replace('-', ' ')}: "
                        f"vehicle {vehicle.serial_number}",
                    )
                ]
            case m.BatteryLow(battery=battery, level_pct=level):
                if BatteryKind(battery) == BatteryKind.VAE:
                    self._device_topic(
                        session,
                        VEHICULE_BATTERY_VAE_LOW,
                        vehicle,
                        {"level_pct": level, "battery": "vae"},
                    )
                    return []
                self._device_topic(
                    session,
                    VEHICULE_BATTERY_LOW,
                    vehicle,
                    {"level_pct": level, "battery": "internal"},
                )
                severity = (
                    AlertSeverity.HIGH
                    if level <= self.config.battery_high_severity_pct
                    else AlertSeverity.LOW
                )
                return [
                    await self.raise_alert(
                        session,
                        AlertType.LOCK_BATTERY_LOW,
                        vehicle_subject(vehicle),
                        now=now,
                        severity=severity,
                        extra={"state_of_charge": level},
                        message=f"lock battery low ({level} %) on vehicle {vehicle.serial_number}",
                    )
                ]
            case m.Telemetry():
                return await self._telemetry(session, vehicle, body, now)
            case m.Status(spot=0, battery_pct=level) if level is not None:
                if level >= self.config.battery_clear_pct:
                    return await self._stop_many(session, [AlertType.LOCK_BATTERY_LOW], vkey, now)
            case m.Death(reason=reason):
                return [
                    await self.raise_alert(
                        session,
                        AlertType.LOCK_SHUTDOWN,
                        vehicle_subject(vehicle),
                        now=now,
                        message=f"lock of vehicle {vehicle.serial_number} shut down"
                        + (f": {reason}" if reason else " (connection lost)"),
                        extra={"reason": reason or "connection-lost"},
                    )
                ]
            case m.Birth():
                return await self._stop_many(session, [AlertType.LOCK_SHUTDOWN], vkey, now)
            case m.Unlocked(spot=spot):
                if not _authorized_unlock(body):
                    subject = vehicle_subject(vehicle, f"{ctx.device_id}/{spot}")
                    return [
                        await self.raise_alert(
                            session,
                            AlertType.UNEXPECTED_UNLOCK,
                            subject,
                            now=now,
                            message=f"vehicle {vehicle.serial_number} unlocked without command "
                            "or badge",
                            extra={"lock_cause": body.cause.name.lower()},
                        )
                    ]
                return await self._stop_vehicle_alerts(
                    session, MOTION_CLEARED_BY_USE, vehicle.id, now
                )
            case m.Locked(spot=spot):
                return await self._stop_many(
                    session, [AlertType.UNEXPECTED_UNLOCK], f"{ctx.device_id}/{spot}", now
                )
            case m.ChainInserted(chain_type=chain_type):
                self._device_topic(
                    session, BOITIER_LOCKED, vehicle, {"chain_type": chain_type.name.lower()}
                )
            case m.ChainRemoved():
                self._device_topic(session, BOITIER_UNLOCKED, vehicle, {})
            case m.ChainTypeChanged(chain_type=chain_type):
                self._device_topic(
                    session,
                    BOITIER_CHAIN_TYPE_UPDATED,
                    vehicle,
                    {"chain_type": chain_type.name.lower()},
                )
            case m.BadgePresented(authorized=False, badge_uid=uid, offline=offline):
                self._device_topic(
                    session,
                    BOITIER_PASS_UNRECOGNIZED,
                    vehicle,
                    {"badge_uid": uid.hex(), "offline": offline},
                )
            case m.PinIncorrect(attempts=attempts):
                self._device_topic(session, BOITIER_PIN_INCORRECT, vehicle, {"attempts": attempts})
        return []

    async def _telemetry(
        self, session: AsyncSession, vehicle: Vehicle, body: m.Telemetry, now: datetime
    ) -> list[AlertChange]:
        vkey = f"vehicle:{vehicle.id}"
        changes: list[AlertChange] = []
        if body.battery_pct is not None and body.battery_pct >= self.config.battery_clear_pct:
            changes += await self._stop_many(session, [AlertType.LOCK_BATTERY_LOW], vkey, now)
        if body.lat is None or body.lon is None:
            return changes
        changes += await self._stop_many(session, [AlertType.LOCK_NO_TRACKING], vkey, now)
        network = await session.get(Network, vehicle.network_id)
        if network is None or network.out_of_border_policy == OutOfBorderPolicy.NONE:
            return changes
        inside = self._inside(network, body.lat, body.lon)
        if inside is None:
            return changes
        outside_types = [AlertType.VEHICLE_OUT_OF_NETWORK_AREA, AlertType.VEHICLE_RIDE_OUTSIDE]
        if inside:
            return changes + await self._stop_many(session, outside_types, vkey, now)
        trip = await session.scalar(
            select(Trip).where(Trip.vehicle_id == vehicle.id, Trip.status.in_(ACTIVE_TRIP_STATUSES))
        )
        subject = vehicle_subject(vehicle)
        subject.extra["location"] = point(body.lat, body.lon)
        if body.battery_pct is not None:
            subject.extra["state_of_charge"] = body.battery_pct
        if trip is not None:
            subject.trip_id, subject.user_id = trip.id, trip.user_id
            subject.extra["trip_id"] = trip.id
            alert_type, text = AlertType.VEHICLE_RIDE_OUTSIDE, "ridden outside the network area"
        else:
            alert_type, text = AlertType.VEHICLE_OUT_OF_NETWORK_AREA, "out of the network area"
        changes.append(
            await self.raise_alert(
                session,
                alert_type,
                subject,
                now=now,
                message=f"vehicle {vehicle.serial_number} {text}",
            )
        )
        return changes

    def _device_topic(
        self, session: AsyncSession, topic: str, vehicle: Vehicle, data: dict[str, Any]
    ) -> None:
        if not self.emit_device_topics:
            return
        payload = {
            "vehicle_id": vehicle.id,
            "serial_number": vehicle.serial_number,
            "network_id": vehicle.network_id,
            "device_id": vehicle.device_id,
            **data,
        }
        outbox.emit(session, topic, "vehicle", vehicle.id, payload)

    def _inside(self, network: Network, lat: float, lon: float) -> bool | None:
        """Whether the point is inside the network border (None: no usable border)."""
        if not network.border:
            return None
        fingerprint = hash(repr(network.border))
        cached = self._borders.get(network.id)
        if cached is None or cached[0] != fingerprint:
            from shapely.prepared import prep

            from kickstand.cloud.geofence import GeofenceError, parse_geometry

            try:
                shape = prep(parse_geometry(network.border, zone_kind="border"))
            except GeofenceError as exc:
                self.counters["bad_border"] += 1
                log.warning("event=alert_border_unusable network_id=%s error=%s", network.id, exc)
                return None
            cached = (fingerprint, shape)
            self._borders[network.id] = cached
        from shapely.geometry import Point

        return bool(cached[1].covers(Point(lon, lat)))

    # ── sweeps ────────────────────────────────────────────────────────────────────────

    async def _open_of_type(self, session: AsyncSession, alert_type: AlertType) -> list[FleetAlert]:
        rows: ScalarResult[FleetAlert] = await session.scalars(
            select(FleetAlert).where(
                FleetAlert.alert_type == alert_type, FleetAlert.state.in_(OPEN_STATES)
            )
        )
        return list(rows)

    async def _sweep_vehicles(
        self,
        session: AsyncSession,
        now: datetime,
        alert_type: AlertType,
        due: list[Vehicle],
        message: Callable[[Vehicle], str],
    ) -> list[AlertChange]:
        """Raise for the `due` vehicles (each sweep counts an occurrence only once: raised
        alerts are left alone), stop the open alerts of vehicles no longer due."""
        changes: list[AlertChange] = []
        due_ids = {v.id for v in due}
        open_alerts = await self._open_of_type(session, alert_type)
        open_vehicles = {a.vehicle_id for a in open_alerts}
        for alert in open_alerts:
            if alert.vehicle_id not in due_ids:
                changes.append(self.stop(session, alert, now))
        for vehicle in due:
            if vehicle.id not in open_vehicles:
                changes.append(
                    await self.raise_alert(
                        session,
                        alert_type,
                        vehicle_subject(vehicle),
                        now=now,
                        message=message(vehicle),
                    )
                )
        return changes

    async def _sweep_no_tracking(self, session: AsyncSession, now: datetime) -> list[AlertChange]:
        limit = now - timedelta(seconds=self.config.no_tracking_s)
        due: list[Vehicle] = list(
            await session.scalars(
                select(Vehicle).where(
                    Vehicle.device_id.is_not(None),
                    Vehicle.position_at.is_not(None),
                    Vehicle.position_at < limit,
                    Vehicle.spot_id.is_(None),  # a docked vehicle is tracked by its station
                )
            )
        )
        return await self._sweep_vehicles(
            session,
            now,
            AlertType.LOCK_NO_TRACKING,
            due,
            lambda v: f"no position from vehicle {v.serial_number} since {v.position_at}",
        )

    async def _sweep_idle(self, session: AsyncSession, now: datetime) -> list[AlertChange]:
        limit = now - timedelta(seconds=self.config.idle_s)
        last_trip = (
            select(
                Trip.vehicle_id,
                func.max(func.coalesce(Trip.ended_at, Trip.started_at)).label("last"),
            )
            .group_by(Trip.vehicle_id)
            .subquery()
        )
        active = select(Trip.vehicle_id).where(Trip.status.in_(ACTIVE_TRIP_STATUSES))
        rows = await session.execute(
            select(Vehicle, last_trip.c.last)
            .join(last_trip, last_trip.c.vehicle_id == Vehicle.id, isouter=True)
            .where(
                Vehicle.state == VehicleState.AVAILABLE,
                Vehicle.in_maintenance.is_(False),
                Vehicle.id.not_in(active),
            )
        )
        due: list[Vehicle] = []
        for row in rows:
            vehicle: Vehicle = row[0]
            last: datetime | None = row[1]
            last_activity = _aware(last) if last is not None else vehicle.docked_at
            if last_activity is not None and last_activity < limit:
                due.append(vehicle)
        return await self._sweep_vehicles(
            session,
            now,
            AlertType.VEHICLE_TOO_LONG_IDLE,
            due,
            lambda v: f"vehicle {v.serial_number} not used for "
            f"{self.config.idle_s // 3600} h or more",
        )

    async def _sweep_lost(self, session: AsyncSession, now: datetime) -> list[AlertChange]:
        changes: list[AlertChange] = []
        lost: ScalarResult[Vehicle] = await session.scalars(
            select(Vehicle).where(Vehicle.state == VehicleState.LOST_OR_STOLEN)
        )
        for vehicle in lost:
            if (
                await self._open_alert(
                    session, f"{AlertType.VEHICLE_LOST_REPORTED.value}|vehicle:{vehicle.id}"
                )
                is None
            ):
                changes.append(
                    await self.raise_alert(
                        session,
                        AlertType.VEHICLE_LOST_REPORTED,
                        vehicle_subject(vehicle),
                        now=now,
                        message=f"vehicle {vehicle.serial_number} is lost or stolen",
                    )
                )
        return changes

    async def _sweep_docked_vehicles(
        self, session: AsyncSession, now: datetime
    ) -> list[AlertChange]:
        """Vehicle alerts whose vehicle is docked again (or riding again) no longer apply."""
        changes: list[AlertChange] = []
        for alert_type in (AlertType.VEHICLE_RETURN_OUTSIDE, AlertType.VEHICLE_LOST_REPORTED):
            for alert in await self._open_of_type(session, alert_type):
                if alert.vehicle_id is None:
                    continue
                vehicle = await session.get(Vehicle, alert.vehicle_id)
                if vehicle is None or vehicle.spot_id is not None:
                    changes.append(self.stop(session, alert, now))
                elif alert_type == AlertType.VEHICLE_RETURN_OUTSIDE and alert.trip_id is not None:
                    newer = await session.scalar(
                        select(Trip.id)
                        .where(Trip.vehicle_id == alert.vehicle_id, Trip.id > alert.trip_id)
                        .limit(1)
                    )
                    if newer is not None:
                        changes.append(self.stop(session, alert, now))
        return changes

    async def _sweep_operational_period(
        self, session: AsyncSession, now: datetime
    ) -> list[AlertChange]:
        changes: list[AlertChange] = []
        books: dict[int, RuleBook | None] = {}
        trips: list[Trip] = list(
            await session.scalars(select(Trip).where(Trip.status.in_(ACTIVE_TRIP_STATUSES)))
        )
        outside: dict[int, Trip] = {}
        for trip in trips:
            if trip.network_id not in books:
                network = await session.get(Network, trip.network_id)
                rules: list[PricingRule] = list(
                    await session.scalars(
                        select(PricingRule).where(PricingRule.network_id == trip.network_id)
                    )
                )
                books[trip.network_id] = (
                    RuleBook(rules, network.timezone, network.id) if network and rules else None
                )
            book = books[trip.network_id]
            if book is None:
                continue  # no rules at all: the network defines no operational period
            try:
                book.rule_at(now)
            except NoPricingRuleError:
                outside[trip.id] = trip
        open_alerts = await self._open_of_type(
            session, AlertType.VEHICLE_OUTSIDE_OPERATIONAL_PERIOD
        )
        open_trips = {a.trip_id for a in open_alerts}
        for alert in open_alerts:
            if alert.trip_id not in outside:
                changes.append(self.stop(session, alert, now))
        for trip in outside.values():
            if trip.id in open_trips:
                continue
            vehicle = await session.get(Vehicle, trip.vehicle_id)
            subject = (
                vehicle_subject(vehicle, f"trip:{trip.id}")
                if vehicle is not None
                else Subject(key=f"trip:{trip.id}", network_id=trip.network_id)
            )
            subject.trip_id, subject.user_id = trip.id, trip.user_id
            subject.extra["trip_id"] = trip.id
            changes.append(
                await self.raise_alert(
                    session,
                    AlertType.VEHICLE_OUTSIDE_OPERATIONAL_PERIOD,
                    subject,
                    now=now,
                    message=f"trip {trip.id} running outside the operational period",
                )
            )
        return changes

    async def _sweep_silence_expired(
        self, session: AsyncSession, now: datetime
    ) -> list[AlertChange]:
        rows: ScalarResult[FleetAlert] = await session.scalars(
            select(FleetAlert).where(
                FleetAlert.state == AlertState.SILENCED,
                FleetAlert.silenced_until.is_not(None),
                FleetAlert.silenced_until <= now,
            )
        )
        changes = []
        for alert in rows:
            alert.state = AlertState.NEW
            alert.silenced_until = None
            alert.modified_at = now
            changes.append(self._emit(session, alert, t.ALERT_UPDATED))
        return changes


def _authorized_unlock(body: m.Unlocked) -> bool:
    cause = LockCause(body.cause)
    if cause == LockCause.COMMAND:
        return body.command_id is not None
    if cause in (LockCause.BADGE, LockCause.OFFLINE_BADGE):
        return body.badge_uid is not None
    return False


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def causality(alert: FleetAlert) -> str | None:
    """Seed 003 `causality`: a reference to the resource that caused the alert."""
    if alert.trip_id is not None:
        return f"/trips/{alert.trip_id}"
    if alert.vehicle_id is not None and alert.station_id is None:
        return f"/vehicles/{alert.vehicle_id}"
    if alert.station_id is not None:
        base = f"/stations/{alert.station_id}"
        return f"{base}/spots/{alert.spot_number}" if alert.spot_number else base
    return None


def alert_payload(alert: FleetAlert) -> dict[str, Any]:
    """The alert as the API and the webhooks show it."""
    return outbox.jsonable(
        {
            "id": alert.id,
            "uuid": alert.uuid,
            "alert_type": alert.alert_type,
            "alert_severity": alert.severity,
            "state": alert.state,
            "network_id": alert.network_id,
            "cluster_id": alert.cluster_id,
            "station_id": alert.station_id,
            "spot_id": alert.spot_id,
            "spot_number": alert.spot_number,
            "vehicle_id": alert.vehicle_id,
            "trip_id": alert.trip_id,
            "user_id": alert.user_id,
            "device_id": alert.device_id,
            "causality": causality(alert),
            "roles": ["fleet_operator"],
            "message": alert.message,
            "extra": alert.extra or {},
            "occurrences": alert.occurrences,
            "creation_date": alert.created_at,
            "modified": alert.modified_at,
            "last_seen_at": alert.last_seen_at,
            "resolved_at": alert.resolved_at,
            "escalated_at": alert.escalated_at,
            "silenced_at": alert.silenced_at,
            "silenced_until": alert.silenced_until,
            "stopped_at": alert.stopped_at,
            "operator_id": alert.operator_id,
            "note": alert.note,
        }
    )
