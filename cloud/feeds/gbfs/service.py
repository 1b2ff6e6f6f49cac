"""GBFS v3.0 documents of one network (docs/feeds.md says what each field is made of).

Each feed is a :class:`Feed`: its file name, its ``ttl`` and a builder that returns the
``data`` part from the database; :func:`document` wraps it (``last_updated``, ``ttl``,
``version``). The routes serve them through :class:`~kickstand.cloud.feeds.cache.FeedCache`,
so a builder runs once per ttl per process, not per request.

Choices (docs/feeds.md):

- a GBFS station is one of our stations (one mainboard: its spots are the docks, its one
  online/offline answer makes ``is_renting`` honest); a GBFS region is one of our
  clusters (the place that groups the stations of one square);
- a GBFS pricing plan is one of our pricing rules in force; the vehicle types' default
  plan is the rule in force now (network local time, the shorter window wins);
- ``vehicle_status`` lists docked and free-floating vehicles that are not on a trip, under
  an id rotated after every trip (:mod:`kickstand.cloud.feeds.ids`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parseaddr
from typing import Any

from shapely.geometry import MultiPolygon, Polygon, mapping
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.errors import NoPricingRuleError, NotFoundError
from kickstand.cloud.feeds import repository
from kickstand.cloud.feeds.cache import rfc3339
from kickstand.cloud.feeds.ids import public_vehicle_id, vehicle_id_key
from kickstand.cloud.feeds.state import (
    StationState,
    free_vehicle_offered,
    station_states,
    vehicle_offered,
)
from kickstand.cloud.geofence.model import OutsideReturnPolicy
from kickstand.cloud.geofence.store import load_zones
from kickstand.cloud.liveness import is_online
from kickstand.cloud.models import Network, VehicleType
from kickstand.cloud.networks.repository import out_of_order_now, out_of_orders
from kickstand.cloud.trips import rule_book

log = logging.getLogger(__name__)

VERSION = "3.0"
#: Our texts are not translated: every localized string is given in this language.
LANGUAGE = "en"
#: The systems' opening hours (OSM syntax); an out-of-order period is a system alert.
OPENING_HOURS = "24/7"

#: ttl (seconds) of each feed: the status feeds are near real time (GBFS: data at most
#: 5 minutes old), the descriptive ones change rarely.
STATUS_TTL_S = 15
ALERTS_TTL_S = 60
INFO_TTL_S = 300


def text(value: str) -> list[dict[str, str]]:
    """A GBFS v3.0 localized string."""
    return [{"text": value, "language": LANGUAGE}]


def system_id(network_id: int) -> str:
    return f"kickstand-{network_id}"


def network_of_system(value: str) -> int | None:
    prefix, _, tail = value.rpartition("-")
    if prefix != "kickstand" or not tail.isdigit() or len(tail) > 10:
        return None
    return int(tail)


@dataclass(frozen=True, slots=True)
class VehicleTypeSpec:
    form_factor: str
    propulsion_type: str
    #: The range of a full battery (m): our registry has no per-model figure yet.
    max_range_meters: int | None
    name: str
    wheel_count: int


VEHICLE_TYPES: dict[VehicleType, VehicleTypeSpec] = {
    VehicleType.BIKE: VehicleTypeSpec("bicycle", "human", None, "Bike", 2),
    VehicleType.E_BIKE: VehicleTypeSpec("bicycle", "electric_assist", 60_000, "E-bike", 2),
    VehicleType.KICK_SCOOTER: VehicleTypeSpec(
        "scooter_standing", "electric", 30_000, "Kick-scooter", 2
    ),
}


def vehicle_type_id(vehicle_type: VehicleType) -> str:
    return vehicle_type.value


@dataclass(frozen=True, slots=True)
class BuildContext:
    session: AsyncSession
    network: Network
    now: datetime
    #: The key of the rotated vehicle ids (:func:`kickstand.cloud.feeds.ids.vehicle_id_key`).
    vehicle_id_key: bytes
    #: ``feed_contact_email``: the address the installation's mails come from.
    contact_email: str
    #: Absolute URL of this system's directory (``…/gbfs/v3/kickstand-1/``).
    base_url: str


Builder = Callable[[BuildContext], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Feed:
    name: str
    ttl_s: int
    build: Builder


def document(data: Any, last_updated: datetime, ttl_s: int) -> dict[str, Any]:
    return {"last_updated": rfc3339(last_updated), "ttl": ttl_s, "version": VERSION, "data": data}


def contact_email(mail_from: str) -> str:
    return parseaddr(mail_from)[1] or "gbfs@kickstand.invalid"


# ── the feeds ──────────────────────────────────────────────────────────────────────────


async def _gbfs(ctx: BuildContext) -> Any:
    feeds = [{"name": "gbfs", "url": ctx.base_url + "gbfs.json"}]
    feeds += [
        {"name": name, "url": ctx.base_url + name + ".json"} for name in FEEDS if name != "gbfs"
    ]
    return {"feeds": feeds}


async def _gbfs_versions(ctx: BuildContext) -> Any:
    return {"versions": [{"version": VERSION, "url": ctx.base_url + "gbfs.json"}]}


async def _system_information(ctx: BuildContext) -> Any:
    network = ctx.network
    return {
        "system_id": system_id(network.id),
        "languages": [LANGUAGE],
        "name": text(network.name),
        "opening_hours": OPENING_HOURS,
        "feed_contact_email": ctx.contact_email,
        "timezone": network.timezone,
        "start_date": network.created_at.astimezone(UTC).date().isoformat(),
        # GBFS: required when the publisher has several systems (one installation, several
        # networks); given always, as the way to the others.
        "manifest_url": ctx.base_url.rstrip("/").rsplit("/", 1)[0] + "/manifest.json",
    }


async def _pricing(ctx: BuildContext) -> tuple[list[dict[str, Any]], str | None]:
    book = await rule_book(ctx.session, ctx.network)
    taxable = ctx.network.default_vat > 0
    plans = []
    for rule in book.rules:
        included_min = rule.unlock_included_time // 60
        window = (
            f"{_DAYS[rule.start_dow]} {rule.start_hod[:5]} to {_DAYS[rule.end_dow]} "
            f"{rule.end_hod[:5]} ({ctx.network.timezone})"
        )
        detail = (
            f"From {window}: {_money(rule.unlock_price)} {ctx.network.currency} to unlock, "
            f"{included_min} min included, then {_money(rule.use_per_minute_price)} per "
            f"minute riding and {_money(rule.on_hold_price)} per minute on hold."
        )
        plan: dict[str, Any] = {
            "plan_id": plan_id(rule.id),
            "name": text(window),
            "currency": ctx.network.currency,
            "price": float(rule.unlock_price),
            "is_taxable": taxable,
            "description": text(detail),
        }
        if rule.use_per_minute_price > 0:
            plan["per_min_pricing"] = [
                {"start": included_min, "rate": float(rule.use_per_minute_price), "interval": 1}
            ]
        plans.append(plan)
    try:
        default = plan_id(book.rule_at(ctx.now).id) if book.rules else None
    except NoPricingRuleError:
        default = None
    return plans, default


_DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


def plan_id(rule_id: object) -> str:
    return f"rule-{rule_id}"


async def _system_pricing_plans(ctx: BuildContext) -> Any:
    plans, _ = await _pricing(ctx)
    return {"plans": plans}


async def _vehicle_types(ctx: BuildContext) -> Any:
    plans, default = await _pricing(ctx)
    types = []
    for vtype, spec in VEHICLE_TYPES.items():
        entry: dict[str, Any] = {
            "vehicle_type_id": vehicle_type_id(vtype),
            "form_factor": spec.form_factor,
            "propulsion_type": spec.propulsion_type,
            "name": text(spec.name),
            "wheel_count": spec.wheel_count,
            "rider_capacity": 1,
        }
        if spec.max_range_meters is not None:
            entry["max_range_meters"] = spec.max_range_meters
        if default is not None:
            entry["default_pricing_plan_id"] = default
        if plans:
            entry["pricing_plan_ids"] = [p["plan_id"] for p in plans]
        types.append(entry)
    return {"vehicle_types": types}


async def _station_information(ctx: BuildContext) -> Any:
    stations = await repository.stations(ctx.session, ctx.network.id)
    spots = await repository.spots(ctx.session, ctx.network.id)
    capacity: dict[int, int] = {}
    for spot in spots:
        capacity[spot.station_id] = capacity.get(spot.station_id, 0) + 1
    out = []
    for s in stations:
        entry: dict[str, Any] = {
            "station_id": str(s.id),
            "name": text(s.name),
            "lat": s.latitude,
            "lon": s.longitude,
            "region_id": str(s.cluster_id),
            "capacity": capacity.get(s.id, 0),
            "is_virtual_station": False,
            "rental_methods": ["key"],
        }
        if s.address:
            entry["address"] = s.address
        out.append(entry)
    return {"stations": out}


async def _snapshot(ctx: BuildContext) -> tuple[Any, Any, Any, bool]:
    session, network_id = ctx.session, ctx.network.id
    stations = await repository.stations(session, network_id)
    spots = await repository.spots(session, network_id)
    vehicles = await repository.vehicles(session, network_id)
    maintenance = {m.station_id for m in await repository.station_maintenances(session, network_id)}
    out_of_order = network_id in await out_of_order_now(session, [network_id], ctx.now)
    # CPU only from here: beside the event loop (other requests are served meanwhile).
    states = await asyncio.to_thread(
        station_states,
        stations,
        spots,
        vehicles,
        stations_in_maintenance=maintenance,
        min_battery_to_rent=ctx.network.min_battery_to_rent,
        out_of_order=out_of_order,
        now=ctx.now,
    )
    return stations, vehicles, states, out_of_order


async def _station_status(ctx: BuildContext) -> Any:
    _, _, states, _ = await _snapshot(ctx)
    return await asyncio.to_thread(_station_status_data, ctx, states)


def _station_status_data(ctx: BuildContext, states: dict[int, StationState]) -> Any:
    out = []
    for state in states.values():
        seen = state.station.presence.last_seen_at
        out.append(
            {
                "station_id": str(state.station.id),
                "num_vehicles_available": state.num_vehicles_available,
                "vehicle_types_available": [
                    {"vehicle_type_id": vehicle_type_id(t), "count": state.available[t]}
                    for t in VEHICLE_TYPES
                ],
                "num_vehicles_disabled": state.num_vehicles_disabled,
                "num_docks_available": state.docks_available,
                "num_docks_disabled": state.docks_disabled,
                "is_installed": True,
                "is_renting": state.is_renting,
                "is_returning": state.is_returning,
                # Never reported: the station has been silent since before we knew it.
                "last_reported": rfc3339(_aware(seen) if seen else ctx.network.created_at),
            }
        )
    return {"stations": out}


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _range(spec: VehicleTypeSpec, percent: int | None) -> int:
    assert spec.max_range_meters is not None
    return int(spec.max_range_meters * max(0, min(100, percent or 0)) / 100)


async def _vehicle_status(ctx: BuildContext) -> Any:
    _, vehicles, states, out_of_order = await _snapshot(ctx)
    _, default_plan = await _pricing(ctx)
    return await asyncio.to_thread(
        _vehicle_status_data, ctx, vehicles, states, out_of_order, default_plan
    )


def _vehicle_status_data(
    ctx: BuildContext,
    vehicles: list[repository.VehicleRow],
    states: dict[int, StationState],
    out_of_order: bool,
    default_plan: str | None,
) -> Any:
    minimum = ctx.network.min_battery_to_rent
    out = []
    for v in vehicles:
        if v.on_trip:
            continue  # a vehicle in use is not published (nor its position)
        entry: dict[str, Any] = {
            "vehicle_id": public_vehicle_id(ctx.vehicle_id_key, v.id, v.last_trip_id),
            "vehicle_type_id": vehicle_type_id(v.vehicle_type),
            "is_reserved": v.reserved,
        }
        if v.station_id is not None:
            station = states.get(v.station_id)
            if station is None:
                continue  # docked at a station out of service: not offered anywhere
            entry["station_id"] = str(v.station_id)
            entry["is_disabled"] = not (
                station.is_renting
                and vehicle_offered(v, min_battery_to_rent=minimum, out_of_order=out_of_order)
            )
        else:
            if v.latitude is None or v.longitude is None:
                continue  # nowhere to show it
            entry["lat"] = round(v.latitude, 6)
            entry["lon"] = round(v.longitude, 6)
            entry["is_disabled"] = not free_vehicle_offered(
                v, min_battery_to_rent=minimum, out_of_order=out_of_order, now=ctx.now
            )
        spec = VEHICLE_TYPES[v.vehicle_type]
        if spec.max_range_meters is not None:
            percent = (
                v.assist_battery_level if v.vehicle_type == VehicleType.E_BIKE else v.battery_level
            )
            entry["current_range_meters"] = _range(spec, percent)
            if percent is not None:
                entry["current_fuel_percent"] = round(max(0, min(100, percent)) / 100, 2)
        if v.position_at is not None:
            entry["last_reported"] = rfc3339(_aware(v.position_at))
        if default_plan is not None:
            entry["pricing_plan_id"] = default_plan
        out.append(entry)
    return {"vehicles": out}


async def _system_regions(ctx: BuildContext) -> Any:
    regions = await repository.regions(ctx.session, ctx.network.id)
    return {"regions": [{"region_id": str(i), "name": text(n)} for i, n in regions]}


async def _system_alerts(ctx: BuildContext) -> Any:
    session, network = ctx.session, ctx.network
    alerts: list[dict[str, Any]] = []
    for period in await out_of_orders(session, network.id):
        end = _aware(period.end_date) if period.end_date is not None else None
        if end is not None and end <= ctx.now:
            continue
        times: dict[str, str] = {"start": rfc3339(_aware(period.start_date))}
        if end is not None:
            times["end"] = rfc3339(end)
        alert: dict[str, Any] = {
            "alert_id": f"network-out-of-order-{period.id}",
            "type": "system_closure",
            "times": [times],
            "summary": text("The network is out of order"),
        }
        if period.reason:
            alert["description"] = text(period.reason)
        alerts.append(alert)
    stations = await repository.stations(session, network.id)
    names = {s.id: s for s in stations}
    for m in await repository.station_maintenances(session, network.id):
        if m.station_id not in names:
            continue
        alert = {
            "alert_id": f"station-maintenance-{m.id}",
            "type": "station_closure",
            "times": [{"start": rfc3339(_aware(m.started_at))}],
            "station_ids": [str(m.station_id)],
            "region_ids": [str(names[m.station_id].cluster_id)],
            "summary": text(f"Station {names[m.station_id].name} is closed for maintenance"),
            "last_updated": rfc3339(_aware(m.started_at)),
        }
        if m.comment:
            alert["description"] = text(m.comment[:500])
        alerts.append(alert)
    for s in stations:
        if is_online(s.presence, ctx.now):
            continue
        alert = {
            "alert_id": f"station-offline-{s.id}",
            "type": "station_closure",
            "station_ids": [str(s.id)],
            "region_ids": [str(s.cluster_id)],
            "summary": text(f"Station {s.name} is out of order"),
            "description": text("The station cannot be reached: no rental, no return."),
        }
        if s.presence.last_seen_at is not None:
            alert["times"] = [{"start": rfc3339(_aware(s.presence.last_seen_at))}]
        alerts.append(alert)
    return {"alerts": alerts}


def _multipolygon(shape: Polygon | MultiPolygon) -> dict[str, Any]:
    multi = shape if isinstance(shape, MultiPolygon) else MultiPolygon([shape])
    geometry: dict[str, Any] = mapping(multi)
    return {"type": "MultiPolygon", "coordinates": _lists(geometry["coordinates"])}


def _lists(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_lists(v) for v in value]
    return value


def _rule(**allowed: Any) -> dict[str, Any]:
    return {
        "ride_start_allowed": allowed.get("start", True),
        "ride_end_allowed": allowed.get("end", True),
        "ride_through_allowed": allowed.get("through", True),
        **({"maximum_speed_kph": allowed["speed"]} if "speed" in allowed else {}),
    }


async def _geofencing_zones(ctx: BuildContext) -> Any:
    zones = await load_zones(ctx.session, ctx.network.id)
    features: list[dict[str, Any]] = []

    def add(shape: Polygon | MultiPolygon, name: str, rule: dict[str, Any]) -> None:
        features.append(
            {
                "type": "Feature",
                "geometry": _multipolygon(shape),
                "properties": {"name": text(name), "rules": [rule]},
            }
        )

    # GBFS: where zones overlap, the first one's rules apply: the strictest first.
    for z in zones.forbidden_zones:
        add(z.shape, z.name or f"Forbidden zone {z.forbidden_zone_id}",
            _rule(start=False, end=False, through=False))  # fmt: skip
    for sz in zones.speed_zones:
        add(sz.shape, f"Speed zone {sz.speed_zone_id}", _rule(speed=sz.max_speed))
    for vp in zones.virtual_parkings:
        add(vp.shape, f"Virtual parking {vp.virtual_parking_id}", _rule())
    outside_end = True
    if zones.border is not None:
        add(zones.border.shape, f"{ctx.network.name} service area", _rule())
        outside_end = zones.border.outside_return_policy != OutsideReturnPolicy.REFUSE
        global_rules = [_rule(start=False, end=outside_end, through=True)]
    else:
        global_rules = [_rule()]
    return {
        "geofencing_zones": {"type": "FeatureCollection", "features": features},
        "global_rules": global_rules,
    }


#: Every feed of a system, in the order gbfs.json lists them.
FEEDS: dict[str, Feed] = {
    f.name: f
    for f in (
        Feed("gbfs", INFO_TTL_S, _gbfs),
        Feed("gbfs_versions", INFO_TTL_S, _gbfs_versions),
        Feed("system_information", INFO_TTL_S, _system_information),
        Feed("vehicle_types", INFO_TTL_S, _vehicle_types),
        Feed("station_information", INFO_TTL_S, _station_information),
        Feed("station_status", STATUS_TTL_S, _station_status),
        Feed("vehicle_status", STATUS_TTL_S, _vehicle_status),
        Feed("system_alerts", ALERTS_TTL_S, _system_alerts),
        Feed("system_regions", INFO_TTL_S, _system_regions),
        Feed("system_pricing_plans", INFO_TTL_S, _system_pricing_plans),
        Feed("geofencing_zones", INFO_TTL_S, _geofencing_zones),
    )
}


async def manifest(session: AsyncSession, gbfs_url: Callable[[int], str]) -> Any:
    """``manifest.json``'s data: every published network of this installation."""
    networks = await repository.published_networks(session)
    return {
        "datasets": [
            {
                "system_id": system_id(n.id),
                "versions": [{"version": VERSION, "url": gbfs_url(n.id)}],
            }
            for n in networks
        ]
    }


