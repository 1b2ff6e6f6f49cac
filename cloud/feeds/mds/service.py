"""MDS 2.0 provider API documents of one network, and its agency tokens.

Times are integer milliseconds since the epoch (MDS "Timestamps"); ids are UUIDs
(:mod:`kickstand.cloud.feeds.ids`); states and event types come from
:mod:`kickstand.cloud.feeds.mds.mapping`. Events are derived at read time from what the
cloud already records (trips, maintenances, decommissions, device outages): nothing is
written twice. docs/feeds.md lists what is published and what is not (yet).
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.billing import minor_unit
from kickstand.cloud.errors import InvalidInputError, NotFoundError
from kickstand.cloud.feeds import repository as feeds
from kickstand.cloud.feeds.ids import mds_id, mds_uuid
from kickstand.cloud.feeds.mds import mapping
from kickstand.cloud.feeds.mds import repository as mds_repository
from kickstand.cloud.feeds.mds.models import MdsAgencyToken
from kickstand.cloud.feeds.state import station_states
from kickstand.cloud.keyset import Keyset
from kickstand.cloud.models import Network, Trip, TripStatus, Vehicle, VehicleType
from kickstand.cloud.networks.repository import out_of_order_now
from kickstand.cloud.telemetry import PositionSample, TelemetryStore

#: The release checked field by field (openmobilityfoundation/mobility-data-specification
#: tag 2.0.2); the media type carries major.minor only.
VERSION = "2.0.2"
MEDIA_VERSION = "2.0"
MEDIA_TYPE = "application/vnd.mds+json"
CONTENT_TYPE = f"{MEDIA_TYPE};version={MEDIA_VERSION}"
#: Near-realtime endpoints: how long (ms) until the data is refreshed (MDS: <= 5 min old).
TTL_MS = 15_000
#: ``/events/recent`` serves at most two weeks back.
RECENT_WINDOW = timedelta(days=14)
TOKEN_PREFIX = "mds_"


def accepts(accept: str | None) -> bool:
    """MDS versioning: the ``Accept`` header names ``application/vnd.mds+json`` with
    ``version=2.0``. Without it MDS means version 0.2, which we do not serve (406)."""
    if not accept:
        return False
    for media_range in accept.split(","):
        kind, *params = (p.strip() for p in media_range.split(";"))
        if kind.lower() != MEDIA_TYPE:
            continue
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "version" and value.strip().strip('"') == MEDIA_VERSION:
                return True
    return False


def ms(at: datetime) -> int:
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return int(aware.timestamp() * 1000)


def provider_id(network_id: int) -> str:
    return mds_uuid("provider", network_id)


# ── agency tokens ──────────────────────────────────────────────────────────────────────


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_token(
    session: AsyncSession, network_id: int, name: str, created_by: int | None
) -> tuple[MdsAgencyToken, str]:
    """A new agency token for ``network_id``: the row, and the token (shown once)."""
    if await session.get(Network, network_id) is None:
        raise NotFoundError("network", network_id)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = MdsAgencyToken(
        network_id=network_id,
        name=name,
        token_hash=token_digest(token),
        created_by=created_by,
        created_at=datetime.now(UTC),
    )
    session.add(row)
    await session.commit()
    return row, token


async def list_tokens(
    session: AsyncSession, network_id: int, keyset: Keyset
) -> Sequence[MdsAgencyToken]:
    rows = await mds_repository.tokens(session, network_id, keyset)
    await session.commit()
    return rows


async def revoke_token(session: AsyncSession, network_id: int, token_id: int) -> MdsAgencyToken:
    row = await mds_repository.token(session, network_id, token_id)
    if row is None:
        raise NotFoundError("MDS agency token", token_id)
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
    await session.commit()
    return row


async def authenticate(session: AsyncSession, token: str) -> int | None:
    """The network a valid (unrevoked) token opens, or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    row = await mds_repository.token_by_hash(session, token_digest(token))
    if row is None:
        await session.commit()
        return None
    now = datetime.now(UTC)
    last = row.last_used_at
    # At most one write a minute per token: an agency polling every few seconds costs reads.
    if last is None or now - (last if last.tzinfo else last.replace(tzinfo=UTC)) > timedelta(
        minutes=1
    ):
        await mds_repository.touch_token(session, row.id, now)
    network_id = row.network_id
    await session.commit()
    return network_id


