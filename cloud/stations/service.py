"""The rules of clusters and stations as operators run them (seed 002 Clusters, Stations).

* A cluster is created in a network; "Delete cluster" marks it decommissioned (it leaves
  the map, its history stays) and is refused while a station in it is in service.
* Commissioning a station registers its mainboard: the ``devices`` row (kind STATION),
  the ``stations`` row and its spots numbered 1..N, in one transaction with
  ``station.created``. Ingest accepts the device's next birth (it refused an unknown one).
* Decommissioning is refused while a trip that started at the station runs, or a vehicle
  is docked in it (take them out first); then the station leaves the map, its device is
  marked decommissioned (ingest rejects its births: a rule of ``ingest.apply``) and taken
  offline, with ``station.deleted``.
* Pictures: JPEG, PNG or WebP (told by their first bytes, not the client's word), at most
  :data:`MAX_PICTURE_BYTES`, stored in the database and served back by their key.

Every function takes the operator's scope as ``check`` (``OperatorContext.check``): a
cluster of another network is refused before anything is read or changed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import outbox
from kickstand.cloud.devices import identity
from kickstand.cloud.errors import ConflictError, InvalidInputError, NotFoundError
from kickstand.cloud.events import catalogue as ev
from kickstand.cloud.events import payloads as p
from kickstand.cloud.geofence import store as zones
from kickstand.cloud.geofence.errors import GeofenceError, ZoneAttributeError
from kickstand.cloud.keyset import Keyset
from kickstand.cloud.liveness import presence_of, why_offline
from kickstand.cloud.models import (
    Cluster,
    Device,
    DeviceKind,
    Network,
    Spot,
    SpotState,
    Station,
    utcnow,
)
from kickstand.cloud.stations import repository as repo
from kickstand.cloud.stations import schemas as s
from kickstand.cloud.stations.models import ClusterDescription, ClusterPicture
from kickstand.cloud.stocks.service import vehicles_inside

Check = Callable[[Collection[int]], None]

MAX_PICTURE_BYTES = 5 * 1024 * 1024
#: Outages listed per cluster (newest first).
MAX_OUTAGES = 500
_PICTURE_TYPES: tuple[tuple[bytes, str, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
)


def picture_type(data: bytes) -> tuple[str, str] | None:
    """(content type, extension) of an image we keep, from its first bytes."""
    for magic, content_type, ext in _PICTURE_TYPES:
        if data.startswith(magic):
            return content_type, ext
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "webp"
    return None


# ── clusters ──────────────────────────────────────────────────────────────────────────


async def cluster(session: AsyncSession, cluster_id: int, check: Check) -> Cluster:
    found = await session.get(Cluster, cluster_id)
    if found is None:
        raise NotFoundError("cluster", cluster_id)
    check([found.network_id])
    return found


async def live_cluster(session: AsyncSession, cluster_id: int, check: Check) -> Cluster:
    """A cluster still in service (a decommissioned one cannot be changed)."""
    found = await cluster(session, cluster_id, check)
    if found.decommissioned_at is not None:
        raise ConflictError(
            f"cluster {cluster_id} is decommissioned", reason="cluster-decommissioned"
        )
    return found


async def list_clusters(
    session: AsyncSession,
    keyset: Keyset,
    *,
    networks: Collection[int] | None,
    name: str | None = None,
    badge_reader: bool | None = None,
) -> Sequence[Cluster]:
    """Clusters of ``networks`` (the asked ones, checked against the operator's scope, or
    its scope; None: every network)."""
    return await repo.cluster_page(
        session, keyset, networks=networks, name=name, badge_reader=badge_reader
    )


async def create_cluster(session: AsyncSession, body: s.ClusterCreate, check: Check) -> Cluster:
    check([body.network_id])
    if await session.get(Network, body.network_id) is None:
        raise NotFoundError("network", body.network_id)
    created = Cluster(
        network_id=body.network_id,
        name=body.name,
        latitude=body.latitude,
        longitude=body.longitude,
        location=body.location,
        description=body.description,
        has_badge_reader=body.has_badge_reader,
        max_unlock_distance=body.max_unlock_distance,
        comment=body.comment,
    )
    session.add(created)
    await session.commit()
    return created


async def delete_cluster(session: AsyncSession, cluster_id: int, check: Check) -> None:
    found = await live_cluster(session, cluster_id, check)
    stations = await repo.count_live_stations(session, cluster_id)
    if stations:
        raise ConflictError(
            f"cluster {cluster_id} has {stations} station(s) in service: decommission them first",
            reason="cluster-has-stations",
        )
    found.decommissioned_at = utcnow()
    found.is_accessible = False
    await session.commit()


#: What the seed's "Update cluster location / settings" and "Set commissioning date" change.
ClusterField = Literal["location", "max_unlock_distance", "comment", "commissioning_date"]


async def update_cluster(
    session: AsyncSession, cluster_id: int, values: Mapping[str, Any], check: Check
) -> None:
    """``values``: an update body's fields, each one of :data:`ClusterField`."""
    unknown = set(values) - set(get_args(ClusterField))
    if unknown:  # a schema/field mismatch of ours, not the operator's input
        raise ValueError(f"not a cluster field: {sorted(unknown)}")
    found = await live_cluster(session, cluster_id, check)
    for field, value in values.items():
        setattr(found, field, value)
    await session.commit()


