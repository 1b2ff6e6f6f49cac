"""Rules of field operations: maintenances of stations, spots and vehicles, riders'
reports, and an operator's hand on a trip (stop billing) or a rider's (hold, resume).

Maintenances (seed 002 ``Maintenances``, seed 001's technician operations):

* A maintenance is a record of a type (the seed's catalogue: key, target type, default
  severity) opened on one target — a station (as a whole), a spot or a vehicle — with a
  comment, who opened it and when; it stays current until someone resolves it (who, when).
* A record of severity ``low`` or ``high`` takes its target out of service while it is
  open; ``info`` ("does not impact the service") does not. A spot or a station goes
  through :mod:`kickstand.cloud.maintenance` (the cloud's record at once, a signed
  SetMaintenance to the station); a vehicle gets ``in_maintenance`` (the one rentable rule,
  :mod:`kickstand.cloud.rentable`, refuses it) and, when it has a controller, a
  SetMaintenance(spot 0). Resolving the last such record of a target puts it back.
* ``PUT /v1/dashboard/spots|stations/{id}/maintenance`` is the same thing without a type
  of the operator's choosing: it opens a record of the built-in type
  ``<target>-out-of-service`` (or resolves the target's open out-of-service records).

Every function works in the caller's transaction; commands are issued and recorded in it,
and the caller sends them after its commit (``gateway.send_command``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import maintenance as holds
from kickstand.cloud import outbox, trips
from kickstand.cloud.commands.records import record_command
from kickstand.cloud.errors import ConflictError, InvalidInputError, NotFoundError
from kickstand.cloud.events import catalogue as ev
from kickstand.cloud.models import (
    ACTIVE_TRIP_STATUSES,
    Cluster,
    Network,
    Spot,
    SpotState,
    Station,
    Trip,
    User,
    Vehicle,
)
from kickstand.cloud.operations.models import (
    OUT_OF_SERVICE,
    Maintenance,
    MaintenanceSeverity,
    MaintenanceTarget,
    MaintenanceType,
    Report,
    ReportPicture,
    TripBillingStop,
)
from kickstand.cloud.rent_gateway import CommandGateway, IssuedCommand
from kickstand.protocol.v1 import messages as m

log = logging.getLogger("kickstand.cloud.operations.service")

#: SetMaintenance's reason on the wire is short (SPEC §6).
REASON_MAX = 64
#: Report pictures: what is accepted, and how much.
PICTURE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})
PICTURE_MAX_BYTES = 5 * 1024 * 1024
PICTURES_PER_REPORT = 10


def _now() -> datetime:
    return datetime.now(UTC)


# ── maintenance types ─────────────────────────────────────────────────────────────────


def builtin_type_key(target: MaintenanceTarget) -> str:
    """The type the PUT …/maintenance routes open: the target out of service."""
    return f"{target.value}-out-of-service"


async def maintenance_types(session: AsyncSession) -> Sequence[MaintenanceType]:
    """Types that may be used (deleted ones are left out), by key."""
    stmt = (
        select(MaintenanceType)
        .where(MaintenanceType.deleted_at.is_(None))
        .order_by(MaintenanceType.key)
    )
    return (await session.scalars(stmt)).all()


async def create_type(
    session: AsyncSession, key: str, target: MaintenanceTarget, severity: MaintenanceSeverity
) -> MaintenanceType:
    """A new type; a deleted type of that key comes back with the new target and severity
    (its old records keep their own severity)."""
    row = await session.get(MaintenanceType, key, with_for_update=True)
    if row is not None and row.deleted_at is None:
        raise ConflictError(f"maintenance type {key!r} exists", reason="maintenance-type-exists")
    if row is None:
        row = MaintenanceType(key=key, target_type=target, severity=severity)
        session.add(row)
    else:
        row.target_type, row.severity, row.deleted_at = target, severity, None
    await session.flush()
    return row


async def delete_type(session: AsyncSession, key: str) -> None:
    """No new record may use it; the records that name it keep it."""
    row = await session.get(MaintenanceType, key, with_for_update=True)
    if row is None or row.deleted_at is not None:
        raise NotFoundError("maintenance type", key)
    row.deleted_at = _now()
    await session.flush()


async def _usable_type(session: AsyncSession, key: str) -> MaintenanceType:
    row = await session.get(MaintenanceType, key)
    if row is None or row.deleted_at is not None:
        raise NotFoundError("maintenance type", key)
    return row


async def _builtin_type(session: AsyncSession, target: MaintenanceTarget) -> MaintenanceType:
    key = builtin_type_key(target)
    row = await session.get(MaintenanceType, key)
    if row is None:
        row = MaintenanceType(key=key, target_type=target, severity=MaintenanceSeverity.HIGH)
        session.add(row)
        await session.flush()
    return row


# ── targets ───────────────────────────────────────────────────────────────────────────


@dataclass(slots=True)
class Target:
    """What a maintenance is opened on, locked for the change, and its network."""

    kind: MaintenanceTarget
    network_id: int
    spot: holds.SpotRef | None = None
    station: holds.StationRef | None = None
    vehicle: Vehicle | None = None

    @property
    def ids(self) -> dict[str, int | None]:
        """The record's target columns."""
        if self.spot is not None:
            return {"spot_id": self.spot.spot.id, "station_id": self.spot.station.id}
        if self.station is not None:
            return {"station_id": self.station.station.id}
        assert self.vehicle is not None
        return {"vehicle_id": self.vehicle.id}


