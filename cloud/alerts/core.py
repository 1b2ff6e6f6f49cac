"""Alert bookkeeping shared by the rules: one open alert per cause, counted recurrences,
reopening after a flap, stopping, and the outbox record of every change."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ScalarResult, bindparam, select
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
from kickstand.cloud.events import EventType
from kickstand.cloud.events.payloads import AlertEvent
from kickstand.cloud.models import (
    Trip,
    Vehicle,
)

log = logging.getLogger("kickstand.cloud.alerts.core")

#: ``session.info`` key: the open alert (or None) of causes looked up ahead, in one query,
#: by :meth:`AlertCore.prefetch_causes` — rows locked FOR UPDATE until the commit.
_KNOWN = "kickstand.alerts.known_open"

# Built once (building a statement and its cache key costs about as much CPU as running it).
_OPEN_ALERT = (
    select(FleetAlert)
    .where(FleetAlert.cause_key == bindparam("key"), FleetAlert.state.in_(OPEN_STATES))
    .with_for_update()
)
_OPEN_ALERTS = (
    select(FleetAlert)
    .where(
        FleetAlert.cause_key.in_(bindparam("keys", expanding=True)),
        FleetAlert.state.in_(OPEN_STATES),
    )
    .order_by(FleetAlert.id)
    .with_for_update()
)
_OPEN_VEHICLE_ALERTS = (
    select(FleetAlert)
    .where(
        FleetAlert.vehicle_id == bindparam("vid"),
        FleetAlert.alert_type.in_(bindparam("types", expanding=True)),
        FleetAlert.state.in_(OPEN_STATES),
    )
    .order_by(FleetAlert.id)
    .with_for_update()
)


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
    #: A device-clock-wrong alert stops once the device kept talking this long after its
    #: last implausible stamp (its messages came with plausible stamps meanwhile).
    clock_ok_s: int = 600
    #: A station's or vehicle's device offline (the liveness rule) and not heard for this
    #: long → device-offline-too-long.
    offline_too_long_s: int = 3600
    #: A device whose newest unrevoked certificate expires within this many days (and that
    #: has not renewed it) → device-certificate-expiring (issue 17). Devices renew 30 days
    #: before (SPEC §7.7): 14 days left means renewals have failed for two weeks.
    certificate_expiring_days: int = 14


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


async def trip_subject(session: AsyncSession, trip: Trip) -> Subject:
    """An alert about a trip (keyed by it): its vehicle's subject, with the trip and rider."""
    vehicle = await session.get(Vehicle, trip.vehicle_id)
    subject = (
        vehicle_subject(vehicle, f"trip:{trip.id}")
        if vehicle is not None
        else Subject(key=f"trip:{trip.id}", network_id=trip.network_id)
    )
    subject.trip_id, subject.user_id = trip.id, trip.user_id
    subject.extra["trip_id"] = trip.id
    return subject