async def update_description(
    session: AsyncSession, cluster_id: int, body: s.ClusterDescriptionUpdate, check: Check
) -> None:
    """One description per language; the last one written is also the rider's default."""
    found = await live_cluster(session, cluster_id, check)
    row = await session.scalar(
        select(ClusterDescription).where(
            ClusterDescription.cluster_id == cluster_id, ClusterDescription.lang == body.lang
        )
    )
    if body.description is None:
        if row is not None:
            await session.delete(row)
    elif row is None:
        session.add(
            ClusterDescription(cluster_id=cluster_id, lang=body.lang, description=body.description)
        )
    else:
        row.description = body.description
    found.description = body.description
    await session.commit()


async def description_in(session: AsyncSession, found: Cluster, lang: str | None) -> str | None:
    """The cluster's description in ``lang``, else its default."""
    return (await descriptions_in(session, [found], lang))[0]


async def descriptions_in(
    session: AsyncSession, clusters: Sequence[Cluster], lang: str | None
) -> list[str | None]:
    """Each cluster's description in ``lang``, else its default, in the clusters' order;
    one statement for a whole page (none without ``lang``)."""
    localized: dict[int, str] = {}
    if lang is not None and clusters:
        rows = await session.execute(
            select(ClusterDescription.cluster_id, ClusterDescription.description).where(
                ClusterDescription.cluster_id.in_([c.id for c in clusters]),
                ClusterDescription.lang == lang,
            )
        )
        localized = {cluster_id: text for cluster_id, text in rows.all()}
    return [localized.get(c.id, c.description) for c in clusters]


# ── stations of a cluster ─────────────────────────────────────────────────────────────


async def _offline_reasons(
    session: AsyncSession, stations: Sequence[Station]
) -> dict[str, str | None]:
    """Why each station's mainboard is offline now (None: online), by device id."""
    presence = await repo.presence(session, [st.device_id for st in stations])
    now = datetime.now(UTC)
    return {
        st.device_id: why_offline(
            presence_of(presence[st.device_id]) if st.device_id in presence else None, now
        )
        for st in stations
    }