async def target(session: AsyncSession, kind: MaintenanceTarget, target_id: int) -> Target:
    """The target (locked) and its network; NotFoundError if there is none. The caller
    checks the network (``operator.check``) before changing anything."""
    if kind is MaintenanceTarget.SPOT:
        spot = await holds.spot_ref(session, target_id)
        return Target(kind, spot.network_id, spot=spot)
    if kind is MaintenanceTarget.STATION:
        station = await holds.station_ref(session, target_id)
        return Target(kind, station.network_id, station=station)
    vehicle = await session.get(Vehicle, target_id, with_for_update={"key_share": True})
    if vehicle is None:
        raise NotFoundError("vehicle", target_id)
    return Target(kind, vehicle.network_id, vehicle=vehicle)


async def vehicle_by_serial(session: AsyncSession, serial_number: str) -> int:
    vehicle_id = await session.scalar(
        select(Vehicle.id).where(Vehicle.serial_number == serial_number.strip().upper())
    )
    if vehicle_id is None:
        raise NotFoundError("vehicle", serial_number)
    return vehicle_id


def _open_on(t: Target) -> Any:
    """The open records of exactly this target (a station's own, not its spots')."""
    where = [Maintenance.stopped_at.is_(None), Maintenance.target_type == t.kind]
    for column, value in t.ids.items():
        if column == "station_id" and t.kind is MaintenanceTarget.SPOT:
            continue
        where.append(getattr(Maintenance, column) == value)
    return select(Maintenance).where(*where)


async def _out_of_service(
    session: AsyncSession,
    gateway: CommandGateway,
    t: Target,
    on: bool,
    reason: str | None,
) -> IssuedCommand | None:
    """Take the target out of service or put it back; the command to send after commit."""
    short = reason[:REASON_MAX] if reason else None
    if t.spot is not None:
        return await holds.set_spot_maintenance(session, gateway, t.spot, on, short)
    if t.station is not None:
        return await holds.set_station_maintenance(session, gateway, t.station, on, short)
    vehicle = t.vehicle
    assert vehicle is not None
    vehicle.in_maintenance = on
    outbox.emit(session, ev.VEHICLE_UPDATED, vehicle.id, trips.vehicle_payload(vehicle))
    if vehicle.device_id is None:
        return None  # a dock-only bike: the cloud's record is all there is
    issued = gateway.issue_command(
        vehicle.device_id, m.SetMaintenance(spot=0, on=on, reason=short or "")
    )
    await record_command(session, issued)
    return issued


def out_of_service(t: Target) -> bool:
    """The target is out of service now (whoever holds it)."""
    if t.spot is not None:
        return t.spot.spot.state == SpotState.MAINTENANCE
    if t.station is not None:
        return holds.station_in_maintenance(t.station)
    assert t.vehicle is not None
    return t.vehicle.in_maintenance


@dataclass(slots=True)
class Change:
    """Records opened or resolved, and the command to send after the commit."""

    records: list[Maintenance] = field(default_factory=list)
    command: IssuedCommand | None = None


