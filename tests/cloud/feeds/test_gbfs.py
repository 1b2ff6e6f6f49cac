"""GBFS v3.0 feeds on the demo city (PostgreSQL): the official v3.0 JSON Schemas (as
shipped by the ``gbfs-validator`` package, pinned to MobilityData's gbfs-json-schema) over
every file of the served feed, the cross-file rules, honest availability, vehicle id
rotation after a ride, and the cache (ETag / 304, one build per ttl)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from gbfs_validator import GBFS
from gbfs_validator.constants.error_ids import ErrorIds
from gbfs_validator.fetch import Fetcher, FetchError
from sqlalchemy import update

from kickstand.cloud.feeds.cache import FeedCache
from kickstand.cloud.geofence.store import create_forbidden_zone
from kickstand.cloud.networks.models import NetworkOutOfOrder
from kickstand.cloud.operations.models import (
    Maintenance,
    MaintenanceSeverity,
    MaintenanceTarget,
    MaintenanceType,
)
from tests.cloud.feeds.conftest import BASE, SYSTEM, City, run_in_loop

pytestmark = pytest.mark.postgres

FILES = (
    "gbfs_versions",
    "system_information",
    "vehicle_types",
    "station_information",
    "station_status",
    "vehicle_status",
    "system_alerts",
    "system_regions",
    "system_pricing_plans",
    "geofencing_zones",
)


class AppFetcher(Fetcher):
    """The validator's fetcher, reading the app in-process (the test's loop serves it)."""

    def __init__(self, city: City, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.city = city
        self.loop = loop

    def _read(self, url: str) -> bytes:
        r = run_in_loop(self.loop, self.city.client.get(url))
        if r.status_code >= 400:
            raise FetchError(url, f"{url} returned HTTP {r.status_code}", ErrorIds.FETCH_BAD_STATUS)
        body: bytes = r.content
        return body


async def validate(city: City) -> dict[str, Any]:
    """The validator's report of the whole feed, docked and free-floating."""
    city.fresh()
    loop = asyncio.get_running_loop()
    checker = GBFS(
        SYSTEM + "gbfs.json",
        docked=True,
        freefloating=True,
        fetcher=AppFetcher(city, loop),
    )
    report: dict[str, Any] = await asyncio.to_thread(checker.validation)
    return report


def schema_errors(report: dict[str, Any]) -> list[str]:
    found = []
    for entry in report.get("files", []):
        if entry.get("required") and not entry.get("exists"):
            found.append(f"{entry['file']}: missing")
        # v3.0 has one language entry per file (the validator's shape for every version).
        for part in [entry, *entry.get("languages", [])]:
            for error in part.get("errors") or []:
                found.append(f"{entry['file']} {error.get('instancePath')} {error.get('message')}")
    return found


async def feeds(city: City) -> dict[str, Any]:
    city.fresh()
    return {name: (await city.get_json(SYSTEM + name + ".json"))["data"] for name in FILES}


