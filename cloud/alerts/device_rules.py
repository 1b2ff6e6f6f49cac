"""Rules fed by decoded device messages (stations and vehicle controllers)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ScalarResult, and_, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import outbox
from kickstand.cloud.alerts.core import (
    AlertChange,
    AlertCore,
    Subject,
    point,
    vehicle_subject,
)
from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import (
    OPEN_STATES,
    AlertSeverity,
    AlertType,
)
from kickstand.cloud.events import EventType
from kickstand.cloud.events import catalogue as ev
from kickstand.cloud.events import payloads as p
from kickstand.cloud.models import (
    ACTIVE_TRIP_STATUSES,
    Cluster,
    Network,
    OutOfBorderPolicy,
    Spot,
    Station,
    Trip,
    Vehicle,
)
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import BatteryKind, LockCause, MotionKind

log = logging.getLogger("kickstand.cloud.alerts.device_rules")

# Device events that map straight onto seed 000 webhook topics (vehicle lock box).
BOITIER_LOCKED = ev.BOITIER_LOCKED
BOITIER_UNLOCKED = ev.BOITIER_UNLOCKED
BOITIER_PASS_UNRECOGNIZED = ev.BOITIER_PASS_UNRECOGNIZED
BOITIER_PIN_INCORRECT = ev.BOITIER_PIN_INCORRECT
BOITIER_CHAIN_TYPE_UPDATED = ev.BOITIER_CHAIN_TYPE_UPDATED
VEHICULE_BATTERY_LOW = ev.VEHICULE_BATTERY_LOW
VEHICULE_BATTERY_VAE_LOW = ev.VEHICULE_BATTERY_VAE_LOW
D = TypeVar("D", bound=p.VehicleDeviceEvent)


def _ids(vehicle: Vehicle) -> dict[str, Any]:
    """The vehicle part every ``vehicule.*`` / ``boitier.*`` payload starts with."""
    return {
        "vehicle_id": vehicle.id,
        "serial_number": vehicle.serial_number,
        "network_id": vehicle.network_id,
        "device_id": vehicle.device_id,
    }


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
#: Alerts of a spot that a vehicle docking in it clears.
CLEARED_AT_SPOT_BY_DOCKING = (AlertType.UNEXPECTED_UNLOCK, AlertType.SPOT_IDENTIFY_FAIL)
#: Vehicle alerts a docking at a station clears (the vehicle is back, in the network).
CLEARED_BY_DOCKING = (
    *MOTION_CLEARED_BY_USE,
    AlertType.VEHICLE_OUT_OF_NETWORK_AREA,
    AlertType.VEHICLE_RIDE_OUTSIDE,
    AlertType.VEHICLE_RETURN_OUTSIDE,
    AlertType.VEHICLE_LOST_REPORTED,
)
AUTHORIZED_UNLOCK_CAUSES = (LockCause.COMMAND, LockCause.BADGE, LockCause.OFFLINE_BADGE)

# What a docking stops: the spot's alerts by cause, the vehicle's by id (one statement,
# built once).
_CLEARED_BY_DOCKING = (
    select(FleetAlert)
    .where(
        FleetAlert.state.in_(OPEN_STATES),
        or_(
            FleetAlert.cause_key.in_(bindparam("keys", expanding=True)),
            and_(
                FleetAlert.vehicle_id
                == select(Vehicle.id)
                .where(Vehicle.serial_number == bindparam("serial"))
                .scalar_subquery(),
                FleetAlert.alert_type.in_(CLEARED_BY_DOCKING),
            ),
        ),
    )
    .order_by(FleetAlert.id)
    .with_for_update()
)


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """What a caller already knows of a device (the ingest caches it): the station or the
    vehicle row it belongs to. With it the rules load rows only when they raise an alert;
    the stops need nothing but the device id and the vehicle id."""

    station_id: int | None = None
    vehicle_id: int | None = None


@dataclass
class _DeviceContext:
    device_id: str
    station_id: int | None = None
    vehicle_id: int | None = None
    station: Station | None = None
    cluster: Cluster | None = None
    vehicle: Vehicle | None = None

    @property
    def network_id(self) -> int | None:
        if self.vehicle is not None:
            return self.vehicle.network_id
        return self.cluster.network_id if self.cluster is not None else None


class DeviceRules(AlertCore):
    """Station and vehicle rules: what each device message raises or stops."""

    # ── device rules ──────────────────────────────────────────────────────────────────

    async def _device_context(
        self, session: AsyncSession, device_id: str, ref: DeviceRef | None = None
    ) -> _DeviceContext | None:
        if ref is not None:
            if ref.station_id is None and ref.vehicle_id is None:
                return None
            return _DeviceContext(device_id, ref.station_id, ref.vehicle_id)
        station = await session.scalar(select(Station).where(Station.device_id == device_id))
        if station is not None:
            cluster = await session.get(Cluster, station.cluster_id)
            return _DeviceContext(device_id, station.id, station=station, cluster=cluster)
        vehicle = await session.scalar(select(Vehicle).where(Vehicle.device_id == device_id))
        if vehicle is not None:
            return _DeviceContext(device_id, vehicle_id=vehicle.id, vehicle=vehicle)
        return None

    async def _load_station(self, session: AsyncSession, ctx: _DeviceContext) -> Station:
        if ctx.station is None:
            assert ctx.station_id is not None
            station = await session.get_one(Station, ctx.station_id)
            ctx.station, ctx.cluster = station, await session.get(Cluster, station.cluster_id)
            return station
        return ctx.station

    async def _load_vehicle(self, session: AsyncSession, ctx: _DeviceContext) -> Vehicle:
        if ctx.vehicle is None:
            assert ctx.vehicle_id is not None
            vehicle = await session.get_one(Vehicle, ctx.vehicle_id)
            ctx.vehicle = vehicle
            return vehicle
        return ctx.vehicle

    async def _network(self, session: AsyncSession, network_id: int) -> Network | None:
        # Kept for the session: the border of a network is read for every vehicle fix of
        # a batch (the identity map alone holds an unchanged row weakly).
        networks: dict[int, Network | None] = session.info.setdefault(
            "kickstand.alerts.networks", {}
        )
        if network_id not in networks:
            networks[network_id] = await session.get(Network, network_id)
        return networks[network_id]

    def _sampled_causes(self, ref: DeviceRef, body: m.UpBody) -> list[str]:
        """The causes the vehicle rules may stop or count on for a telemetry or a status
        (:meth:`_telemetry`, :meth:`_vehicle_rules`), to look them all up at once."""
        if ref.station_id is not None or ref.vehicle_id is None:
            return []
        vkey = f"vehicle:{ref.vehicle_id}"
        types: list[AlertType] = []
        battery = body.battery_pct if isinstance(body, m.Telemetry | m.Status) else None
        if battery is not None and battery >= self.config.battery_clear_pct:
            if isinstance(body, m.Telemetry) or (isinstance(body, m.Status) and body.spot == 0):
                types.append(AlertType.LOCK_BATTERY_LOW)
        if isinstance(body, m.Telemetry) and body.lat is not None and body.lon is not None:
            types += [
                AlertType.LOCK_NO_TRACKING,
                AlertType.VEHICLE_OUT_OF_NETWORK_AREA,
                AlertType.VEHICLE_RIDE_OUTSIDE,
            ]
        return [f"{t.value}|{vkey}" for t in types]

    async def _spot_subject(self, session: AsyncSession, ctx: _DeviceContext, spot: int) -> Subject:
        station = await self._load_station(session, ctx)
        cluster = ctx.cluster
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
                return await self._docked(session, f"{device}/{spot}", serial, now)
        return []

    async def _docked(
        self, session: AsyncSession, spot_key: str, serial: str, now: datetime
    ) -> list[AlertChange]:
        """The spot's unexpected unlock and identify failure stop (in that order), then the
        docked vehicle's alerts a docking clears (by id): one query for both."""
        keys = [f"{t.value}|{spot_key}" for t in CLEARED_AT_SPOT_BY_DOCKING]
        rows: ScalarResult[FleetAlert] = await session.scalars(
            _CLEARED_BY_DOCKING, {"keys": keys, "serial": serial}
        )
        at_spot: dict[str, FleetAlert] = {}
        of_vehicle: list[FleetAlert] = []
        for alert in rows.all():
            if alert.cause_key in keys:
                at_spot[alert.cause_key] = alert
            else:
                of_vehicle.append(alert)
        ordered = [at_spot[key] for key in keys if key in at_spot] + of_vehicle
        return [self.stop(session, alert, now) for alert in ordered]

    async def _vehicle_rules(
        self,
        session: AsyncSession,
        ctx: _DeviceContext,
        body: m.UpBody,
        now: datetime,
    ) -> list[AlertChange]:
        assert ctx.vehicle_id is not None
        vkey = f"vehicle:{ctx.vehicle_id}"
        match body:
            case m.Motion(kind=kind):
                vehicle = await self._load_vehicle(session, ctx)
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
                vehicle = await self._load_vehicle(session, ctx)
                if BatteryKind(battery) == BatteryKind.VAE:
                    await self._device_topic(
                        session,
                        VEHICULE_BATTERY_VAE_LOW,
                        ctx,
                        lambda v: p.BatteryLow(**_ids(v), level_pct=level, battery="vae"),
                    )
                    return []
                await self._device_topic(
                    session,
                    VEHICULE_BATTERY_LOW,
                    ctx,
                    lambda v: p.BatteryLow(**_ids(v), level_pct=level, battery="internal"),
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
                return await self._telemetry(session, ctx, body, now)
            case m.Status(spot=0, battery_pct=level) if level is not None:
                if level >= self.config.battery_clear_pct:
                    return await self._stop_many(session, [AlertType.LOCK_BATTERY_LOW], vkey, now)
            case m.Death(reason=reason):
                vehicle = await self._load_vehicle(session, ctx)
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
                    vehicle = await self._load_vehicle(session, ctx)
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
                    session, MOTION_CLEARED_BY_USE, ctx.vehicle_id, now
                )
            case m.Locked(spot=spot):
                return await self._stop_many(
                    session, [AlertType.UNEXPECTED_UNLOCK], f"{ctx.device_id}/{spot}", now
                )
            case m.ChainInserted(chain_type=chain_type):
                await self._device_topic(
                    session,
                    BOITIER_LOCKED,
                    ctx,
                    lambda v: p.ChainEvent(**_ids(v), chain_type=chain_type.name.lower()),
                )
            case m.ChainRemoved():
                await self._device_topic(
                    session, BOITIER_UNLOCKED, ctx, lambda v: p.ChainRemoved(**_ids(v))
                )
            case m.ChainTypeChanged(chain_type=chain_type):
                await self._device_topic(
                    session,
                    BOITIER_CHAIN_TYPE_UPDATED,
                    ctx,
                    lambda v: p.ChainEvent(**_ids(v), chain_type=chain_type.name.lower()),
                )
            case m.BadgePresented(authorized=False, badge_uid=uid, offline=offline):
                await self._device_topic(
                    session,
                    BOITIER_PASS_UNRECOGNIZED,
                    ctx,
                    lambda v: p.PassUnrecognized(**_ids(v), badge_uid=uid.hex(), offline=offline),
                )
            case m.PinIncorrect(attempts=attempts):
                await self._device_topic(
                    session,
                    BOITIER_PIN_INCORRECT,
                    ctx,
                    lambda v: p.PinIncorrect(**_ids(v), attempts=attempts),
                )
        return []

    async def _telemetry(
        self, session: AsyncSession, ctx: _DeviceContext, body: m.Telemetry, now: datetime
    ) -> list[AlertChange]:
        vkey = f"vehicle:{ctx.vehicle_id}"
        # What clears, in this order: the battery, the tracking, being outside (one query).
        clears: list[str] = []
        if body.battery_pct is not None and body.battery_pct >= self.config.battery_clear_pct:
            clears.append(f"{AlertType.LOCK_BATTERY_LOW.value}|{vkey}")
        if body.lat is None or body.lon is None:
            return await self._stop_causes(session, clears, now)
        clears.append(f"{AlertType.LOCK_NO_TRACKING.value}|{vkey}")
        vehicle = await self._load_vehicle(session, ctx)
        network = await self._network(session, vehicle.network_id)
        if network is None or network.out_of_border_policy == OutOfBorderPolicy.NONE:
            return await self._stop_causes(session, clears, now)
        inside = self._inside(network, body.lat, body.lon)
        if inside is None:
            return await self._stop_causes(session, clears, now)
        outside_types = [AlertType.VEHICLE_OUT_OF_NETWORK_AREA, AlertType.VEHICLE_RIDE_OUTSIDE]
        if inside:
            clears += [f"{t.value}|{vkey}" for t in outside_types]
            return await self._stop_causes(session, clears, now)
        changes = await self._stop_causes(session, clears, now)
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

    async def _device_topic(
        self,
        session: AsyncSession,
        event: EventType[D],
        ctx: _DeviceContext,
        payload: Callable[[Vehicle], D],
    ) -> None:
        """A seed 000 ``vehicule.*`` / ``boitier.*`` topic; ``payload`` builds it for the
        vehicle (loaded only when the topics are on)."""
        if not self.emit_device_topics:
            return
        vehicle = await self._load_vehicle(session, ctx)
        outbox.emit(session, event, vehicle.id, payload(vehicle))

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


def _authorized_unlock(body: m.Unlocked) -> bool:
    cause = LockCause(body.cause)
    if cause == LockCause.COMMAND:
        return body.command_id is not None
    if cause in (LockCause.BADGE, LockCause.OFFLINE_BADGE):
        return body.badge_uid is not None
    return False