async def stations_of(
    session: AsyncSession, stations: Sequence[Station], network_id: int
) -> list[s.StationAdmin]:
    """Stations with their spots, docked vehicles and liveness."""
    spots = await repo.station_spots(session, [st.id for st in stations])
    offline = await _offline_reasons(session, stations)
    by_station: dict[int, list[s.SpotAdmin]] = {st.id: [] for st in stations}
    for spot, vehicle in spots:
        by_station[spot.station_id].append(
            s.SpotAdmin(
                spot_id=spot.id,
                displayed_number=spot.displayed_number,
                lock_status=spot.lock_status,
                state=spot.state.value,
                in_maintenance=spot.state == SpotState.MAINTENANCE,
                maintenance_source=spot.maintenance_source,
                vehicle_id=vehicle.id if vehicle else None,
                serial_number=vehicle.serial_number if vehicle else None,
            )
        )
    answer = []
    for st in stations:
        reason = offline[st.device_id]
        answer.append(
            s.StationAdmin(
                station_id=st.id,
                cluster_id=st.cluster_id,
                network_id=network_id,
                device_id=st.device_id,
                name=st.name,
                online=reason is None,
                offline_reason=reason,
                commissioned_at=st.commissioned_at,
                decommissioned_at=st.decommissioned_at,
                spots=by_station[st.id],
            )
        )
    return answer


async def cluster_stations(
    session: AsyncSession, cluster_id: int, check: Check
) -> list[s.StationAdmin]:
    found = await cluster(session, cluster_id, check)
    stations = await repo.live_stations(session, cluster_id)
    return await stations_of(session, stations, found.network_id)


async def outages(session: AsyncSession, cluster_id: int, check: Check) -> list[s.OutagePublic]:
    await cluster(session, cluster_id, check)
    now = datetime.now(UTC)
    return [
        s.OutagePublic(
            outage_id=o.id,
            station_id=st.id,
            device_id=o.device_id,
            start_date=o.started_at,
            end_date=o.ended_at,
            duration=max(0, int(((o.ended_at or now) - o.started_at).total_seconds())),
        )
        for o, st in await repo.cluster_outages(session, cluster_id, MAX_OUTAGES)
    ]


async def maintenances(
    session: AsyncSession, cluster_id: int, check: Check
) -> list[s.MaintenanceSpot]:
    """The cluster's spots out of service now (in maintenance or out of order)."""
    await cluster(session, cluster_id, check)
    return [_maintenance(spot) for spot, _ in await repo.spots_in_maintenance(session, cluster_id)]


def _maintenance(spot: Spot) -> s.MaintenanceSpot:
    return s.MaintenanceSpot(
        spot_id=spot.id,
        station_id=spot.station_id,
        displayed_number=spot.displayed_number,
        state=spot.state.value,
        maintenance_source=spot.maintenance_source,
    )


async def out_of_order(
    session: AsyncSession, cluster_id: int, lang: str | None, check: Check
) -> s.OutOfOrderDetails:
    found = await cluster(session, cluster_id, check)
    stations = await repo.live_stations(session, cluster_id)
    offline = await _offline_reasons(session, stations)
    since = await repo.open_outages(session, [st.device_id for st in stations])
    details = []
    for st in stations:
        reason = offline[st.device_id]
        details.append(
            s.OutOfOrderStation(
                station_id=st.id,
                device_id=st.device_id,
                online=reason is None,
                offline_reason=reason,
                offline_since=since.get(st.device_id),
            )
        )
    spots = [
        _maintenance(spot)
        for spot, _ in await repo.spots_in_maintenance(session, cluster_id)
        if spot.state == SpotState.OUT_OF_ORDER
    ]
    return s.OutOfOrderDetails(
        cluster_id=found.id,
        # As the map says it (kickstand.cloud.api.views.clusters_public): no station online.
        cluster_is_down=not any(d.online for d in details),
        description=await description_in(session, found, lang),
        stations=details,
        out_of_order_spots=spots,
    )


# ── parkings (the geofence store's virtual parkings attached to the cluster) ───────────


def _invalid(exc: GeofenceError) -> InvalidInputError:
    field = exc.field if isinstance(exc, ZoneAttributeError) else "shape"
    return InvalidInputError(f"invalid {field}: {exc}", field=field)


