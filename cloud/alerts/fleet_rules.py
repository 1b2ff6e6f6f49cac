"""Fleet rules of issue 16: a device offline too long, a spot whose lock fails, a vehicle
reported in a spot while the cloud holds it in another.

* ``device-offline-too-long`` — a station's or vehicle's device offline by the one
  liveness rule (:mod:`kickstand.cloud.liveness`) and not heard for
  ``AlertConfig.offline_too_long_s``: raised by the sweep once per outage, stopped when
  the device is online again. (``station-offline`` and ``lock-shutdown`` say "down now";
  this one says "down for long: send someone".)
* ``spot-lock-fault`` — a station reports a spot's lock JAMMED (its status) or a spot
  board fault (BoardFault); stopped when the lock is reported locked or open again, or the
  board recovers.
* ``vehicle-in-two-spots`` — a station reports (dock or status) a vehicle in a spot while
  the cloud holds it docked in another: the cloud still moves it (the status is
  authoritative, SPEC §4.4), and says so; stopped when the spot it left no longer claims
  it (ingest's last status of that spot names another vehicle or none), or the vehicle
  leaves its spot.
* ``device-certificate-expiring`` (issue 17) — a device whose newest unrevoked certificate
  expires within ``AlertConfig.certificate_expiring_days``: it has not renewed (SPEC §7.7)
  and the broker will refuse it at expiry. Raised by the sweep, stopped once a renewed
  certificate is recorded (or its certificates are revoked: decommissioned).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.alerts.core import AlertChange, Subject, _aware, vehicle_subject
from kickstand.cloud.alerts.device_rules import DeviceRules
from kickstand.cloud.alerts.sweeps import SweepRules, _Judged
from kickstand.cloud.alerts.types import AlertType
from kickstand.cloud.devices.certificates import DeviceCertificate
from kickstand.cloud.ingest.tables import DeviceStatus
from kickstand.cloud.liveness import PRESENCE_COLUMNS, Presence, presence_of, why_offline
from kickstand.cloud.models import Cluster, Device, Spot, Station, Vehicle
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import LockState


class FleetRules(SweepRules, DeviceRules):
    """Raises and stops the fleet alerts of issue 16 (see the module)."""

    # ── device offline too long (sweep) ─────────────────────────────────────────────

    async def _sweep_offline_too_long(
        self, session: AsyncSession, now: datetime
    ) -> list[AlertChange]:
        limit = timedelta(seconds=self.config.offline_too_long_s)
        stations = (
            await session.execute(
                select(Station, Cluster.network_id, *PRESENCE_COLUMNS)
                .join(Device, Device.device_id == Station.device_id)
                .join(Cluster, Cluster.id == Station.cluster_id)
                .where(Device.boot_id.is_not(None))
            )
        ).all()
        vehicles = (
            await session.execute(
                select(Vehicle, *PRESENCE_COLUMNS)
                .join(Device, Device.device_id == Vehicle.device_id)
                .where(Device.boot_id.is_not(None))
            )
        ).all()
        judged: list[tuple[str, Presence, Subject]] = []
        for row in stations:
            station: Station = row[0]
            network_id: int = row[1]
            columns = row[2:]
            subject = Subject(
                key=station.device_id,
                network_id=network_id,
                cluster_id=station.cluster_id,
                station_id=station.id,
                device_id=station.device_id,
                extra={"station_id": station.id},
                label=f"station {station.name}",
            )
            judged.append((station.device_id, presence_of(columns), subject))
        for vehicle_row in vehicles:
            vehicle: Vehicle = vehicle_row[0]
            assert vehicle.device_id is not None  # joined on it
            subject = vehicle_subject(vehicle, key=vehicle.device_id)
            judged.append((vehicle.device_id, presence_of(vehicle_row[1:]), subject))
        devices: list[_Judged] = []
        for device_id, presence, subject in judged:
            reason = why_offline(presence, now)
            seen = presence.last_seen_at
            if reason is not None and seen is not None and now - _aware(seen) < limit:
                reason = None  # offline, not for long yet: station-offline says so
            devices.append(
                (device_id, reason, partial(self._offline_too_long, session, now, subject))
            )
        return await self._sweep_liveness(
            session, now, AlertType.DEVICE_OFFLINE_TOO_LONG, lambda a: a.device_id, devices
        )

    async def _offline_too_long(
        self, session: AsyncSession, now: datetime, subject: Subject, reason: str
    ) -> AlertChange:
        hours = self.config.offline_too_long_s / 3600
        return await self.raise_alert(
            session,
            AlertType.DEVICE_OFFLINE_TOO_LONG,
            subject,
            now=now,
            message=f"{subject.label} offline for more than {hours:g} h: {reason}",
            extra={"reason": reason, "threshold_s": self.config.offline_too_long_s},
        )

    # ── spot lock fault (events and statuses) ───────────────────────────────────────

    async def _lock_fault_rules(
        self, session: AsyncSession, device_id: str, station_id: int, body: m.UpBody, now: datetime
    ) -> list[AlertChange]:
        match body:
            case m.BoardFault(spot=spot, reason=reason):
                return [await self._lock_fault(session, device_id, station_id, spot, now, reason)]
            case m.BoardRecovered(spot=spot):
                key = f"{device_id}/{spot}" if spot else device_id
                return await self._stop_many(session, [AlertType.SPOT_LOCK_FAULT], key, now)
        return []

    async def on_spot_lock(
        self,
        session: AsyncSession,
        device_id: str,
        station_id: int,
        spot: int,
        lock: int,
        *,
        now: datetime | None = None,
    ) -> list[AlertChange]:
        """A station's status changed a spot's lock state (ingest calls this on a change)."""
        now = now or self.clock()
        if lock == LockState.JAMMED:
            return [await self._lock_fault(session, device_id, station_id, spot, now, "jammed")]
        key = f"{device_id}/{spot}"
        return await self._stop_many(session, [AlertType.SPOT_LOCK_FAULT], key, now)

    async def _lock_fault(
        self,
        session: AsyncSession,
        device_id: str,
        station_id: int,
        spot: int,
        now: datetime,
        reason: str,
    ) -> AlertChange:
        from kickstand.cloud.alerts.device_rules import _DeviceContext

        ctx = _DeviceContext(device_id, station_id)
        subject = await self._spot_subject(session, ctx, spot)
        return await self.raise_alert(
            session,
            AlertType.SPOT_LOCK_FAULT,
            subject,
            now=now,
            message=f"lock fault at {subject.label}: {reason}",
            extra={"fault": reason},
        )

    # ── device certificates expiring (sweep) ────────────────────────────────────────

    async def _sweep_certificates_expiring(
        self, session: AsyncSession, now: datetime
    ) -> list[AlertChange]:
        limit = now + timedelta(days=self.config.certificate_expiring_days)
        newest = (
            select(
                DeviceCertificate.device_id.label("pk"),
                func.max(DeviceCertificate.not_after).label("not_after"),
            )
            .where(DeviceCertificate.revoked_at.is_(None))
            .group_by(DeviceCertificate.device_id)
            .subquery()
        )
        result = await session.execute(
            select(Device.device_id, newest.c.not_after)
            .join(newest, newest.c.pk == Device.id, isouter=True)
            # Only devices that ever had a certificate: the others have nothing to renew.
            .where(Device.id.in_(select(DeviceCertificate.device_id).distinct()))
        )
        rows: Sequence[Row[str, datetime | None]] = result.all()
        devices: list[_Judged] = []
        for device_id, not_after in rows:
            if not_after is None:  # every certificate revoked: nothing left to renew
                devices.append((device_id, None, None))
                continue
            expires = _aware(not_after)
            reason = None if expires > limit else f"expires {expires.isoformat()}"
            devices.append(
                (
                    device_id,
                    reason,
                    partial(self._certificate_expiring, session, now, device_id, expires),
                )
            )
        return await self._sweep_liveness(
            session, now, AlertType.DEVICE_CERTIFICATE_EXPIRING, lambda a: a.device_id, devices
        )

    async def _certificate_expiring(
        self, session: AsyncSession, now: datetime, device_id: str, expires: datetime, _: str
    ) -> AlertChange:
        subject = await self._certificate_subject(session, device_id)
        days = max(0.0, (expires - now).total_seconds() / 86400)
        return await self.raise_alert(
            session,
            AlertType.DEVICE_CERTIFICATE_EXPIRING,
            subject,
            now=now,
            message=f"{subject.label}: its certificate expires in {days:.1f} days and was "
            "not renewed",
            extra={"not_after": expires.isoformat()},
        )

    async def on_firmware_failure(
        self,
        session: AsyncSession,
        device_id: str,
        alert_type: AlertType,
        *,
        now: datetime,
        message: str,
        extra: dict[str, Any],
    ) -> AlertChange:
        """``firmware-update-failed`` / ``firmware-rolled-back`` (issue 18): a device's
        update failed or did not confirm itself (kickstand.cloud.firmware.progress)."""
        subject = await self._certificate_subject(session, device_id)
        return await self.raise_alert(
            session, alert_type, subject, now=now, message=f"{subject.label}: {message}",
            extra=extra,
        )

    async def _certificate_subject(self, session: AsyncSession, device_id: str) -> Subject:
        station = (
            await session.execute(
                select(Station, Cluster.network_id)
                .join(Cluster, Cluster.id == Station.cluster_id)
                .where(Station.device_id == device_id)
            )
        ).first()
        if station is not None:
            st: Station = station[0]
            return Subject(
                key=device_id,
                network_id=station[1],
                cluster_id=st.cluster_id,
                station_id=st.id,
                device_id=device_id,
                extra={"station_id": st.id},
                label=f"station {st.name}",
            )
        vehicle = await session.scalar(select(Vehicle).where(Vehicle.device_id == device_id))
        if vehicle is not None:
            return vehicle_subject(vehicle, key=device_id)
        # Provisioned at the bench, not commissioned yet: in no network.
        return Subject(key=device_id, device_id=device_id, label=f"device {device_id}")

    # ── a vehicle in two spots (ingest's docks and statuses) ────────────────────────

    async def spot_of_vehicle(self, session: AsyncSession, serial: str | None) -> int | None:
        """Where the cloud holds the vehicle before a dock or a status moves it."""
        if not serial:
            return None
        spot_id: int | None = await session.scalar(
            select(Vehicle.spot_id).where(Vehicle.serial_number == serial)
        )
        return spot_id

    async def on_vehicle_placed(
        self,
        session: AsyncSession,
        serial: str | None,
        before: int | None,
        *,
        now: datetime | None = None,
    ) -> list[AlertChange]:
        """After a dock or a status placed ``serial``: the cloud held it in spot ``before``
        and now holds it in another: the vehicle was seen in two spots."""
        if before is None or not serial:
            return []
        vehicle = await session.scalar(select(Vehicle).where(Vehicle.serial_number == serial))
        if vehicle is None or vehicle.spot_id is None or vehicle.spot_id == before:
            return []
        spots: dict[int, tuple[Spot, Station]] = {}
        rows = await session.execute(
            select(Spot, Station)
            .join(Station, Station.id == Spot.station_id)
            .where(Spot.id.in_([before, vehicle.spot_id]))
        )
        for spot_row, station_row in rows.all():
            spots[spot_row.id] = (spot_row, station_row)
        subject = vehicle_subject(vehicle)
        left, now_in = spots.get(before), spots.get(vehicle.spot_id)
        where = {
            "previous_spot_id": before,
            "spot_id": vehicle.spot_id,
            "previous_station_device_id": left[1].device_id if left else None,
            "previous_spot_number": left[0].displayed_number if left else None,
        }
        label = f"{now_in[1].name} spot {now_in[0].displayed_number}" if now_in else "another spot"
        return [
            await self.raise_alert(
                session,
                AlertType.VEHICLE_IN_TWO_SPOTS,
                subject,
                now=now or self.clock(),
                message=f"vehicle {vehicle.serial_number} reported at {label} while held in "
                f"spot {before}: moved",
                extra=where,
            )
        ]

    async def _sweep_two_spots(self, session: AsyncSession, now: datetime) -> list[AlertChange]:
        """Stop the alerts whose left spot no longer claims the vehicle (its station's last
        status names another vehicle or none) or whose vehicle left its spot."""
        changes: list[AlertChange] = []
        for alert in await self._open_of_type(session, AlertType.VEHICLE_IN_TWO_SPOTS):
            extra = alert.extra or {}
            vehicle = await session.get(Vehicle, alert.vehicle_id) if alert.vehicle_id else None
            if vehicle is None or vehicle.spot_id != extra.get("spot_id"):
                changes.append(self.stop(session, alert, now))
                continue
            claimed = await session.scalar(
                select(DeviceStatus.serial_number).where(
                    DeviceStatus.device_id == extra.get("previous_station_device_id"),
                    DeviceStatus.spot == extra.get("previous_spot_number"),
                )
            )
            if claimed != vehicle.serial_number:
                changes.append(self.stop(session, alert, now))
        return changes


__all__ = ["FleetRules"]