__all__ = [
    "FEEDS",
    "VEHICLE_TYPES",
    "VERSION",
    "BuildContext",
    "Feed",
    "build",
    "build_manifest",
    "contact_email",
    "document",
    "manifest",
    "network_of_system",
    "plan_id",
    "system_id",
    "text",
]


async def build(
    maker: async_sessionmaker[AsyncSession],
    network_id: int,
    feed: Feed,
    *,
    secret: str,
    mail_from: str,
    base_url: str,
    now: datetime | None = None,
) -> Any:
    """The ``data`` of ``feed`` for a published network (404 for any other network)."""
    async with maker() as session:
        network = await repository.published_network(session, network_id)
        if network is None:
            raise NotFoundError("GBFS system", system_id(network_id))
        ctx = BuildContext(
            session=session,
            network=network,
            now=now or datetime.now(UTC),
            vehicle_id_key=vehicle_id_key(secret),
            contact_email=contact_email(mail_from),
            base_url=base_url,
        )
        data = await feed.build(ctx)
        await session.commit()
        return data


async def build_manifest(
    maker: async_sessionmaker[AsyncSession], gbfs_url: Callable[[int], str]
) -> Any:
    async with maker() as session:
        data = await manifest(session, gbfs_url)
        await session.commit()
        return data