# ── hours ──────────────────────────────────────────────────────────────────────────────


def parse_hour(value: str, field: str) -> datetime:
    """``YYYY-MM-DDTHH`` (UTC) as the hour's start."""
    try:
        if len(value) != 13 or value[10] != "T":
            raise ValueError(value)
        return datetime.strptime(value, "%Y-%m-%dT%H").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInputError(
            f"{field} must be an hour YYYY-MM-DDTHH (UTC), got {value[:40]!r}", field=field
        ) from None


def hour_served(network: Network, start: datetime, now: datetime) -> bool:
    """An hour is served once it is over, and only from the network's creation on (MDS:
    404 for hours not yet past and for hours the provider was not operating)."""
    created = (
        network.created_at if network.created_at.tzinfo else network.created_at.replace(tzinfo=UTC)
    )
    end = start + timedelta(hours=1)
    return end <= now and end > created.replace(minute=0, second=0, microsecond=0)


# ── documents ──────────────────────────────────────────────────────────────────────────


def gps(lat: float, lng: float) -> dict[str, float]:
    return {"lat": round(lat, 6), "lng": round(lng, 6)}


def _battery(vehicle_type: VehicleType, battery: int | None, assist: int | None) -> int | None:
    level = assist if vehicle_type == VehicleType.E_BIKE else battery
    if vehicle_type == VehicleType.BIKE or level is None:
        return None
    return max(0, min(100, level))


def vehicle_doc(network_id: int, v: Vehicle) -> dict[str, Any]:
    return {
        "device_id": mds_id("vehicle", v.id),
        "provider_id": provider_id(network_id),
        "vehicle_id": v.serial_number,
        "vehicle_type": mapping.VEHICLE_TYPE[v.vehicle_type],
        "propulsion_types": list(mapping.PROPULSION[v.vehicle_type]),
    }


async def vehicles(session: AsyncSession, network: Network, keyset: Keyset) -> list[Vehicle]:
    rows = list(await mds_repository.vehicles_page(session, network.id, keyset))
    await session.commit()
    return rows


async def vehicle(session: AsyncSession, network: Network, vehicle_id: int) -> Vehicle:
    found = await session.get(Vehicle, vehicle_id)
    await session.commit()
    if found is None or found.network_id != network.id:
        raise NotFoundError("vehicle", mds_id("vehicle", vehicle_id))
    return found


@dataclass(frozen=True, slots=True)
class Fleet:
    """The network's vehicles and stations as the near-realtime endpoints need them."""

    vehicles: list[feeds.VehicleRow]
    stations: dict[int, feeds.StationRow]
    out_of_order: bool


#: MDS: a vehicle ``removed`` stays in ``/vehicles/status`` 90 minutes, then leaves it.
GONE_SHOWN = timedelta(minutes=90)


async def _fleet(session: AsyncSession, network: Network, now: datetime) -> Fleet:
    rows = await feeds.vehicles(session, network.id, with_gone=True)
    recent = {
        d.vehicle_id
        for d in await mds_repository.decommissions(session, network.id, now - GONE_SHOWN, now)
    }
    # Lost or stolen ones have no date on record: they are not shown as missing at all.
    rows = [v for v in rows if v.state not in feeds.GONE or v.id in recent]
    stations = {s.id: s for s in await feeds.stations(session, network.id)}
    out_of_order = network.id in await out_of_order_now(session, [network.id], now)
    return Fleet(rows, stations, out_of_order)