async def open_maintenance(
    session: AsyncSession,
    gateway: CommandGateway,
    t: Target,
    *,
    type_key: str,
    user_id: int,
    comment: str | None = None,
    severity: MaintenanceSeverity | None = None,
    report_id: int | None = None,
) -> Change:
    kind = await _usable_type(session, type_key)
    if kind.target_type != t.kind:
        raise InvalidInputError(
            f"maintenance type {type_key!r} applies to a {kind.target_type}, not a {t.kind}",
            field="maintenance_type",
        )
    if report_id is not None:
        report = await session.get(Report, report_id)
        if report is None or report.network_id != t.network_id:
            raise NotFoundError("report", report_id)
    return await _open(
        session, gateway, t, kind, user_id, comment, severity or kind.severity, report_id
    )


async def _open(
    session: AsyncSession,
    gateway: CommandGateway,
    t: Target,
    kind: MaintenanceType,
    user_id: int,
    comment: str | None,
    severity: MaintenanceSeverity,
    report_id: int | None,
) -> Change:
    record = Maintenance(
        type_key=kind.key,
        target_type=t.kind,
        network_id=t.network_id,
        severity=severity,
        comment=comment,
        report_id=report_id,
        started_at=_now(),
        started_by=user_id,
        **t.ids,
    )
    session.add(record)
    await session.flush()
    command = None
    if severity in OUT_OF_SERVICE:
        command = await _out_of_service(session, gateway, t, True, comment or kind.key)
    log.info(
        "event=maintenance_opened id=%s target=%s:%s type=%s severity=%s by=%s",
        record.id,
        t.kind.value,
        next(iter(t.ids.values())),
        kind.key,
        severity.value,
        user_id,
    )
    return Change([record], command)


async def _release_if_last(
    session: AsyncSession, gateway: CommandGateway, t: Target, reason: str | None
) -> IssuedCommand | None:
    """Put the target back in service unless another open record still holds it."""
    still = (
        await session.scalars(_open_on(t).where(Maintenance.severity.in_(OUT_OF_SERVICE)).limit(1))
    ).first()
    if still is not None:
        return None
    return await _out_of_service(session, gateway, t, False, reason)


async def get_maintenance(
    session: AsyncSession, maintenance_id: int, *, lock: bool = False
) -> Maintenance:
    record = await session.get(Maintenance, maintenance_id, with_for_update=lock or None)
    if record is None:
        raise NotFoundError("maintenance", maintenance_id)
    return record


def target_of(record: Maintenance) -> tuple[MaintenanceTarget, int]:
    if record.target_type is MaintenanceTarget.SPOT:
        assert record.spot_id is not None
        return record.target_type, record.spot_id
    if record.target_type is MaintenanceTarget.STATION:
        assert record.station_id is not None
        return record.target_type, record.station_id
    assert record.vehicle_id is not None
    return record.target_type, record.vehicle_id


async def resolve_maintenance(
    session: AsyncSession,
    gateway: CommandGateway,
    record: Maintenance,
    t: Target,
    *,
    user_id: int,
    delete_from_history: bool = False,
) -> Change:
    """Resolve (or delete) a record; the target is back in service when no other open
    record holds it. Resolving a resolved record changes nothing."""
    change = Change([record])
    if record.stopped_at is None:
        record.stopped_at = _now()
        record.stopped_by = user_id
        await session.flush()
        if record.severity in OUT_OF_SERVICE:
            change.command = await _release_if_last(session, gateway, t, record.type_key)
        log.info("event=maintenance_resolved id=%s by=%s", record.id, user_id)
    if delete_from_history:
        await session.delete(record)
        await session.flush()
    return change


async def update_maintenance(
    record: Maintenance, *, comment: str | None, severity: MaintenanceSeverity | None
) -> None:
    """Seed 001 "Update of the comment and severity" of a current maintenance. A change of
    severity across the in-service line takes effect at the next open or resolve of the
    target; so it is refused on a record that would cross it."""
    if record.stopped_at is not None:
        raise ConflictError("this maintenance is resolved", reason="maintenance-resolved")
    if severity is not None and (severity in OUT_OF_SERVICE) != (record.severity in OUT_OF_SERVICE):
        raise InvalidInputError(
            "severity cannot move between info and low/high: resolve it and open another",
            field="severity",
        )
    if comment is not None:
        record.comment = comment
    if severity is not None:
        record.severity = severity


