"""MDS 2.0 provider API on the demo city (PostgreSQL), checked field by field against the
specification (openmobilityfoundation/mobility-data-specification, tag 2.0.2: provider/
README.md, data-types.md, general-information.md, modes/micromobility.md). The 2.0
repository carries no JSON Schemas (they moved to mds-openapi): the tables below are
transcribed from those documents."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from kickstand.cloud.feeds.mds import mapping
from kickstand.cloud.feeds.mds.models import MdsAgencyToken
from kickstand.cloud.models import Vehicle, VehicleState, VehicleType
from kickstand.cloud.vehicles.models import DecommissionReason, VehicleDecommission
from tests.cloud.feeds.conftest import City

pytestmark = pytest.mark.postgres

ACCEPT = "application/vnd.mds+json;version=2.0"

# ── the specification's tables ─────────────────────────────────────────────────────────
#: data-types.md "Vehicles"
VEHICLE = (
    {"device_id", "provider_id", "vehicle_id", "vehicle_type", "propulsion_types"},
    {"data_provider_id", "vehicle_attributes", "accessibility_attributes", "battery_capacity",
     "fuel_capacity", "maximum_speed"},
)  # fmt: skip
#: data-types.md "Vehicle Status"
VEHICLE_STATUS = (
    {"device_id", "provider_id", "last_event", "last_telemetry"},
    {"data_provider_id"},
)
#: data-types.md "Events"
EVENT = (
    {"device_id", "provider_id", "event_id", "vehicle_state", "event_types", "timestamp",
     "location"},
    {"data_provider_id", "publication_time", "event_geographies", "battery_percent",
     "fuel_percent", "trip_ids", "stop_id", "associated_ticket"},
)  # fmt: skip
#: data-types.md "Telemetry"
TELEMETRY = (
    {"device_id", "provider_id", "telemetry_id", "timestamp", "trip_ids", "journey_id",
     "location"},
    {"data_provider_id", "stop_id", "location_type", "battery_percent", "fuel_percent",
     "tipped_over"},
)  # fmt: skip
#: data-types.md "GPS Data"
GPS = (
    {"lat", "lng"},
    {"altitude", "heading", "speed", "horizontal_accuracy", "vertical_accuracy", "satellites"},
)
#: data-types.md "Stops" and "Stop Status"
STOP = (
    {"stop_id", "name", "last_updated", "location", "status", "capacity",
     "num_vehicles_available", "num_vehicles_disabled"},
    {"provider_id", "data_provider_id", "geography_id", "region_id", "short_name", "address",
     "post_code", "rental_methods", "cross_street", "num_places_available",
     "num_places_disabled", "parent_stop", "devices", "image_url"},
)  # fmt: skip
STOP_STATUS = ({"is_installed", "is_renting", "is_returning"}, set[str]())
#: data-types.md "Trips"
TRIP = (
    {"provider_id", "device_id", "trip_id", "start_time", "end_time", "start_location",
     "end_location", "duration", "distance"},
    {"data_provider_id", "journey_id", "journey_attributes", "trip_type", "trip_attributes",
     "fare_attributes", "publication_time", "accessibility_attributes",
     "parking_verification_url", "parking_category", "standard_cost", "actual_cost",
     "currency"},
)  # fmt: skip
#: data-types.md "Vehicle Types" and "Propulsion Types"
VEHICLE_TYPES = {"bicycle", "bus", "cargo_bicycle", "car", "delivery_robot", "moped",
                 "motorcycle", "scooter_standing", "scooter_seated", "truck", "other"}  # fmt: skip
PROPULSION = {"human", "electric_assist", "electric", "combustion", "combustion_diesel",
              "hybrid", "hydrogen_fuel_cell", "plug_in_hybrid"}  # fmt: skip
#: modes/micromobility.md "Vehicle State Events": the event types that lead to each state.
INTO_STATE: dict[str, set[str]] = {
    "non_operational": {"battery_low", "maintenance", "off_hours", "system_suspend",
                        "unspecified", "located", "comms_restored"},
    "reserved": {"reservation_start", "located", "comms_restored", "unspecified"},
    "non_contactable": {"comms_lost", "unspecified"},
    "removed": {"compliance_pick_up", "maintenance_pick_up", "rebalance_pick_up",
                "agency_pick_up", "decommissioned", "located", "comms_restored", "unspecified"},
    "on_trip": {"trip_start", "trip_enter_jurisdiction", "located", "comms_restored",
                "unspecified", "changed_geographies"},
    "available": {"battery_charged", "maintenance", "on_hours", "system_resume", "unspecified",
                  "trip_cancel", "trip_end", "agency_drop_off", "provider_drop_off",
                  "reservation_cancel", "located", "comms_restored"},
    "missing": {"not_located", "unspecified"},
    "elsewhere": {"trip_leave_jurisdiction", "located", "comms_restored", "unspecified"},
}  # fmt: skip


def fields(obj: dict[str, Any], spec: tuple[set[str], set[str]], where: str) -> None:
    required, optional = spec
    assert required <= obj.keys(), f"{where}: missing {required - obj.keys()}"
    assert obj.keys() <= required | optional, f"{where}: unknown {obj.keys() - required - optional}"


def is_uuid(value: Any) -> bool:
    return isinstance(value, str) and str(uuid.UUID(value)) == value


def check_gps(value: dict[str, Any], where: str) -> None:
    fields(value, GPS, where)
    assert -90 <= value["lat"] <= 90 and -180 <= value["lng"] <= 180


def is_ms(value: Any) -> bool:
    # Timestamps: integer milliseconds since the epoch (general-information.md).
    return isinstance(value, int) and 1_600_000_000_000 < value < 4_000_000_000_000


def check_event(e: dict[str, Any], where: str) -> None:
    fields(e, EVENT, where)
    assert is_uuid(e["device_id"]) and is_uuid(e["provider_id"]) and is_uuid(e["event_id"])
    assert e["vehicle_state"] in INTO_STATE, where
    assert e["event_types"] and set(e["event_types"]) <= INTO_STATE[e["vehicle_state"]], where
    assert is_ms(e["timestamp"])
    check_gps(e["location"], where)
    for trip_id in e.get("trip_ids") or []:
        assert is_uuid(trip_id)
    if "battery_percent" in e:
        assert 0 <= e["battery_percent"] <= 100


def check_telemetry(t: dict[str, Any], where: str) -> None:
    fields(t, TELEMETRY, where)
    assert is_uuid(t["telemetry_id"]) and is_ms(t["timestamp"])
    assert t["trip_ids"] is None or all(is_uuid(i) for i in t["trip_ids"])
    check_gps(t["location"], where)


def test_the_mapping_uses_only_the_specifications_values() -> None:
    for kind, (state, types) in mapping.EVENTS.items():
        assert set(types) <= INTO_STATE[state], kind
    for vtype in VehicleType:
        assert mapping.VEHICLE_TYPE[vtype] in VEHICLE_TYPES
        assert set(mapping.PROPULSION[vtype]) <= PROPULSION


async def issue(city: City, name: str = "Ville de Lyon") -> str:
    operator = await city.login("operator@example.com")
    r = await city.client.post(
        f"/v1/dashboard/networks/{city.demo.network_id}/mds-tokens",
        json={"name": name},
        headers=operator,
    )
    assert r.status_code == 200, r.text
    token: str = r.json()["data"]["token"]
    return token


async def mds(city: City, path: str, token: str, status: int = 200, **params: Any) -> Any:
    r = await city.client.get(
        f"/mds{path}",
        params=params,
        headers={"Accept": ACCEPT, "Authorization": f"Bearer {token}"},
    )
    assert r.status_code == status, (path, r.status_code, r.text)
    if status == 200:
        assert r.headers["content-type"] == ACCEPT
        body = r.json()
        assert body["version"] == "2.0.2"
        return body
    return r.json()


async def test_versions_tokens_and_their_issuing(city: City) -> None:
    # An agency without the MDS media type gets 406 (the fallback version 0.2 is not served).
    for accept in (None, "application/json", "application/vnd.mds+json;version=1.2"):
        headers = {"Accept": accept} if accept else {}
        r = await city.client.get("/mds/vehicles", headers=headers)
        assert r.status_code == 406, accept
    assert (await city.client.get("/mds/vehicles", headers={"Accept": ACCEPT})).status_code == 401
    bad = await city.client.get(
        "/mds/vehicles", headers={"Accept": ACCEPT, "Authorization": "Bearer mds_nope"}
    )
    assert bad.status_code == 401

    rider = await city.login("alice@example.com")
    refused = await city.client.post(
        f"/v1/dashboard/networks/{city.demo.network_id}/mds-tokens",
        json={"name": "me"},
        headers=rider,
    )
    assert refused.status_code == 403
    token = await issue(city)
    body = await mds(city, "/vehicles", token)
    assert len(body["vehicles"]) == 16

    async with city.maker() as session:
        rows = (await session.scalars(select(MdsAgencyToken))).all()
    assert len(rows) == 1 and token not in rows[0].token_hash and len(rows[0].token_hash) == 64
    assert rows[0].last_used_at is not None

    operator = await city.login("operator@example.com")
    listed = await city.client.get(
        f"/v1/dashboard/networks/{city.demo.network_id}/mds-tokens", headers=operator
    )
    assert [t["name"] for t in listed.json()["data"]] == ["Ville de Lyon"]
    assert "token" not in listed.json()["data"][0]
    revoked = await city.client.delete(
        f"/v1/dashboard/networks/{city.demo.network_id}/mds-tokens/{rows[0].id}",
        headers=operator,
    )
    assert revoked.status_code == 200 and revoked.json()["data"]["revoked_at"]
    await mds(city, "/vehicles", token, status=401)


async def test_field_by_field_on_the_demo_city_after_a_ride(city: City) -> None:
    await city.network_since(days=2)
    await city.station_online("st-0001")
    await city.station_online("st-0003")
    now = datetime.now(UTC)
    hour = (now - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    label = hour.strftime("%Y-%m-%dT%H")
    await city.ride("LY0001", start=("st-0001", 1), end=("st-0003", 4),
                    at=hour + timedelta(minutes=10), minutes=12)  # fmt: skip
    token = await issue(city)

    # vehicles: keyset pages with JSON API links
    first = await mds(city, "/vehicles", token, page_size=10)
    assert len(first["vehicles"]) == 10 and first["links"]["next"]
    second = await city.client.get(
        first["links"]["next"], headers={"Accept": ACCEPT, "Authorization": f"Bearer {token}"}
    )
    rest = second.json()
    assert len(rest["vehicles"]) == 6 and rest["links"]["next"] is None
    vehicles = {v["vehicle_id"]: v for v in first["vehicles"] + rest["vehicles"]}
    for v in vehicles.values():
        fields(v, VEHICLE, "vehicle")
        assert is_uuid(v["device_id"]) and is_uuid(v["provider_id"])
        assert v["vehicle_type"] in VEHICLE_TYPES
        assert set(v["propulsion_types"]) <= PROPULSION
    ridden = vehicles["LY0001"]["device_id"]
    one = await mds(city, f"/vehicles/{ridden}", token)
    assert one["vehicles"] == [vehicles["LY0001"]]
    await mds(city, f"/vehicles/{uuid.uuid4()}", token, status=404)

    # trips of the hour
    trips = (await mds(city, "/trips", token, end_time=label))["trips"]
    assert len(trips) == 1
    trip = trips[0]
    fields(trip, TRIP, "trip")
    assert trip["device_id"] == ridden and is_uuid(trip["trip_id"])
    assert trip["end_time"] - trip["start_time"] == 12 * 60 * 1000 and trip["duration"] == 720
    assert isinstance(trip["distance"], int) and trip["distance"] > 1000  # Bellecour → Part-Dieu
    assert trip["currency"] == "EUR" and isinstance(trip["actual_cost"], int)
    check_gps(trip["start_location"], "trip start")
    check_gps(trip["end_location"], "trip end")

    # events and telemetry of the hour
    events = (await mds(city, "/events/historical", token, event_time=label))["events"]
    assert [e["event_types"] for e in events] == [["trip_start"], ["trip_end"]]
    for e in events:
        check_event(e, "event")
        assert e["trip_ids"] == [trip["trip_id"]] and e["device_id"] == ridden
    recent = await mds(
        city,
        "/events/recent",
        token,
        start_time=str(int((hour - timedelta(hours=1)).timestamp() * 1000)),
        end_time=str(int(now.timestamp() * 1000)),
    )
    assert recent["events"] == events
    telemetry = (await mds(city, "/telemetry", token, telemetry_time=label))["telemetry"]
    on_trip = [t for t in telemetry if t["trip_ids"]]
    assert [t["timestamp"] for t in on_trip] == [trip["start_time"], trip["end_time"]]
    assert {t["trip_ids"][0] for t in on_trip} == {trip["trip_id"]}
    # and the position the vehicle reported once docked, on no trip
    parked = [t for t in telemetry if t["trip_ids"] is None]
    assert [(t["device_id"], t["timestamp"]) for t in parked] == [(ridden, trip["end_time"])]
    for t in telemetry:
        check_telemetry(t, "telemetry")

    # near-realtime: vehicles/status and stops
    status = await mds(city, "/vehicles/status", token)
    assert is_ms(status["last_updated"]) and status["ttl"] == 15_000
    assert len(status["vehicles_status"]) == 16
    for s in status["vehicles_status"]:
        fields(s, VEHICLE_STATUS, "vehicle status")
        check_event(s["last_event"], "last_event")
        check_telemetry(s["last_telemetry"], "last_telemetry")
    mine = await mds(city, f"/vehicles/status/{ridden}", token)
    assert mine["vehicles_status"][0]["last_event"]["vehicle_state"] == "available"
    assert mine["vehicles_status"][0]["last_event"]["event_types"] == ["trip_end"]
    stops = await mds(city, "/stops", token)
    assert len(stops["stops"]) == 4 and is_ms(stops["last_updated"])
    for stop in stops["stops"]:
        fields(stop, STOP, "stop")
        fields(stop["status"], STOP_STATUS, "stop status")
        assert is_uuid(stop["stop_id"]) and is_ms(stop["last_updated"])
        check_gps(stop["location"], "stop")
        for counts in ("capacity", "num_vehicles_available", "num_vehicles_disabled"):
            assert set(stop[counts]) <= VEHICLE_TYPES
    part_dieu = next(s for s in stops["stops"] if s["name"] == "Part-Dieu")
    assert ridden in part_dieu["devices"] and part_dieu["status"]["is_renting"]
    assert part_dieu["num_vehicles_available"] == {"bicycle": 4}
    perrache = next(s for s in stops["stops"] if s["name"] == "Perrache")
    assert perrache["status"]["is_renting"] is False  # offline
    alone = await mds(city, f"/stops/{part_dieu['stop_id']}", token)
    assert alone["stops"] == [part_dieu]


async def test_hours_and_parameters(city: City) -> None:
    token = await issue(city)
    now = datetime.now(UTC)
    current = now.strftime("%Y-%m-%dT%H")
    before = (now - timedelta(days=30)).strftime("%Y-%m-%dT%H")
    for path, name in (
        ("/trips", "end_time"),
        ("/telemetry", "telemetry_time"),
        ("/events/historical", "event_time"),
    ):
        await mds(city, path, token, status=404, **{name: current})  # not over yet
        await mds(city, path, token, status=404, **{name: before})  # not operating yet
        missing = await mds(city, path, token, status=400)
        assert missing["errors"][0]["field"] == name
        await mds(city, path, token, status=400, **{name: "2026-13-01T07"})
        await mds(city, path, token, status=400, **{name: "2026-12-01"})
    old = str(int((now - timedelta(days=15)).timestamp() * 1000))
    fresh = str(int(now.timestamp() * 1000))
    await mds(city, "/events/recent", token, status=400, start_time=old, end_time=fresh)
    await mds(city, "/events/recent", token, status=400, start_time=fresh)
    await mds(city, "/stops/not-a-uuid", token, status=404)


async def test_gone_vehicles_in_status_and_events(city: City) -> None:
    token = await issue(city)
    now = datetime.now(UTC)
    async with city.maker() as session:
        gone = {
            v.serial_number: v
            for v in await session.scalars(
                select(Vehicle).where(Vehicle.serial_number.in_(["LYF003", "LYF004"]))
            )
        }
        gone["LYF003"].state = VehicleState.LOST_OR_STOLEN
        gone["LYF004"].state = VehicleState.DECOMMISSIONED
        session.add(
            VehicleDecommission(
                vehicle_id=gone["LYF004"].id,
                network_id=city.demo.network_id,
                reason=DecommissionReason.IRREPARABLE,
                currency="EUR",
                decommissioned_at=now - timedelta(minutes=5),
            )
        )
        await session.commit()
    status = (await mds(city, "/vehicles/status", token))["vehicles_status"]
    by_device = {s["device_id"]: s["last_event"] for s in status}
    listed = (await mds(city, "/vehicles", token, page_size=50))["vehicles"]
    vehicles = {v["vehicle_id"]: v["device_id"] for v in listed}
    assert vehicles["LYF003"] not in by_device  # missing, with no date on record: not shown
    removed = by_device[vehicles["LYF004"]]
    assert (removed["vehicle_state"], removed["event_types"]) == ("removed", ["decommissioned"])
    recent = await mds(
        city,
        "/events/recent",
        token,
        start_time=str(int((now - timedelta(hours=1)).timestamp() * 1000)),
        end_time=str(int(now.timestamp() * 1000) + 1),
    )
    assert [(e["device_id"], e["event_types"]) for e in recent["events"]] == [
        (vehicles["LYF004"], ["decommissioned"])
    ]
    for e in recent["events"]:
        check_event(e, "event")