def _position(
    v: feeds.VehicleRow, stations: dict[int, feeds.StationRow]
) -> tuple[float, float] | None:
    if v.station_id is not None and v.station_id in stations:
        station = stations[v.station_id]
        return station.latitude, station.longitude
    if v.latitude is not None and v.longitude is not None:
        return v.latitude, v.longitude
    return None


def _status_doc(
    network: Network, v: feeds.VehicleRow, fleet: Fleet, now: datetime
) -> dict[str, Any] | None:
    where = _position(v, fleet.stations)
    if where is None:
        return None
    state, types = mapping.current_state(
        v,
        now=now,
        out_of_order=fleet.out_of_order,
        min_battery_to_rent=network.min_battery_to_rent,
        trip_ended=v.last_trip_id is not None,
    )
    seen = v.position_at or network.created_at
    device = mds_id("vehicle", v.id)
    provider = provider_id(network.id)
    battery = _battery(v.vehicle_type, v.battery_level, v.assist_battery_level)
    event: dict[str, Any] = {
        "device_id": device,
        "provider_id": provider,
        "event_id": mds_uuid("event", f"status:{v.id}:{state}:{ms(seen)}"),
        "vehicle_state": state,
        "event_types": types,
        "timestamp": ms(seen),
        "location": gps(*where),
    }
    telemetry: dict[str, Any] = {
        "device_id": device,
        "provider_id": provider,
        "telemetry_id": mds_uuid("telemetry", f"status:{v.id}:{ms(seen)}"),
        "timestamp": ms(seen),
        # MDS: null when not on a trip; an on-trip position stays private until the trip
        # ends (the position on record is the one before the trip).
        "trip_ids": None,
        "journey_id": None,
        "location": gps(*where),
    }
    if v.station_id is not None:
        event["stop_id"] = telemetry["stop_id"] = mds_id("stop", v.station_id)
    if battery is not None:
        event["battery_percent"] = telemetry["battery_percent"] = battery
    return {
        "device_id": device,
        "provider_id": provider,
        "last_event": event,
        "last_telemetry": telemetry,
    }


async def vehicles_status(
    session: AsyncSession, network: Network, now: datetime, vehicle_id: int | None = None
) -> list[dict[str, Any]]:
    fleet = await _fleet(session, network, now)
    await session.commit()
    out = []
    for v in fleet.vehicles:
        if vehicle_id is not None and v.id != vehicle_id:
            continue
        doc = _status_doc(network, v, fleet, now)
        if doc is not None:
            out.append(doc)
    if vehicle_id is not None and not out:
        raise NotFoundError("vehicle", mds_id("vehicle", vehicle_id))
    return out


def _distance_m(trip: Trip) -> int:
    """Straight line from start to end (haversine): the cloud keeps no route of a trip."""
    points = (trip.start_latitude, trip.start_longitude, trip.end_latitude, trip.end_longitude)
    if any(p is None for p in points):
        return 0
    lat1, lng1, lat2, lng2 = (math.radians(float(p or 0)) for p in points)
    a = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lng2 - lng1) / 2) ** 2
    )
    return round(2 * 6_371_000 * math.asin(math.sqrt(a)))


def _minor(amount: Decimal, currency: str) -> int:
    return int((amount * (10 ** minor_unit(currency))).to_integral_value())


def _trip_start(trip: Trip, fallback: tuple[float, float] | None) -> tuple[float, float] | None:
    if trip.start_latitude is not None and trip.start_longitude is not None:
        return trip.start_latitude, trip.start_longitude
    return fallback


def _trip_end(trip: Trip, fallback: tuple[float, float] | None) -> tuple[float, float] | None:
    if trip.end_latitude is not None and trip.end_longitude is not None:
        return trip.end_latitude, trip.end_longitude
    return fallback