async def set_held(
    session: AsyncSession,
    gateway: CommandGateway,
    t: Target,
    on: bool,
    *,
    user_id: int,
    reason: str | None,
) -> Change:
    """The PUT …/maintenance routes: ``on`` opens a record of the built-in out-of-service
    type (or keeps the one open) and tells the device again; off resolves every open
    out-of-service record of the target and puts it back."""
    kind = await _builtin_type(session, t.kind)
    held = list(
        (await session.scalars(_open_on(t).where(Maintenance.severity.in_(OUT_OF_SERVICE)))).all()
    )
    if on:
        current = next((r for r in held if r.type_key == kind.key), None)
        if current is None:
            return await _open(
                session, gateway, t, kind, user_id, reason, MaintenanceSeverity.HIGH, None
            )
        command = await _out_of_service(session, gateway, t, True, reason or kind.key)
        return Change([current], command)
    now = _now()
    for record in held:
        record.stopped_at, record.stopped_by = now, user_id
    await session.flush()
    command = await _out_of_service(session, gateway, t, False, reason)
    return Change(held, command)


# ── reports ───────────────────────────────────────────────────────────────────────────


async def create_report(
    session: AsyncSession,
    user_id: int,
    *,
    message: str,
    network_id: int | None = None,
    vehicle_id: int | None = None,
    spot_id: int | None = None,
    trip_id: int | None = None,
) -> Report:
    """A rider reports a problem; its network is the one of what it names (all of them
    must agree), else ``network_id``."""
    networks: dict[str, int] = {}
    if vehicle_id is not None:
        vehicle = await session.get(Vehicle, vehicle_id)
        if vehicle is None:
            raise NotFoundError("vehicle", vehicle_id)
        networks["vehicle_id"] = vehicle.network_id
    if spot_id is not None:
        spot_network = await session.scalar(
            select(Cluster.network_id)
            .join(Station, Station.cluster_id == Cluster.id)
            .join(Spot, Spot.station_id == Station.id)
            .where(Spot.id == spot_id)
        )
        if spot_network is None:
            raise NotFoundError("spot", spot_id)
        networks["spot_id"] = spot_network
    if trip_id is not None:
        trip = await session.get(Trip, trip_id)
        if trip is None or trip.user_id != user_id:
            raise NotFoundError("trip", trip_id)
        networks["trip_id"] = trip.network_id
    if network_id is not None:
        if await session.get(Network, network_id) is None:
            raise NotFoundError("network", network_id)
        networks["network_id"] = network_id
    if not networks:
        raise InvalidInputError(
            "name what the report is about (vehicle_id, spot_id, trip_id) or its network_id",
            field="network_id",
        )
    if len(set(networks.values())) > 1:
        raise InvalidInputError(
            "the vehicle, spot, trip and network named are not of one network",
            field=next(iter(networks)),
        )
    report = Report(
        user_id=user_id,
        network_id=next(iter(networks.values())),
        vehicle_id=vehicle_id,
        spot_id=spot_id,
        trip_id=trip_id,
        message=message,
        created_at=_now(),
    )
    session.add(report)
    await session.flush()
    return report


async def get_report(session: AsyncSession, report_id: int, *, lock: bool = False) -> Report:
    report = await session.get(Report, report_id, with_for_update=lock or None)
    if report is None:
        raise NotFoundError("report", report_id)
    return report


async def rider_report(session: AsyncSession, user_id: int, report_id: int) -> Report:
    """The rider's own report (another's is not found)."""
    report = await session.get(Report, report_id)
    if report is None or report.user_id != user_id:
        raise NotFoundError("report", report_id)
    return report


async def add_picture(
    session: AsyncSession, report: Report, content_type: str | None, data: bytes
) -> ReportPicture:
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind not in PICTURE_TYPES:
        raise InvalidInputError(
            f"a picture is one of {', '.join(sorted(PICTURE_TYPES))}", field="chat_image"
        )
    if not data:
        raise InvalidInputError("the picture is empty", field="chat_image")
    if len(data) > PICTURE_MAX_BYTES:
        raise InvalidInputError(
            f"a picture is at most {PICTURE_MAX_BYTES // (1024 * 1024)} MiB", field="chat_image"
        )
    if report.resolved_at is not None:
        raise ConflictError("this report is resolved", reason="report-resolved")
    count = len(await pictures_of(session, [report.id]))
    if count >= PICTURES_PER_REPORT:
        raise ConflictError(
            f"a report holds at most {PICTURES_PER_REPORT} pictures", reason="report-full"
        )
    picture = ReportPicture(
        report_id=report.id, content_type=kind, size=len(data), data=data, created_at=_now()
    )
    session.add(picture)
    await session.flush()
    return picture