class AlertCore:
    """Raises, counts and stops fleet alerts; the rules live in the subclasses."""

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
        count: int = 1,
    ) -> AlertChange:
        """Open an alert for the cause, or count an occurrence on the one already open.
        ``count``: occurrences at once (a batch's dead letters of one device and reason)."""
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
                self._know(session, cause_key, alert)
                self.counters["reopened"] += 1
                return self._recur(
                    session, alert, severity, merged_extra, now, notify=True, count=count
                )
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
                occurrences=count,
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
                session.info.get(_KNOWN, {}).pop(cause_key, None)
                alert = await self._open_alert(session, cause_key)
                if alert is None:
                    raise
                return self._recur(session, alert, severity, merged_extra, now, count=count)
            self._know(session, cause_key, fresh)
            self.counters["raised"] += 1
            log.info(
                "event=fleet_alert_raised alert_id=%s type=%s cause=%s severity=%s",
                fresh.id,
                alert_type.value,
                cause_key,
                severity.value,
            )
            return self._emit(session, fresh, t.ALERT_CREATED)
        return self._recur(session, alert, severity, merged_extra, now, count=count)

    async def stop_alert(
        self, session: AsyncSession, alert_type: AlertType, subject_key: str, *, now: datetime
    ) -> AlertChange | None:
        """The condition cleared: the open alert of this cause (if any) becomes `stopped`."""
        alert = await self._open_alert(session, f"{alert_type.value}|{subject_key}")
        if alert is None:
            return None
        return self.stop(session, alert, now)

    def stop(self, session: AsyncSession, alert: FleetAlert, now: datetime) -> AlertChange:
        self._know(session, alert.cause_key, None)
        alert.state = AlertState.STOPPED
        alert.stopped_at = now
        alert.modified_at = now
        self.counters["stopped"] += 1
        log.info("event=fleet_alert_stopped alert_id=%s cause=%s", alert.id, alert.cause_key)
        return self._emit(session, alert, t.ALERT_STOPPED)

    async def _stop_many(
        self, session: AsyncSession, types: Iterable[AlertType], subject_key: str, now: datetime
    ) -> list[AlertChange]:
        return await self._stop_causes(
            session, [f"{alert_type.value}|{subject_key}" for alert_type in types], now
        )

    async def _stop_causes(
        self, session: AsyncSession, cause_keys: list[str], now: datetime
    ) -> list[AlertChange]:
        """Stop the open alerts of these causes, in this order (one query for all)."""
        known = session.info.get(_KNOWN, {})
        found = {key: known[key] for key in cause_keys if key in known}
        unknown = [key for key in cause_keys if key not in known]
        if len(unknown) == 1:
            found[unknown[0]] = await self._open_alert(session, unknown[0])
        elif unknown:
            found.update(await self._load_open(session, unknown))
        return [self.stop(session, alert, now) for key in cause_keys if (alert := found.get(key))]

    async def prefetch_causes(self, session: AsyncSession, cause_keys: list[str]) -> None:
        """Look up the open alerts of these causes in one query (locked until the commit);
        the rules of this session then take them from there, not one query each."""
        known: dict[str, FleetAlert | None] = session.info.setdefault(_KNOWN, {})
        wanted = [key for key in dict.fromkeys(cause_keys) if key not in known]
        if wanted:
            found = await self._load_open(session, wanted)
            known.update({key: found.get(key) for key in wanted})

    def forget_causes(self, session: AsyncSession) -> None:
        """Drop what :meth:`prefetch_causes` knew (after a rollback to a savepoint)."""
        session.info.pop(_KNOWN, None)

    def _know(self, session: AsyncSession, cause_key: str, alert: FleetAlert | None) -> None:
        known: dict[str, FleetAlert | None] | None = session.info.get(_KNOWN)
        if known is not None and cause_key in known:
            known[cause_key] = alert

    async def _load_open(
        self, session: AsyncSession, cause_keys: list[str]
    ) -> dict[str, FleetAlert]:
        rows: ScalarResult[FleetAlert] = await session.scalars(_OPEN_ALERTS, {"keys": cause_keys})
        # At most one open alert per cause (uq_fleet_alerts_open_cause).
        return {alert.cause_key: alert for alert in rows.all()}

    async def _stop_vehicle_alerts(
        self, session: AsyncSession, types: Iterable[AlertType], vehicle_id: int, now: datetime
    ) -> list[AlertChange]:
        """Stop every open alert of these types about the vehicle (whatever its cause key)."""
        rows: ScalarResult[FleetAlert] = await session.scalars(
            _OPEN_VEHICLE_ALERTS, {"vid": vehicle_id, "types": list(types)}
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
        count: int = 1,
    ) -> AlertChange:
        previous = alert.last_seen_at
        alert.occurrences += count
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
        return AlertChange(alert, t.ALERT_UPDATED.topic)

    def _emit(
        self, session: AsyncSession, alert: FleetAlert, event: EventType[AlertEvent]
    ) -> AlertChange:
        emit_alert(session, alert, event)
        return AlertChange(alert, event.topic)

    async def _open_alert(self, session: AsyncSession, cause_key: str) -> FleetAlert | None:
        known: dict[str, FleetAlert | None] = session.info.get(_KNOWN, {})
        if cause_key in known:
            return known[cause_key]
        return await session.scalar(_OPEN_ALERT, {"key": cause_key})

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


def emit_alert(session: AsyncSession, alert: FleetAlert, event: EventType[AlertEvent]) -> None:
    """The outbox record of an alert change (``fleet_alert.*``), in the caller's transaction."""
    outbox.emit(session, event, alert.id, AlertEvent.model_validate(alert_payload(alert)))


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