async def parkings(session: AsyncSession, cluster_id: int, check: Check) -> list[s.ParkingPublic]:
    found = await cluster(session, cluster_id, check)
    rows = [
        r
        for r in await zones.list_virtual_parkings(session, found.network_id)
        if r.cluster_id == cluster_id
    ]
    inside = await _vehicles_in([r.shape for r in rows], found.network_id, session)
    return [
        s.ParkingPublic(
            virtual_parking_id=r.id,
            network_id=r.network_id,
            cluster_id=r.cluster_id,
            capacity=r.capacity,
            shape=r.shape,
            vehicle_ids=ids,
        )
        for r, ids in zip(rows, inside, strict=True)
    ]


async def create_parking(
    session: AsyncSession, cluster_id: int, body: s.ParkingCreate, check: Check
) -> s.ParkingPublic:
    found = await live_cluster(session, cluster_id, check)
    try:
        row = await zones.create_virtual_parking(
            session, found.network_id, body.shape, body.capacity, cluster_id=cluster_id
        )
    except GeofenceError as exc:
        raise _invalid(exc) from exc
    await session.commit()
    (ids,) = await _vehicles_in([row.shape], found.network_id, session)
    return s.ParkingPublic(
        virtual_parking_id=row.id,
        network_id=row.network_id,
        cluster_id=row.cluster_id,
        capacity=row.capacity,
        shape=row.shape,
        vehicle_ids=ids,
    )


async def _vehicles_in(
    shapes: Sequence[dict[str, Any]], network_id: int, session: AsyncSession
) -> list[list[int]]:
    """For each shape, the network's free-floating vehicles last seen inside it."""
    return await vehicles_inside(session, shapes, [network_id])


# ── pictures ──────────────────────────────────────────────────────────────────────────


async def add_picture(
    session: AsyncSession, cluster_id: int, data: bytes, check: Check
) -> ClusterPicture:
    await live_cluster(session, cluster_id, check)
    if not data:
        raise InvalidInputError("the picture is empty", field="cluster_picture")
    if len(data) > MAX_PICTURE_BYTES:
        raise InvalidInputError(
            f"the picture is larger than {MAX_PICTURE_BYTES} bytes", field="cluster_picture"
        )
    kind = picture_type(data)
    if kind is None:
        raise InvalidInputError(
            "the picture must be a JPEG, PNG or WebP image", field="cluster_picture"
        )
    content_type, ext = kind
    picture = ClusterPicture(
        cluster_id=cluster_id,
        key=f"clusterpictures/{uuid.uuid4()}.{ext}",
        content_type=content_type,
        size=len(data),
        data=data,
    )
    session.add(picture)
    await session.commit()
    return picture


async def pictures(session: AsyncSession, cluster_id: int, check: Check) -> list[ClusterPicture]:
    await cluster(session, cluster_id, check)
    return list(await repo.pictures(session, cluster_id))


async def picture(
    session: AsyncSession, cluster_id: int, picture_id: int, check: Check
) -> ClusterPicture:
    await cluster(session, cluster_id, check)
    found = await session.get(ClusterPicture, picture_id)
    if found is None or found.cluster_id != cluster_id:
        raise NotFoundError("picture", picture_id)
    return found


async def delete_picture(session: AsyncSession, cluster_id: int, key: str, check: Check) -> None:
    await cluster(session, cluster_id, check)
    found = await repo.picture_by_key(session, cluster_id, key)
    if found is None:
        raise NotFoundError("picture", key)
    await session.delete(found)
    await session.commit()


# ── commissioning ─────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class StationView:
    station: Station
    network_id: int


def _record(station: Station, network_id: int, spot_count: int) -> p.StationRecord:
    return p.StationRecord(
        station_id=station.id,
        device_id=station.device_id,
        cluster_id=station.cluster_id,
        name=station.name,
        spot_count=spot_count,
        network_id=network_id,
        commissioned_at=station.commissioned_at,
        decommissioned_at=station.decommissioned_at,
    )