def cross_file_errors(f: dict[str, Any]) -> list[str]:
    """GBFS's rules between files (the schemas check each file alone)."""
    errors: list[str] = []
    stations = {s["station_id"]: s for s in f["station_information"]["stations"]}
    status = {s["station_id"]: s for s in f["station_status"]["stations"]}
    types = {t["vehicle_type_id"] for t in f["vehicle_types"]["vehicle_types"]}
    plans = {p["plan_id"] for p in f["system_pricing_plans"]["plans"]}
    regions = {r["region_id"] for r in f["system_regions"]["regions"]}
    if set(status) != set(stations):
        errors.append(f"station_status ids {sorted(status)} != information {sorted(stations)}")
    for sid, s in stations.items():
        if s.get("region_id") is not None and s["region_id"] not in regions:
            errors.append(f"station {sid}: region {s['region_id']} not in system_regions")
    for t in f["vehicle_types"]["vehicle_types"]:
        for plan in [t.get("default_pricing_plan_id"), *t.get("pricing_plan_ids", [])]:
            if plan is not None and plan not in plans:
                errors.append(f"vehicle type {t['vehicle_type_id']}: unknown plan {plan}")
    offered: Counter[tuple[str, str]] = Counter()
    ids = [v["vehicle_id"] for v in f["vehicle_status"]["vehicles"]]
    if len(ids) != len(set(ids)):
        errors.append("vehicle_status: duplicate vehicle_id")
    for v in f["vehicle_status"]["vehicles"]:
        if v.get("vehicle_type_id") not in types:
            errors.append(f"vehicle {v['vehicle_id']}: unknown type {v.get('vehicle_type_id')}")
        if v.get("pricing_plan_id") is not None and v["pricing_plan_id"] not in plans:
            errors.append(f"vehicle {v['vehicle_id']}: unknown plan {v['pricing_plan_id']}")
        if "station_id" in v:
            if v["station_id"] not in stations:
                errors.append(f"vehicle {v['vehicle_id']}: unknown station {v['station_id']}")
            if not v["is_disabled"] and not v["is_reserved"]:
                offered[(v["station_id"], v["vehicle_type_id"])] += 1
    for sid, s in status.items():
        by_type = {e["vehicle_type_id"]: e["count"] for e in s.get("vehicle_types_available", [])}
        if set(by_type) - types:
            errors.append(f"station {sid}: unknown types {set(by_type) - types}")
        if sum(by_type.values()) != s["num_vehicles_available"]:
            errors.append(f"station {sid}: vehicle_types_available does not add up")
        for t in types:
            if by_type.get(t, 0) != offered[(sid, t)]:
                errors.append(f"station {sid}: {t} available {by_type.get(t, 0)} but "
                              f"vehicle_status offers {offered[(sid, t)]}")  # fmt: skip
        capacity = stations[sid].get("capacity")
        docks = s.get("num_docks_available", 0) + s.get("num_docks_disabled", 0)
        if capacity is not None and docks > capacity:
            errors.append(f"station {sid}: {docks} docks for a capacity of {capacity}")
        if not s["is_renting"] and s["num_vehicles_available"]:
            errors.append(f"station {sid}: not renting but offers vehicles")
    for alert in f["system_alerts"]["alerts"]:
        for sid in alert.get("station_ids", []):
            if sid not in stations:
                errors.append(f"alert {alert['alert_id']}: unknown station {sid}")
        for rid in alert.get("region_ids", []):
            if rid not in regions:
                errors.append(f"alert {alert['alert_id']}: unknown region {rid}")
    return errors


async def test_demo_city_passes_the_official_schemas_and_cross_file_rules(city: City) -> None:
    report = await validate(city)
    assert report["summary"]["version"]["validated"] == "3.0"
    assert schema_errors(report) == []
    assert not report["summary"]["hasErrors"], report["summary"]
    f = await feeds(city)
    assert cross_file_errors(f) == []
    assert len(f["station_information"]["stations"]) == 4
    assert len(f["system_regions"]["regions"]) == 4
    # 12 docked bikes and e-bikes, 4 free-floating kick-scooters.
    assert len(f["vehicle_status"]["vehicles"]) == 16
    manifest = await city.get_json("/gbfs/v3/manifest.json")
    assert manifest["data"]["datasets"] == [
        {"system_id": "kickstand-1", "versions": [{"version": "3.0", "url": SYSTEM + "gbfs.json"}]}
    ]
    assert manifest["version"] == "3.0"