async def pictures_of(
    session: AsyncSession, report_ids: Sequence[int]
) -> list[tuple[int, int, datetime]]:
    """(picture id, report id, date) of the reports' pictures, without their bytes."""
    if not report_ids:
        return []
    rows = await session.execute(
        select(ReportPicture.id, ReportPicture.report_id, ReportPicture.created_at)
        .where(ReportPicture.report_id.in_(report_ids))
        .order_by(ReportPicture.id)
    )
    return [(r[0], r[1], r[2]) for r in rows.all()]


async def get_picture(session: AsyncSession, report: Report, picture_id: int) -> ReportPicture:
    picture = await session.get(ReportPicture, picture_id)
    if picture is None or picture.report_id != report.id:
        raise NotFoundError("picture", picture_id)
    return picture


async def resolve_report(report: Report, user_id: int) -> None:
    """Mark it resolved (once: resolving again keeps who and when it was)."""
    if report.resolved_at is None:
        report.resolved_at = _now()
        report.resolved_by = user_id


async def people(session: AsyncSession, user_ids: set[int | None]) -> dict[int, User]:
    ids = {i for i in user_ids if i is not None}
    if not ids:
        return {}
    users: Sequence[User] = (await session.scalars(select(User).where(User.id.in_(ids)))).all()
    return {u.id: u for u in users}


async def maintainers(session: AsyncSession, records: Sequence[Maintenance]) -> dict[int, str]:
    """The names (else emails) of who opened and resolved the records, by user id."""
    ids = {r.started_by for r in records} | {r.stopped_by for r in records}
    return {uid: u.full_name or u.email for uid, u in (await people(session, ids)).items()}


# ── trips ─────────────────────────────────────────────────────────────────────────────


async def stop_trip_billing(
    session: AsyncSession, trip: Trip, at: datetime | None, *, reason: str, user_id: int
) -> trips.TripEventResult:
    """Seed 002 "Stop trip billing" for a stuck trip (vehicle lost, a dock never
    reported): nothing is billed after ``at`` (None erases a previous stop); an ended
    trip is billed again (its one charge corrected). Kept with who and why."""
    if at is not None:
        if at < trip.started_at:
            raise InvalidInputError("the billing cannot stop before the trip started", field="date")
        if at > _now():
            raise InvalidInputError("the billing stop cannot be in the future", field="date")
    result = await trips.stop_billing(session, trip.id, at)
    if result.action != "duplicate":
        session.add(
            TripBillingStop(
                trip_id=trip.id, stop_at=at, reason=reason, user_id=user_id, created_at=_now()
            )
        )
        await session.flush()
        log.info(
            "event=trip_billing_stopped trip_id=%s at=%s by=%s",
            trip.id,
            at.isoformat() if at else None,
            user_id,
        )
    return result


async def billing_stops(session: AsyncSession, trip_id: int) -> Sequence[TripBillingStop]:
    stmt = (
        select(TripBillingStop)
        .where(TripBillingStop.trip_id == trip_id)
        .order_by(TripBillingStop.id)
    )
    return (await session.scalars(stmt)).all()


async def rider_trip(session: AsyncSession, user_id: int, trip_id: int) -> Trip:
    trip = await session.get(Trip, trip_id)
    if trip is None or trip.user_id != user_id:
        raise NotFoundError("trip", trip_id)
    return trip


async def hold(session: AsyncSession, user_id: int, trip_id: int) -> trips.TripEventResult:
    """The rider puts its running trip on hold (the network must allow it: its vehicle
    stays the rider's, billed at the on-hold price, until it resumes or the network's
    ``trip_max_pause`` ends the trip)."""
    await rider_trip(session, user_id, trip_id)
    return await trips.hold_trip(session, trip_id, _now())


async def resume(session: AsyncSession, user_id: int, trip_id: int) -> trips.TripEventResult:
    trip = await rider_trip(session, user_id, trip_id)
    if trip.status not in ACTIVE_TRIP_STATUSES:
        raise ConflictError(
            f"trip {trip.id} is {trip.status}, it cannot be resumed", reason="trip-not-on-hold"
        )
    return await trips.resume_trip(session, trip_id, _now())