async def commission(session: AsyncSession, body: s.StationCreate, check: Check) -> StationView:
    """Register the mainboard, the station and its spots 1..N (one transaction)."""
    found = await live_cluster(session, body.cluster_id, check)
    taken = await session.scalar(select(Device).where(Device.device_id == body.device_id))
    # A mainboard provisioned at the bench (issue 17: its certificate signed, attached to
    # nothing) is adopted; any other registered device is a conflict.
    if taken is not None and not await _provisioned_mainboard(session, taken):
        raise ConflictError(
            f"device {body.device_id} is already registered", reason="device-registered"
        )
    now = utcnow()
    if taken is None:
        session.add(Device(device_id=body.device_id, kind=DeviceKind.STATION))
    station = Station(
        cluster_id=found.id, device_id=body.device_id, name=body.name, commissioned_at=now
    )
    session.add(station)
    await session.flush()
    session.add_all(
        Spot(station_id=station.id, displayed_number=n) for n in range(1, body.spots + 1)
    )
    outbox.emit(
        session, ev.STATION_CREATED, station.id, _record(station, found.network_id, body.spots)
    )
    await session.commit()
    return StationView(station, found.network_id)


async def _provisioned_mainboard(session: AsyncSession, device: Device) -> bool:
    """A station device of no station (ever), not decommissioned: provisioned, not
    commissioned."""
    if device.kind != DeviceKind.STATION or identity.is_decommissioned(device):
        return False
    held = await session.scalar(select(Station.id).where(Station.device_id == device.device_id))
    return held is None


async def station(session: AsyncSession, station_id: int, check: Check) -> StationView:
    found = await session.get(Station, station_id)
    if found is None:
        raise NotFoundError("station", station_id)
    owner = await session.get_one(Cluster, found.cluster_id)
    check([owner.network_id])
    return StationView(found, owner.network_id)


async def decommission(session: AsyncSession, station_id: int, check: Check) -> StationView:
    view = await station(session, station_id, check)
    found = view.station
    if found.decommissioned_at is not None:
        raise ConflictError(
            f"station {station_id} is already decommissioned", reason="station-decommissioned"
        )
    trips = await repo.open_trips_from(session, station_id)
    if trips:
        raise ConflictError(
            f"{trips} trip(s) that started at station {station_id} are still open",
            reason="trip-open",
        )
    docked = await repo.docked_vehicles(session, station_id)
    if docked:
        raise ConflictError(
            f"{docked} vehicle(s) are docked in station {station_id}: take them out first",
            reason="vehicles-docked",
        )
    now = utcnow()
    found.decommissioned_at = now
    device = await session.scalar(select(Device).where(Device.device_id == found.device_id))
    if device is not None:
        # Ingest's rule (DeviceInfo.decommissioned): its messages and births are refused.
        device.credentials = {**(device.credentials or {}), "decommissioned": True}
        device.online = False
        # Its certificates too (issue 17); the route publishes the CRL after the commit.
        await identity.revoke_device(session, device.id, identity.DECOMMISSIONED, now)
    spot_count = len(await repo.station_spots(session, [station_id]))
    outbox.emit(
        session, ev.STATION_DELETED, station_id, _record(found, view.network_id, spot_count)
    )
    await session.commit()
    return view


__all__ = [
    "MAX_PICTURE_BYTES",
    "StationView",
    "add_picture",
    "cluster",
    "cluster_stations",
    "commission",
    "create_cluster",
    "create_parking",
    "decommission",
    "delete_cluster",
    "delete_picture",
    "description_in",
    "descriptions_in",
    "list_clusters",
    "maintenances",
    "out_of_order",
    "outages",
    "parkings",
    "picture",
    "picture_type",
    "pictures",
    "station",
    "stations_of",
    "update_cluster",
    "update_description",
]