async def test_an_offline_station_is_not_renting(city: City) -> None:
    f = await feeds(city)
    # Nothing of the seed has ever come online.
    assert {s["is_renting"] for s in f["station_status"]["stations"]} == {False}
    assert all(v["is_disabled"] for v in f["vehicle_status"]["vehicles"])
    offline = [a for a in f["system_alerts"]["alerts"] if a["type"] == "station_closure"]
    assert len(offline) == 4

    await city.station_online("st-0001")
    f = await feeds(city)
    sid = str(await city.station_id("st-0001"))
    status = {s["station_id"]: s for s in f["station_status"]["stations"]}
    assert status[sid]["is_renting"] and status[sid]["is_returning"]
    assert status[sid]["num_vehicles_available"] == 3  # two bikes and an e-bike
    assert status[sid]["num_docks_available"] == 3
    assert [s for k, s in status.items() if k != sid and s["is_renting"]] == []
    assert cross_file_errors(f) == []

    # Silent for more than three heartbeats: offline again, at read time.
    await city.station_online("st-0001", datetime.now(UTC) - timedelta(seconds=91))
    f = await feeds(city)
    status = {s["station_id"]: s for s in f["station_status"]["stations"]}
    assert not status[sid]["is_renting"] and status[sid]["num_vehicles_available"] == 0


async def test_after_a_ride_the_vehicle_id_is_rotated_and_the_feed_still_valid(city: City) -> None:
    await city.station_online("st-0001")
    await city.station_online("st-0003")
    before = {v["vehicle_id"] for v in (await feeds(city))["vehicle_status"]["vehicles"]}
    station1 = str(await city.station_id("st-0001"))
    at = datetime.now(UTC) - timedelta(minutes=5)
    await city.ride("LY0001", start=("st-0001", 1), end=None, at=at)
    riding = (await feeds(city))["vehicle_status"]["vehicles"]
    # On a trip: not published at all (neither its id nor a position).
    assert len(riding) == len(before) - 1
    assert {v["vehicle_id"] for v in riding} < before
    status = {s["station_id"]: s for s in (await feeds(city))["station_status"]["stations"]}
    assert status[station1]["num_docks_available"] == 4

    async with city.maker() as session:
        from kickstand.cloud import trips

        await trips.vehicle_docked(session, "st-0003", 4, "LY0001", at + timedelta(minutes=4))
        await session.commit()
    after = (await feeds(city))["vehicle_status"]["vehicles"]
    ids = {v["vehicle_id"] for v in after}
    assert len(ids) == len(before)
    new = ids - before
    # The ridden vehicle is back under an id never seen before; the others kept theirs.
    assert len(new) == 1 and ids - new < before
    back = next(v for v in after if v["vehicle_id"] in new)
    assert back["station_id"] == str(await city.station_id("st-0003"))
    assert back["is_disabled"] is False

    report = await validate(city)
    assert schema_errors(report) == []
    assert cross_file_errors(await feeds(city)) == []


async def test_alerts_zones_and_closures(city: City) -> None:
    now = datetime.now(UTC)
    station = await city.station_id("st-0002")
    async with city.maker() as session:
        session.add(
            NetworkOutOfOrder(
                network_id=city.demo.network_id,
                type="winter",
                reason="Winter break",
                start_date=now - timedelta(hours=1),
                end_date=now + timedelta(days=3),
            )
        )
        session.add(
            MaintenanceType(
                key="feeds-test-station",
                target_type=MaintenanceTarget.STATION,
                severity=MaintenanceSeverity.HIGH,
            )
        )
        await session.flush()
        session.add(
            Maintenance(
                type_key="feeds-test-station",
                target_type=MaintenanceTarget.STATION,
                network_id=city.demo.network_id,
                station_id=station,
                severity=MaintenanceSeverity.HIGH,
                comment="Dock 3 jammed",
            )
        )
        await create_forbidden_zone(
            session,
            city.demo.network_id,
            {
                "type": "Polygon",
                "coordinates": [
                    [[4.83, 45.75], [4.84, 45.75], [4.84, 45.76], [4.83, 45.76], [4.83, 45.75]]
                ],
            },
            "Place Bellecour",
        )
        await session.commit()
    await city.station_online("st-0002")
    f = await feeds(city)
    kinds = Counter(a["type"] for a in f["system_alerts"]["alerts"])
    assert kinds == {"system_closure": 1, "station_closure": 4}  # 3 offline + 1 maintenance
    closure = next(a for a in f["system_alerts"]["alerts"] if a["type"] == "system_closure")
    assert closure["description"][0]["text"] == "Winter break" and "end" in closure["times"][0]
    # Out of order: nothing rents, nothing is offered.
    assert {s["is_renting"] for s in f["station_status"]["stations"]} == {False}
    zones = f["geofencing_zones"]["geofencing_zones"]["features"]
    assert zones[0]["properties"]["name"][0]["text"] == "Place Bellecour"
    assert zones[0]["properties"]["rules"][0]["ride_end_allowed"] is False
    assert zones[-1]["properties"]["rules"][0]["ride_end_allowed"] is True  # the border
    assert cross_file_errors(f) == []
    report = await validate(city)
    assert schema_errors(report) == []


