"""Zones in the database, and a per-network cache of their :class:`GeofenceIndex`.

Tables (on the cloud core's ``Base``; migration ``0004_geofence``), seed 002 field names:

* the network border's *shape* is ``networks.border`` (GeoJSON, the data engineer's
  column: the alerts engine and the rider API read it too); its *settings* and the
  zones' version live in ``geofence_settings`` (one row per network): ``trigger_alert``,
  ``notify_user``, ``reduce_vehicle_speed``, ``play_vehicle_sound``, ``lock_vehicle``,
  plus ours: ``outside_return_policy`` (refuse / alert) and ``default_max_speed``.
* ``speed_zones`` (``max_speed`` 6..25), ``virtual_parkings`` (``capacity``, optional
  ``cluster_id``), ``forbidden_zones`` (``name``): ``shape`` stored as a GeoJSON geometry.
  Deleting sets ``deleted_at`` (seed 002: "Add a deletion date to the speed zone"); the
  same for the other kinds, so a trip's ``virtual_parking_id`` always resolves.

Every change validates through :mod:`kickstand.cloud.geofence` (typed
:class:`~kickstand.cloud.geofence.GeofenceError` on bad input) and bumps
``geofence_settings.version`` in the caller's transaction; :class:`GeofenceCache` rebuilds a
network's index when that version (or the border) changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from kickstand.cloud import outbox
from kickstand.cloud.events import EventType
from kickstand.cloud.events import catalogue as ev
from kickstand.cloud.events.payloads import ZoneEvent
from kickstand.cloud.geofence.errors import GeofenceError, ZoneAttributeError
from kickstand.cloud.geofence.geojson import parse_zone_shape, to_geojson
from kickstand.cloud.geofence.index import GeofenceIndex
from kickstand.cloud.geofence.model import (
    ForbiddenZone,
    NetworkBorder,
    NetworkZones,
    OutsideReturnPolicy,
    SpeedZone,
    VirtualParking,
    ZoneType,
    check_within_border,
)
from kickstand.cloud.models import Base, Cluster, Network, utcnow

log = logging.getLogger("kickstand.cloud.geofence.store")

BORDER_SETTINGS = (
    "trigger_alert",
    "notify_user",
    "reduce_vehicle_speed",
    "play_vehicle_sound",
    "lock_vehicle",
)


# ── tables ────────────────────────────────────────────────────────────────────────────


class GeofenceSettings(Base):
    """Border settings and the zones' version of one network."""

    __tablename__ = "geofence_settings"

    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), primary_key=True)
    #: Bumped by every zone / border change (same transaction): caches compare it.
    version: Mapped[int] = mapped_column(Integer, default=1)
    trigger_alert: Mapped[bool] = mapped_column(Boolean, default=True)
    notify_user: Mapped[bool] = mapped_column(Boolean, default=True)
    reduce_vehicle_speed: Mapped[bool] = mapped_column(Boolean, default=False)
    play_vehicle_sound: Mapped[bool] = mapped_column(Boolean, default=False)
    lock_vehicle: Mapped[bool] = mapped_column(Boolean, default=False)
    outside_return_policy: Mapped[str] = mapped_column(
        String(16), default=OutsideReturnPolicy.REFUSE.value
    )
    #: Speed (km/h) sent to a vehicle leaving its last speed zone; None: the vehicle's own.
    default_max_speed: Mapped[int | None] = mapped_column(Integer, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SpeedZoneRow(Base):
    __tablename__ = "speed_zones"

    id: Mapped[int] = mapped_column(primary_key=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    shape: Mapped[dict[str, Any]] = mapped_column(JSON)
    max_speed: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class VirtualParkingRow(Base):
    __tablename__ = "virtual_parkings"

    id: Mapped[int] = mapped_column(primary_key=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    cluster_id: Mapped[int | None] = mapped_column(ForeignKey("clusters.id"), default=None)
    shape: Mapped[dict[str, Any]] = mapped_column(JSON)
    capacity: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class ForbiddenZoneRow(Base):
    __tablename__ = "forbidden_zones"

    id: Mapped[int] = mapped_column(primary_key=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    shape: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


ZoneRow = SpeedZoneRow | VirtualParkingRow | ForbiddenZoneRow

ROW_OF_KIND: dict[ZoneType, type[SpeedZoneRow] | type[VirtualParkingRow] | type[ForbiddenZoneRow]]
ROW_OF_KIND = {
    ZoneType.SPEED_ZONE: SpeedZoneRow,
    ZoneType.VIRTUAL_PARKING: VirtualParkingRow,
    ZoneType.FORBIDDEN_ZONE: ForbiddenZoneRow,
}


class ZoneNotFoundError(LookupError):
    """No live zone of that kind and id (or no such network)."""

    def __init__(self, kind: str, key: object) -> None:
        super().__init__(f"{kind} {key!r} not found")
        self.kind = kind
        self.key = key


# ── rows ↔ model ──────────────────────────────────────────────────────────────────────


def speed_zone_of(row: SpeedZoneRow) -> SpeedZone:
    return SpeedZone(row.id, row.network_id, row.shape, row.max_speed)


def virtual_parking_of(row: VirtualParkingRow) -> VirtualParking:
    return VirtualParking(
        row.id,
        row.network_id,
        row.shape,
        capacity=row.capacity,
        cluster_id=row.cluster_id,
    )


def forbidden_zone_of(row: ForbiddenZoneRow) -> ForbiddenZone:
    return ForbiddenZone(row.id, row.network_id, row.shape, name=row.name)


def border_of(network: Network, settings: GeofenceSettings | None) -> NetworkBorder | None:
    if not network.border:
        return None
    flags: dict[str, Any] = {}
    if settings is not None:
        flags = {name: getattr(settings, name) for name in BORDER_SETTINGS}
        flags["outside_return_policy"] = settings.outside_return_policy
    return NetworkBorder(network.id, network.border, **flags)


async def _network(session: AsyncSession, network_id: int) -> Network:
    network = await session.get(Network, network_id)
    if network is None:
        raise ZoneNotFoundError("network", network_id)
    return network


async def settings_row(session: AsyncSession, network_id: int) -> GeofenceSettings:
    """The network's settings row, created (version 1) when missing."""
    row = await session.get(GeofenceSettings, network_id)
    if row is not None:
        return row
    await _network(session, network_id)
    try:
        async with session.begin_nested():
            row = GeofenceSettings(network_id=network_id, version=1)
            session.add(row)
            await session.flush()
    except IntegrityError:  # created by a concurrent request
        row = await session.get_one(GeofenceSettings, network_id, populate_existing=True)
    return row


async def bump_version(session: AsyncSession, network_id: int) -> int:
    """Mark the network's zones changed (atomic increment, in the caller's transaction)."""
    await settings_row(session, network_id)
    await session.execute(
        update(GeofenceSettings)
        .where(GeofenceSettings.network_id == network_id)
        .values(version=GeofenceSettings.version + 1, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    version: int = (
        await session.execute(
            select(GeofenceSettings.version).where(GeofenceSettings.network_id == network_id)
        )
    ).scalar_one()
    return version


def _live(model: type[Any], network_id: int) -> Any:
    return (
        select(model)
        .where(model.network_id == network_id, model.deleted_at.is_(None))
        .order_by(model.id)
    )


async def list_speed_zones(session: AsyncSession, network_id: int) -> list[SpeedZoneRow]:
    return list((await session.scalars(_live(SpeedZoneRow, network_id))).all())


async def list_virtual_parkings(session: AsyncSession, network_id: int) -> list[VirtualParkingRow]:
    return list((await session.scalars(_live(VirtualParkingRow, network_id))).all())


async def list_forbidden_zones(session: AsyncSession, network_id: int) -> list[ForbiddenZoneRow]:
    return list((await session.scalars(_live(ForbiddenZoneRow, network_id))).all())


async def get_zone(session: AsyncSession, kind: ZoneType, zone_id: int) -> ZoneRow:
    row: ZoneRow | None = await session.get(ROW_OF_KIND[kind], zone_id)
    if row is None or row.deleted_at is not None:
        raise ZoneNotFoundError(kind.value, zone_id)
    return row


async def load_zones(session: AsyncSession, network_id: int) -> NetworkZones:
    """The network's live zones as a validated :class:`NetworkZones`.

    A stored zone that no longer validates (e.g. the border moved under it through
    another path) is skipped and logged rather than taking the whole network down.
    """
    network = await _network(session, network_id)
    settings = await session.get(GeofenceSettings, network_id)
    border: NetworkBorder | None
    try:
        border = border_of(network, settings)
    except GeofenceError as exc:
        log.error("event=geofence_border_unusable network_id=%s error=%s", network_id, exc)
        border = None

    def keep(convert: Callable[[Any], Any], rows: Sequence[Any]) -> list[Any]:
        out = []
        for row in rows:
            try:
                zone = convert(row)
                if border is not None:
                    check_within_border(border.shape, zone.shape)
            except GeofenceError as exc:
                log.error(
                    "event=geofence_zone_skipped network_id=%s table=%s id=%s error=%s",
                    network_id,
                    row.__tablename__,
                    row.id,
                    exc,
                )
                continue
            out.append(zone)
        return out

    return NetworkZones(
        network_id=network_id,
        border=border,
        speed_zones=tuple(keep(speed_zone_of, await list_speed_zones(session, network_id))),
        virtual_parkings=tuple(
            keep(virtual_parking_of, await list_virtual_parkings(session, network_id))
        ),
        forbidden_zones=tuple(
            keep(forbidden_zone_of, await list_forbidden_zones(session, network_id))
        ),
        default_max_speed=settings.default_max_speed if settings is not None else None,
        version=settings.version if settings is not None else 0,
    )


ZONE_CREATED = ev.ZONE_CREATED
ZONE_UPDATED = ev.ZONE_UPDATED
ZONE_DELETED = ev.ZONE_DELETED


def zone_payload(row: ZoneRow) -> dict[str, Any]:
    """A zone as the API and the webhooks show it (seed field names, GeoJSON ``shape``)."""
    base: dict[str, Any] = {"network_id": row.network_id, "shape": row.shape}
    if isinstance(row, SpeedZoneRow):
        kind = ZoneType.SPEED_ZONE
        base |= {"speed_zone_id": row.id, "max_speed": row.max_speed}
    elif isinstance(row, VirtualParkingRow):
        kind = ZoneType.VIRTUAL_PARKING
        base |= {
            "virtual_parking_id": row.id,
            "cluster_id": row.cluster_id,
            "capacity": row.capacity,
        }
    else:
        kind = ZoneType.FORBIDDEN_ZONE
        base |= {"forbidden_zone_id": row.id, "name": row.name}
    return {
        "zone_type": kind.value,
        **base,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "deleted_at": row.deleted_at,
    }


def _emit(session: AsyncSession, event: EventType[ZoneEvent], row: ZoneRow) -> None:
    payload = ZoneEvent.model_validate(zone_payload(row))
    outbox.emit(session, event, f"{row.__tablename__}:{row.id}", payload)


# ── changes (validated; the caller commits) ───────────────────────────────────────────


def _canonical(shape: object, kind: ZoneType, zone_id: int | None) -> dict[str, Any]:
    return to_geojson(parse_zone_shape(shape, zone_kind=kind.value, zone_id=zone_id))


def _prevalidate(kind: ZoneType, build: Callable[[], object]) -> None:
    """Validate a new zone's fields before its row exists (errors carry no zone id)."""
    try:
        build()
    except GeofenceError as exc:
        exc.zone_id = None
        exc.args = (f"{exc.message} ({kind.value})",)
        raise


async def _check_in_border(
    session: AsyncSession, network_id: int, shape: dict[str, Any], kind: ZoneType, zone_id: int
) -> None:
    network = await _network(session, network_id)
    if network.border:
        border = parse_zone_shape(network.border, zone_kind=ZoneType.BORDER.value)
        check_within_border(
            border,
            parse_zone_shape(shape, zone_kind=kind.value, zone_id=zone_id),
            zone_kind=kind.value,
            zone_id=zone_id,
        )


async def _save_created(
    session: AsyncSession, row: ZoneRow, kind: ZoneType, validate: Callable[[Any], object]
) -> None:
    """Store a new zone: its field limits (with the real id in errors), inside the border,
    a new zones version for the caches, and its outbox record in the same transaction."""
    session.add(row)
    await session.flush()
    validate(row)
    await _check_in_border(session, row.network_id, row.shape, kind, row.id)
    await bump_version(session, row.network_id)
    _emit(session, ZONE_CREATED, row)


async def _save_updated(
    session: AsyncSession, row: ZoneRow, kind: ZoneType, validate: Callable[[Any], object]
) -> None:
    """The same checks for an edited zone, then its new version and outbox record."""
    validate(row)
    await _check_in_border(session, row.network_id, row.shape, kind, row.id)
    row.updated_at = utcnow()
    await session.flush()
    await bump_version(session, row.network_id)
    _emit(session, ZONE_UPDATED, row)


async def create_speed_zone(
    session: AsyncSession, network_id: int, shape: object, max_speed: int
) -> SpeedZoneRow:
    await _network(session, network_id)
    geo = _canonical(shape, ZoneType.SPEED_ZONE, None)
    _prevalidate(
        ZoneType.SPEED_ZONE,
        lambda: SpeedZone(1, network_id, geo, max_speed),
    )
    row = SpeedZoneRow(network_id=network_id, shape=geo, max_speed=max_speed)
    await _save_created(session, row, ZoneType.SPEED_ZONE, speed_zone_of)
    return row


async def update_speed_zone(
    session: AsyncSession, zone_id: int, *, shape: object = None, max_speed: int | None = None
) -> SpeedZoneRow:
    row = await get_zone(session, ZoneType.SPEED_ZONE, zone_id)
    assert isinstance(row, SpeedZoneRow)
    if shape is not None:
        row.shape = _canonical(shape, ZoneType.SPEED_ZONE, zone_id)
    if max_speed is not None:
        row.max_speed = max_speed
    await _save_updated(session, row, ZoneType.SPEED_ZONE, speed_zone_of)
    return row


async def create_virtual_parking(
    session: AsyncSession,
    network_id: int,
    shape: object,
    capacity: int,
    cluster_id: int | None = None,
) -> VirtualParkingRow:
    await _network(session, network_id)
    if cluster_id is not None:
        cluster = await session.get(Cluster, cluster_id)
        if cluster is None or cluster.network_id != network_id:
            raise ZoneAttributeError(
                "cluster_id",
                cluster_id,
                "no such cluster in this network",
                zone_kind=ZoneType.VIRTUAL_PARKING.value,
            )
    geo = _canonical(shape, ZoneType.VIRTUAL_PARKING, None)
    _prevalidate(
        ZoneType.VIRTUAL_PARKING,
        lambda: VirtualParking(1, network_id, geo, capacity=capacity),
    )
    row = VirtualParkingRow(
        network_id=network_id, shape=geo, capacity=capacity, cluster_id=cluster_id
    )
    await _save_created(session, row, ZoneType.VIRTUAL_PARKING, virtual_parking_of)
    return row


async def update_virtual_parking(
    session: AsyncSession, zone_id: int, *, shape: object = None, capacity: int | None = None
) -> VirtualParkingRow:
    row = await get_zone(session, ZoneType.VIRTUAL_PARKING, zone_id)
    assert isinstance(row, VirtualParkingRow)
    if shape is not None:
        row.shape = _canonical(shape, ZoneType.VIRTUAL_PARKING, zone_id)
    if capacity is not None:
        row.capacity = capacity
    await _save_updated(session, row, ZoneType.VIRTUAL_PARKING, virtual_parking_of)
    return row


async def create_forbidden_zone(
    session: AsyncSession, network_id: int, shape: object, name: str = ""
) -> ForbiddenZoneRow:
    await _network(session, network_id)
    geo = _canonical(shape, ZoneType.FORBIDDEN_ZONE, None)
    _prevalidate(
        ZoneType.FORBIDDEN_ZONE,
        lambda: ForbiddenZone(1, network_id, geo, name=name),
    )
    row = ForbiddenZoneRow(network_id=network_id, shape=geo, name=name)
    await _save_created(session, row, ZoneType.FORBIDDEN_ZONE, forbidden_zone_of)
    return row


async def update_forbidden_zone(
    session: AsyncSession, zone_id: int, *, shape: object = None, name: str | None = None
) -> ForbiddenZoneRow:
    row = await get_zone(session, ZoneType.FORBIDDEN_ZONE, zone_id)
    assert isinstance(row, ForbiddenZoneRow)
    if shape is not None:
        row.shape = _canonical(shape, ZoneType.FORBIDDEN_ZONE, zone_id)
    if name is not None:
        row.name = name
    await _save_updated(session, row, ZoneType.FORBIDDEN_ZONE, forbidden_zone_of)
    return row


async def delete_zone(session: AsyncSession, kind: ZoneType, zone_id: int) -> ZoneRow:
    row = await get_zone(session, kind, zone_id)
    row.deleted_at = utcnow()
    row.updated_at = row.deleted_at
    await session.flush()
    await bump_version(session, row.network_id)
    _emit(session, ZONE_DELETED, row)
    return row


async def set_border_shape(session: AsyncSession, network_id: int, shape: object) -> Network:
    """Replace the border; refused (typed error) when a live zone would lie outside it."""
    network = await _network(session, network_id)
    border = parse_zone_shape(shape, zone_kind=ZoneType.BORDER.value)
    for kind, rows in (
        (ZoneType.SPEED_ZONE, await list_speed_zones(session, network_id)),
        (ZoneType.VIRTUAL_PARKING, await list_virtual_parkings(session, network_id)),
        (ZoneType.FORBIDDEN_ZONE, await list_forbidden_zones(session, network_id)),
    ):
        for row in rows:
            check_within_border(
                border,
                parse_zone_shape(row.shape, zone_kind=kind.value, zone_id=row.id),
                zone_kind=kind.value,
                zone_id=row.id,
            )
    network.border = to_geojson(border)
    await session.flush()
    await bump_version(session, network_id)
    return network


async def set_border_settings(
    session: AsyncSession, network_id: int, **values: Any
) -> GeofenceSettings:
    """Border settings (seed 002 names), ``outside_return_policy``, ``default_max_speed``."""
    row = await settings_row(session, network_id)
    for name, value in values.items():
        if value is None and name != "default_max_speed":
            continue
        if name in BORDER_SETTINGS:
            if not isinstance(value, bool):
                raise ZoneAttributeError(name, value, "must be a boolean", zone_kind="border")
            setattr(row, name, value)
        elif name == "outside_return_policy":
            try:
                row.outside_return_policy = OutsideReturnPolicy(value).value
            except ValueError:
                raise ZoneAttributeError(
                    name, value, "must be 'refuse' or 'alert'", zone_kind="border"
                ) from None
        elif name == "default_max_speed":
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 6
            ):
                raise ZoneAttributeError(name, value, "must be null or an integer >= 6")
            row.default_max_speed = value
        else:
            raise ZoneAttributeError(name, value, "unknown border setting", zone_kind="border")
    await session.flush()
    await bump_version(session, network_id)
    await session.refresh(row)
    return row


# ── the cache ─────────────────────────────────────────────────────────────────────────


def _fingerprint(version: int, border: object) -> str:
    blob = json.dumps(border, sort_keys=True, separators=(",", ":")).encode()
    return f"{version}:{hashlib.sha1(blob, usedforsecurity=False).hexdigest()}"


@dataclass
class _Entry:
    fingerprint: str
    index: GeofenceIndex
    checked_at: float


class GeofenceCache:
    """The :class:`GeofenceIndex` of each network, rebuilt when its zones change.

    ``await cache.index(session, network_id)`` compares the stored version (and border) at
    most every ``recheck_s`` seconds per network (one small query), rebuilding the index
    only when they moved. ``recheck_s=0`` checks on every call (tests, the operator API).
    Shared by the coroutines of one process; not thread-safe.
    """

    def __init__(
        self, *, recheck_s: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.recheck_s = recheck_s
        self._clock = clock
        self._entries: dict[int, _Entry] = {}
        self.builds = 0
        self.checks = 0

    def invalidate(self, network_id: int | None = None) -> None:
        if network_id is None:
            self._entries.clear()
        else:
            self._entries.pop(network_id, None)

    async def index(self, session: AsyncSession, network_id: int) -> GeofenceIndex:
        now = self._clock()
        entry = self._entries.get(network_id)
        if entry is not None and now - entry.checked_at < self.recheck_s:
            return entry.index
        self.checks += 1
        row = (
            await session.execute(
                select(Network.border, GeofenceSettings.version)
                .outerjoin(GeofenceSettings, GeofenceSettings.network_id == Network.id)
                .where(Network.id == network_id)
            )
        ).first()
        if row is None:
            raise ZoneNotFoundError("network", network_id)
        fingerprint = _fingerprint(row[1] or 0, row[0])
        if entry is not None and entry.fingerprint == fingerprint:
            entry.checked_at = now
            return entry.index
        zones = await load_zones(session, network_id)
        index = GeofenceIndex(zones)
        self.builds += 1
        self._entries[network_id] = _Entry(fingerprint, index, now)
        log.info(
            "event=geofence_index_built network_id=%s version=%s zones=%s",
            network_id,
            zones.version,
            len(index),
        )
        return index


# ── demo zones (Lyon) ─────────────────────────────────────────────────────────────────


def _box(lon0: float, lat0: float, lon1: float, lat1: float) -> dict[str, Any]:
    ring = [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]
    return {"type": "Polygon", "coordinates": [ring]}


#: Presqu'île pedestrian area (Rue de la République): 10 km/h.
LYON_SPEED_ZONES = [(_box(4.8330, 45.7580, 4.8380, 45.7680), 10)]
#: Around the free-floating scooters of the seed and the clusters.
LYON_PARKINGS = [
    (_box(4.8335, 45.7615, 4.8355, 45.7627), 10),  # Hôtel de Ville / LYF001
    (_box(4.8402, 45.7587, 4.8422, 45.7599), 10),  # LYF002
    (_box(4.8491, 45.7642, 4.8511, 45.7654), 8),  # LYF003
    (_box(4.8288, 45.7536, 4.8308, 45.7548), 8),  # LYF004
]
#: Parc de la Tête d'Or.
LYON_FORBIDDEN = [(_box(4.8450, 45.7720, 4.8600, 45.7820), "Parc de la Tête d'Or")]


async def seed_zones(session: AsyncSession, network_id: int) -> int:
    """Demo zones for the Lyon network (idempotent: nothing if the network has zones).

    Returns the number of zones created. The caller commits.
    """
    existing = (
        await session.scalars(
            select(SpeedZoneRow.id).where(SpeedZoneRow.network_id == network_id).limit(1)
        )
    ).first()
    if existing is not None:
        return 0
    created = 0
    for shape, max_speed in LYON_SPEED_ZONES:
        await create_speed_zone(session, network_id, shape, max_speed)
        created += 1
    for shape, capacity in LYON_PARKINGS:
        await create_virtual_parking(session, network_id, shape, capacity)
        created += 1
    for shape, name in LYON_FORBIDDEN:
        await create_forbidden_zone(session, network_id, shape, name)
        created += 1
    return created