async def trips(session: AsyncSession, network: Network, start: datetime) -> list[dict[str, Any]]:
    rows = await mds_repository.trips_ended(session, network.id, start, start + timedelta(hours=1))
    await session.commit()
    provider = provider_id(network.id)
    out = []
    for trip in rows:
        assert trip.ended_at is not None
        begin, end = _trip_start(trip, None), _trip_end(trip, None)
        if begin is None or end is None:
            continue  # MDS requires both locations
        doc: dict[str, Any] = {
            "provider_id": provider,
            "device_id": mds_id("vehicle", trip.vehicle_id),
            "trip_id": mds_id("trip", trip.id),
            "start_time": ms(trip.started_at),
            "end_time": ms(trip.ended_at),
            "start_location": gps(*begin),
            "end_location": gps(*end),
            "duration": max(0, round((trip.ended_at - trip.started_at).total_seconds())),
            "distance": _distance_m(trip),
            "currency": trip.currency,
        }
        if trip.cost is not None:
            doc["actual_cost"] = _minor(trip.cost, trip.currency)
        out.append(doc)
    return out


@dataclass(frozen=True, slots=True)
class Happening:
    """One of our happenings on a vehicle, before it is an MDS event."""

    key: str
    kind: str
    vehicle_id: int
    at: datetime
    where: tuple[float, float] | None
    trip_id: int | None = None


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


async def _happenings(
    session: AsyncSession, network: Network, start: datetime, end: datetime, now: datetime
) -> tuple[list[Happening], Fleet]:
    fleet = await _fleet(session, network, now)
    positions = {v.id: _position(v, fleet.stations) for v in fleet.vehicles}
    found: list[Happening] = []

    def within(at: datetime | None) -> bool:
        return at is not None and start <= _aware(at) < end

    for trip in await mds_repository.trips_touching(session, network.id, start, end):
        here = positions.get(trip.vehicle_id)
        if within(trip.started_at):
            found.append(
                Happening(
                    f"trip:{trip.id}:start",
                    "trip-started",
                    trip.vehicle_id,
                    _aware(trip.started_at),
                    _trip_start(trip, here),
                    trip.id,
                )
            )
        if within(trip.ended_at) and trip.ended_at is not None:
            kind = "trip-cancelled" if trip.status == TripStatus.CANCELLED else "trip-finished"
            found.append(
                Happening(
                    f"trip:{trip.id}:end",
                    kind,
                    trip.vehicle_id,
                    _aware(trip.ended_at),
                    _trip_end(trip, here),
                    trip.id,
                )
            )
    for m in await mds_repository.vehicle_maintenances(session, network.id, start, end):
        assert m.vehicle_id is not None
        here = positions.get(m.vehicle_id)
        if within(m.started_at):
            found.append(
                Happening(
                    f"maintenance:{m.id}:start",
                    "maintenance-started",
                    m.vehicle_id,
                    _aware(m.started_at),
                    here,
                )
            )
        if within(m.stopped_at) and m.stopped_at is not None:
            found.append(
                Happening(
                    f"maintenance:{m.id}:stop",
                    "maintenance-stopped",
                    m.vehicle_id,
                    _aware(m.stopped_at),
                    here,
                )
            )
    for d in await mds_repository.decommissions(session, network.id, start, end):
        found.append(
            Happening(
                f"decommission:{d.id}",
                "decommissioned",
                d.vehicle_id,
                _aware(d.decommissioned_at),
                positions.get(d.vehicle_id),
            )
        )
    for outage, vehicle_id in await mds_repository.vehicle_outages(session, network.id, start, end):
        here = positions.get(vehicle_id)
        if within(outage.started_at):
            found.append(
                Happening(
                    f"outage:{outage.id}:start",
                    "comms-lost",
                    vehicle_id,
                    _aware(outage.started_at),
                    here,
                )
            )
        if within(outage.ended_at) and outage.ended_at is not None:
            found.append(
                Happening(
                    f"outage:{outage.id}:end",
                    "comms-restored",
                    vehicle_id,
                    _aware(outage.ended_at),
                    here,
                )
            )
    await session.commit()
    found.sort(key=lambda h: (h.at, h.vehicle_id, h.key))
    return found, fleet


