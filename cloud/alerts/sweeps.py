"""Rules of silence and time, run by the periodic sweep."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import ScalarResult, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import trips
from kickstand.cloud.alerts import types as t
from kickstand.cloud.alerts.core import (
    AlertChange,
    AlertCore,
    Subject,
    _aware,
    trip_subject,
    vehicle_subject,
)
from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import (
    OPEN_STATES,
    AlertState,
    AlertType,
)
from kickstand.cloud.billing import RuleBook
from kickstand.cloud.errors import NoPricingRuleError
from kickstand.cloud.liveness import PRESENCE_COLUMNS, presence_of, why_offline
from kickstand.cloud.models import (
    ACTIVE_TRIP_STATUSES,
    Cluster,
    Device,
    Network,
    Station,
    Trip,
    Vehicle,
    VehicleState,
)

log = logging.getLogger("kickstand.cloud.alerts.sweeps")

#: A device judged by the liveness rule: its alert's key, why it is offline (None: it is
#: online), how to raise its alert (None: not to be raised).
_Judged = tuple[object, str | None, Callable[[str], Awaitable[AlertChange]] | None]


class SweepRules(AlertCore):
    """No tracking, idle too long, outside the operational period, lost, silences ending."""

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

    async def _sweep_liveness(
        self,
        session: AsyncSession,
        now: datetime,
        alert_type: AlertType,
        key_of: Callable[[FleetAlert], object],
        devices: Sequence[_Judged],
    ) -> list[AlertChange]:
        """``devices``: (key, why it is offline or None, how to raise its alert or None:
        not to be raised). The open ``alert_type`` alert of a device online again stops;
        one is raised for an offline device that has none."""
        open_alerts = {key_of(a): a for a in await self._open_of_type(session, alert_type)}
        changes: list[AlertChange] = []
        for key, reason, raise_ in devices:
            alert = open_alerts.get(key)
            if reason is None and alert is not None:
                changes.append(self.stop(session, alert, now))
            elif reason is not None and alert is None and raise_ is not None:
                changes.append(await raise_(reason))
        return changes

    async def _sweep_offline_stations(
        self, session: AsyncSession, now: datetime
    ) -> list[AlertChange]:
        """Stations offline by the one liveness rule (the map and the rent path ask it
        too): raised once per outage, stopped when the station is online again. Only
        stations that once had a birth accepted (a station never installed is no outage)."""
        rows = (
            await session.execute(
                select(Station, Cluster, *PRESENCE_COLUMNS)
                .join(Device, Device.device_id == Station.device_id)
                .join(Cluster, Cluster.id == Station.cluster_id)
                .where(Device.boot_id.is_not(None))
            )
        ).all()
        devices = [
            (
                station.device_id,
                why_offline(presence_of(presence), now),
                partial(self._station_offline, session, now, station, cluster),
            )
            for station, cluster, *presence in rows
        ]
        return await self._sweep_liveness(
            session, now, AlertType.STATION_OFFLINE, lambda a: a.device_id, devices
        )

    async def _station_offline(
        self, session: AsyncSession, now: datetime, station: Station, cluster: Cluster, reason: str
    ) -> AlertChange:
        subject = Subject(
            key=station.device_id,
            network_id=cluster.network_id,
            cluster_id=cluster.id,
            station_id=station.id,
            device_id=station.device_id,
            extra={"station_id": station.id, "cluster_name": cluster.name},
            label=f"station {station.name}",
        )
        return await self.raise_alert(
            session,
            AlertType.STATION_OFFLINE,
            subject,
            now=now,
            message=f"station {station.name} is offline: {reason}",
            extra={"reason": reason},
        )

    async def _sweep_silent_vehicles(
        self, session: AsyncSession, now: datetime
    ) -> list[AlertChange]:
        """A vehicle controller gone silent (the liveness rule, its record still online)
        raises ``lock-shutdown`` as its Death does; the alert stops once the controller is
        online again (a birth stops it too, :mod:`.device_rules`). Run before ingest writes
        the silence (:mod:`kickstand.cloud.ingest.silence`): once per silence."""
        rows = (
            await session.execute(
                select(Vehicle, *PRESENCE_COLUMNS)
                .join(Device, Device.device_id == Vehicle.device_id)
                .where(Device.boot_id.is_not(None))
            )
        ).all()
        devices: list[_Judged] = []
        for row in rows:
            vehicle: Vehicle = row[0]
            presence = presence_of(row[1:])
            # Only a silence: a dead controller's Death raised it already.
            raise_ = partial(self._lock_silent, session, now, vehicle) if presence.online else None
            devices.append((vehicle.id, why_offline(presence, now), raise_))
        return await self._sweep_liveness(
            session, now, AlertType.LOCK_SHUTDOWN, lambda a: a.vehicle_id, devices
        )

    async def _lock_silent(
        self, session: AsyncSession, now: datetime, vehicle: Vehicle, reason: str
    ) -> AlertChange:
        return await self.raise_alert(
            session,
            AlertType.LOCK_SHUTDOWN,
            vehicle_subject(vehicle),
            now=now,
            message=f"lock of vehicle {vehicle.serial_number} silent: {reason}",
            extra={"reason": "silent"},
        )

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
        # The rule versions in force at each trip's start (the billing's own reading,
        # trips.rule_book): a rule closed since (valid_until set) or added later does not
        # move a running trip's operational period. Keyed by (network, start).
        books: dict[tuple[int, datetime], RuleBook | None] = {}
        active: list[Trip] = list(
            await session.scalars(select(Trip).where(Trip.status.in_(ACTIVE_TRIP_STATUSES)))
        )
        outside: dict[int, Trip] = {}
        for trip in active:
            key = (trip.network_id, trip.started_at)
            if key not in books:
                network = await session.get(Network, trip.network_id)
                found = (
                    await trips.rule_book(session, network, trip.started_at)
                    if network is not None
                    else None
                )
                books[key] = found if found is not None and found.rules else None
            book = books[key]
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
            subject = await trip_subject(session, trip)
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

    async def _sweep_not_returned(self, session: AsyncSession, now: datetime) -> list[AlertChange]:
        """A trip still running past its network's ``vehicle_stolen`` (seed 002 rent
        timings: the vehicle "is considered stolen if it is still not returned") raises
        vehicle-not-returned; the trip's end stops it."""
        changes: list[AlertChange] = []
        rows = (
            await session.execute(
                select(Trip, Network.vehicle_stolen)
                .join(Network, Network.id == Trip.network_id)
                .where(Trip.status.in_(ACTIVE_TRIP_STATUSES))
            )
        ).all()
        overdue = {
            trip.id: (trip, limit_s)
            for trip, limit_s in rows
            if limit_s > 0 and now >= trip.started_at + timedelta(seconds=limit_s)
        }
        open_alerts = await self._open_of_type(session, AlertType.VEHICLE_NOT_RETURNED)
        for alert in open_alerts:
            if alert.trip_id not in overdue:
                changes.append(self.stop(session, alert, now))
        open_trips = {a.trip_id for a in open_alerts}
        for trip, limit_s in overdue.values():
            if trip.id in open_trips:
                continue
            subject = await trip_subject(session, trip)
            changes.append(
                await self.raise_alert(
                    session,
                    AlertType.VEHICLE_NOT_RETURNED,
                    subject,
                    now=now,
                    message=f"trip {trip.id} not returned after {limit_s // 3600} h: "
                    "the vehicle is considered stolen",
                    extra={"threshold_s": limit_s},
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