async def test_etag_revalidation_and_one_build_per_ttl(city: City) -> None:
    clock = [1000.0]
    cache = city.app.state.feed_cache = FeedCache(clock=lambda: clock[0])
    url = SYSTEM + "station_status.json"
    first = await city.client.get(url)
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert first.headers["access-control-allow-origin"] == "*"
    assert first.headers["cache-control"] == "public, max-age=15" and first.json()["ttl"] == 15
    answers = await asyncio.gather(
        *(city.client.get(url, headers={"If-None-Match": etag}) for _ in range(50))
    )
    assert {a.status_code for a in answers} == {304}
    assert {a.content for a in answers} == {b""}
    assert cache.builds == 1  # 51 requests, one build
    clock[0] += 10
    other = await city.client.get(url, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.headers["etag"] == etag
    assert other.headers["cache-control"] == "public, max-age=5"

    # Expired, rebuilt with the same data: the document (ETag, last_updated) is kept.
    clock[0] += 10
    again = await city.client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and cache.builds == 2 and cache.unchanged == 1
    # Changed data, once the ttl is over: a new document.
    await city.station_online("st-0004")
    assert (await city.client.get(url, headers={"If-None-Match": etag})).status_code == 304
    clock[0] += 16
    changed = await city.client.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert changed.json()["last_updated"] >= first.json()["last_updated"]

    preflight = await city.client.options(url, headers={"Origin": "https://map.example"})
    assert preflight.status_code == 204
    assert "If-None-Match" in preflight.headers["access-control-allow-headers"]


async def test_unknown_private_and_closed_systems_are_404(city: City) -> None:
    for path in ("kickstand-99/gbfs.json", "kickstand-1/nope.json", "lyon/gbfs.json"):
        r = await city.client.get(f"{BASE}/gbfs/v3/{path}")
        assert r.status_code == 404, path
        assert r.json()["code"] == 10
    async with city.maker() as session:
        from kickstand.cloud.models import Network

        await session.execute(update(Network).values(is_public=False))
        await session.commit()
    city.fresh()
    assert (await city.client.get(SYSTEM + "gbfs.json")).status_code == 404
    manifest = await city.get_json("/gbfs/v3/manifest.json")
    assert manifest["data"]["datasets"] == []


async def test_several_networks_on_one_installation(city: City) -> None:
    async with city.maker() as session:
        from kickstand.cloud.models import Network

        other = Network(name="Villeurbanne", currency="EUR", timezone="Europe/Paris")
        private = Network(name="Depot", currency="EUR", timezone="Europe/Paris", is_public=False)
        session.add_all([other, private])
        await session.commit()
    manifest = await city.get_json("/gbfs/v3/manifest.json")
    systems = [d["system_id"] for d in manifest["data"]["datasets"]]
    assert systems == ["kickstand-1", f"kickstand-{other.id}"]
    base = f"{BASE}/gbfs/v3/kickstand-{other.id}/"
    info = await city.get_json(base + "system_information.json")
    assert info["data"]["name"][0]["text"] == "Villeurbanne"
    assert info["data"]["manifest_url"] == f"{BASE}/gbfs/v3/manifest.json"
    assert (await city.get_json(base + "station_status.json"))["data"]["stations"] == []
    assert (await city.get_json(base + "vehicle_types.json"))["data"]["vehicle_types"]
    assert (
        await city.client.get(f"{BASE}/gbfs/v3/kickstand-{private.id}/gbfs.json")
    ).status_code == 404