def _event_doc(network: Network, h: Happening) -> dict[str, Any] | None:
    if h.where is None:
        return None  # MDS requires a location
    state, types = mapping.EVENTS[h.kind]
    doc: dict[str, Any] = {
        "device_id": mds_id("vehicle", h.vehicle_id),
        "provider_id": provider_id(network.id),
        "event_id": mds_uuid("event", h.key),
        "vehicle_state": state,
        "event_types": list(types),
        "timestamp": ms(h.at),
        "location": gps(*h.where),
    }
    if h.trip_id is not None:
        doc["trip_ids"] = [mds_id("trip", h.trip_id)]
    return doc


async def events(
    session: AsyncSession, network: Network, start: datetime, end: datetime, now: datetime
) -> list[dict[str, Any]]:
    found, _ = await _happenings(session, network, start, end, now)
    return [doc for h in found if (doc := _event_doc(network, h)) is not None]


async def telemetry(
    session: AsyncSession,
    network: Network,
    start: datetime,
    now: datetime,
    store: TelemetryStore,
) -> list[dict[str, Any]]:
    """The trips' points in the hour: each trip's start and end (MDS: at least those two),
    every GPS point the vehicle streamed during the ride (the telemetry store), and the
    last position on record of each vehicle that reported it in the hour while on no trip.
    A trip is published once it has ended (in-trip positions stay private until then)."""
    end = start + timedelta(hours=1)
    rows = await mds_repository.trips_touching(session, network.id, start, end)
    riding = await mds_repository.trips_riding(session, network.id, start, end)
    parked = await feeds.vehicles(session, network.id)
    # The read transaction ends before the store is asked (on SQLite it holds the lock).
    await session.commit()
    streamed = await store.fleet_positions([serial for _, serial in riding], start, end)
    provider = provider_id(network.id)
    out = []
    for v in parked:
        seen = v.position_at
        if v.on_trip or seen is None or v.latitude is None or v.longitude is None:
            continue
        if not start <= _aware(seen) < end:
            continue
        point: dict[str, Any] = {
            "device_id": mds_id("vehicle", v.id),
            "provider_id": provider,
            "telemetry_id": mds_uuid("telemetry", f"position:{v.id}:{ms(seen)}"),
            "timestamp": ms(seen),
            "trip_ids": None,
            "journey_id": None,
            "location": gps(v.latitude, v.longitude),
        }
        battery = _battery(v.vehicle_type, v.battery_level, v.assist_battery_level)
        if battery is not None:
            point["battery_percent"] = battery
        if v.station_id is not None:
            point["stop_id"] = mds_id("stop", v.station_id)
        out.append(point)
    for trip in rows:
        if trip.status != TripStatus.FINISHED:
            continue  # in-trip positions stay private until the trip ends
        for edge, at, where in (
            ("start", trip.started_at, _trip_start(trip, None)),
            ("end", trip.ended_at, _trip_end(trip, None)),
        ):
            if at is None or where is None or not start <= _aware(at) < end:
                continue
            out.append(
                {
                    "device_id": mds_id("vehicle", trip.vehicle_id),
                    "provider_id": provider,
                    "telemetry_id": mds_uuid("telemetry", f"trip:{trip.id}:{edge}"),
                    "timestamp": ms(at),
                    "trip_ids": [mds_id("trip", trip.id)],
                    "journey_id": None,
                    "location": gps(*where),
                }
            )
    out += _ride_points(provider, riding, streamed)
    out.sort(key=lambda t: (t["timestamp"], t["telemetry_id"]))
    return out


def _ride_points(
    provider: str,
    riding: Sequence[tuple[Trip, str]],
    streamed: dict[str, list[PositionSample]],
) -> list[dict[str, Any]]:
    """One MDS telemetry row per GPS point a vehicle streamed during one of its trips (the
    point's time within the trip's start and end), with the trip's id."""
    out: list[dict[str, Any]] = []
    for trip, serial in riding:
        assert trip.ended_at is not None  # finished trips only (trips_riding)
        first, last = ms(trip.started_at), ms(trip.ended_at)
        trip_ids = [mds_id("trip", trip.id)]
        for sample in streamed.get(serial, ()):
            at = sample.time_ns // 1_000_000
            if not first <= at <= last:
                continue
            location: dict[str, Any] = gps(sample.lat, sample.lon)
            if sample.heading is not None:
                location["heading"] = round(sample.heading, 1)
            if sample.speed is not None:
                location["speed"] = round(sample.speed / 3.6, 2)  # km/h → MDS's m/s
            out.append(
                {
                    "device_id": mds_id("vehicle", trip.vehicle_id),
                    "provider_id": provider,
                    "telemetry_id": mds_uuid("telemetry", f"ride:{trip.id}:{sample.time_ns}"),
                    "timestamp": at,
                    "trip_ids": trip_ids,
                    "journey_id": None,
                    "location": location,
                }
            )
    return out


async def stops(
    session: AsyncSession, network: Network, now: datetime, station_id: int | None = None
) -> list[dict[str, Any]]:
    stations = await feeds.stations(session, network.id)
    spots = await feeds.spots(session, network.id)
    vehicles_rows = await feeds.vehicles(session, network.id)
    maintenance = {m.station_id for m in await feeds.station_maintenances(session, network.id)}
    out_of_order = network.id in await out_of_order_now(session, [network.id], now)
    await session.commit()
    states = station_states(
        stations,
        spots,
        vehicles_rows,
        stations_in_maintenance=maintenance,
        min_battery_to_rent=network.min_battery_to_rent,
        out_of_order=out_of_order,
        now=now,
    )
    provider = provider_id(network.id)
    out = []
    for state in states.values():
        s = state.station
        if station_id is not None and s.id != station_id:
            continue

        def per_type(counts: dict[VehicleType, int]) -> dict[str, int]:
            found: dict[str, int] = {}
            for vtype, n in counts.items():
                key = mapping.VEHICLE_TYPE[vtype]
                found[key] = found.get(key, 0) + n
            return found

        # Our docks take any bike; a stop's places are counted as bicycle places.
        seen = s.presence.last_seen_at or network.created_at
        out.append(
            {
                "stop_id": mds_id("stop", s.id),
                "name": s.name,
                "last_updated": ms(seen),
                "location": gps(s.latitude, s.longitude),
                "status": {
                    "is_installed": True,
                    "is_renting": state.is_renting,
                    "is_returning": state.is_returning,
                },
                "capacity": {"bicycle": state.capacity},
                "num_vehicles_available": per_type(state.available),
                "num_vehicles_disabled": per_type(state.disabled),
                "num_places_available": {"bicycle": state.docks_available},
                "num_places_disabled": {"bicycle": state.docks_disabled},
                "provider_id": provider,
                "region_id": str(s.cluster_id),
                "devices": [mds_id("vehicle", v) for v in state.vehicle_ids],
            }
        )
    if station_id is not None and not out:
        raise NotFoundError("stop", mds_id("stop", station_id))
    return out


__all__ = [
    "CONTENT_TYPE",
    "MEDIA_VERSION",
    "RECENT_WINDOW",
    "TTL_MS",
    "VERSION",
    "accepts",
    "authenticate",
    "events",
    "hour_served",
    "issue_token",
    "list_tokens",
    "ms",
    "parse_hour",
    "provider_id",
    "revoke_token",
    "stops",
    "telemetry",
    "trips",
    "vehicle",
    "vehicle_doc",
    "vehicles",
    "vehicles_status",
]
