"""Operator geofencing routes and rider zone/vehicle routes (SQLite copy of the seeded
template; the PostgreSQL path is exercised by the ride tests), and the index cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.api import create_app
from kickstand.cloud.config import Settings
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.freefloat import VehicleCodeError, normalise_serial, serial_from_qr
from kickstand.cloud.geofence import store as zones
from kickstand.cloud.models import OutboxEvent, User
from kickstand.cloud.security import create_access_token
from kickstand.cloud.seed import DemoRefs, seed_demo
from tests.cloud.freefloat.conftest import box


@dataclass
class Ops:
    client: httpx.AsyncClient
    maker: async_sessionmaker[AsyncSession]
    refs: DemoRefs
    settings: Settings

    async def headers(self, email: str = "operator@example.com") -> dict[str, str]:
        async with self.maker() as s:
            user = await s.get_one(User, self.refs.user_ids[email])
            token = create_access_token(
                self.settings, user.id, user.permissions, user.token_generation
            )
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def ops(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Ops]:
    settings = Settings(
        DATABASE_URL=sqlite_url, VAR_DIR=tmp_path / "var", JWT_SECRET="test-secret-" + "x" * 40
    )
    engine = create_engine(sqlite_url)
    maker = create_sessionmaker(engine)
    async with maker() as s:
        refs = await seed_demo(s)
        await s.commit()
    app = create_app(settings, engine=engine)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kickstand.test") as client:
        yield Ops(client, maker, refs, settings)
    await engine.dispose()


async def test_speed_zone_crud_and_validation_envelope(ops: Ops) -> None:
    h = await ops.headers()
    nid = ops.refs.network_id
    r = await ops.client.post(
        "/v1/dashboard/geofencing/speed-zones",
        json={"network_id": nid, "shape": box(4.8430, 4.8450), "max_speed": 12},
        headers=h,
    )
    assert r.status_code == 201, r.text
    zone = r.json()["data"]
    assert zone["max_speed"] == 12 and zone["shape"]["type"] == "Polygon"
    zid = zone["speed_zone_id"]

    # the library's limits, named by field
    r = await ops.client.post(
        "/v1/dashboard/geofencing/speed-zones",
        json={"network_id": nid, "shape": box(4.8430, 4.8450), "max_speed": 40},
        headers=h,
    )
    assert r.status_code == 422
    body = r.json()
    assert body["code"] != 0 and body["errors"][0]["field"] == "max_speed"
    # [lat, lon] swapped positions
    swapped = [[lat, lon] for lon, lat in box(4.8430, 4.8450)]
    r = await ops.client.post(
        "/v1/dashboard/geofencing/speed-zones",
        json={"network_id": nid, "shape": swapped, "max_speed": 10},
        headers=h,
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "shape"
    assert r.json()["reason"] == "coordinate-order"
    # a bow-tie (self-intersecting) polygon
    bowtie = [[4.84, 45.75], [4.85, 45.76], [4.85, 45.75], [4.84, 45.76]]
    r = await ops.client.post(
        "/v1/dashboard/geofencing/speed-zones",
        json={"network_id": nid, "shape": bowtie, "max_speed": 10},
        headers=h,
    )
    assert r.status_code == 422 and r.json()["reason"] == "self-intersection"
    # outside the Lyon border
    r = await ops.client.post(
        "/v1/dashboard/geofencing/speed-zones",
        json={"network_id": nid, "shape": box(2.30, 2.31, 48.85, 48.86), "max_speed": 10},
        headers=h,
    )
    assert r.status_code == 422 and r.json()["reason"] == "zone-outside-border"

    r = await ops.client.patch(
        f"/v1/dashboard/geofencing/speed-zones/{zid}", json={"max_speed": 8}, headers=h
    )
    assert r.status_code == 200 and r.json()["data"]["max_speed"] == 8
    r = await ops.client.get(
        "/v1/dashboard/geofencing/speed-zones", params={"network_id": nid}, headers=h
    )
    assert [z["speed_zone_id"] for z in r.json()["data"]] == [zid]
    r = await ops.client.delete(f"/v1/dashboard/geofencing/speed-zones/{zid}", headers=h)
    assert r.status_code == 200 and r.json() == {"code": 0}
    r = await ops.client.get(
        "/v1/dashboard/geofencing/speed-zones", params={"network_id": nid}, headers=h
    )
    assert r.json()["data"] == []
    r = await ops.client.delete(f"/v1/dashboard/geofencing/speed-zones/{zid}", headers=h)
    assert r.status_code == 404

    async with ops.maker() as s:
        topics = (
            await s.scalars(
                select(OutboxEvent.topic)
                .where(OutboxEvent.resource_type == "zone")
                .order_by(OutboxEvent.id)
            )
        ).all()
    assert list(topics) == ["zone.created", "zone.updated", "zone.deleted"]


async def test_parkings_forbidden_zones_border_and_feature_collection(ops: Ops) -> None:
    h = await ops.headers()
    nid = ops.refs.network_id
    cluster = ops.refs.cluster_ids["Bellecour"]
    r = await ops.client.post(
        "/v1/dashboard/geofencing/virtual-parkings",
        json={
            "network_id": nid,
            "shape": box(4.8470, 4.8490),
            "capacity": 6,
            "cluster_id": cluster,
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    pid = r.json()["data"]["virtual_parking_id"]
    r = await ops.client.post(
        "/v1/dashboard/geofencing/virtual-parkings",
        json={"network_id": nid, "shape": box(4.8470, 4.8490), "capacity": -1},
        headers=h,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "capacity"
    r = await ops.client.put(
        f"/v1/dashboard/geofencing/virtual-parkings/{pid}",
        json={"shape": box(4.8471, 4.8491), "capacity": 4},
        headers=h,
    )
    assert r.status_code == 200 and r.json()["data"]["capacity"] == 4
    geo = {"type": "Polygon", "coordinates": [[*box(4.8510, 4.8530), [4.8510, 45.7585]]]}
    r = await ops.client.post(
        "/v1/dashboard/geofencing/forbidden-zones",
        json={"network_id": nid, "shape": geo, "name": "works"},
        headers=h,
    )
    assert r.status_code == 201, r.text

    # a new border that would leave the parking outside is refused
    r = await ops.client.put(
        "/v1/dashboard/geofencing/border/shape",
        json={"network_id": nid, "shape": box(4.80, 4.84, 45.74, 45.78)},
        headers=h,
    )
    assert r.status_code == 422 and r.json()["reason"] == "zone-outside-border"
    r = await ops.client.put(
        "/v1/dashboard/geofencing/border/settings",
        json={
            "network_id": nid,
            "trigger_alert": True,
            "notify_user": False,
            "reduce_vehicle_speed": True,
            "play_vehicle_sound": False,
            "lock_vehicle": False,
            "outside_return_policy": "sometimes",
        },
        headers=h,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "outside_return_policy"
    settings = {
        "network_id": nid,
        "trigger_alert": True,
        "notify_user": False,
        "reduce_vehicle_speed": True,
        "play_vehicle_sound": False,
        "lock_vehicle": False,
        "outside_return_policy": "alert",
    }
    r = await ops.client.put("/v1/dashboard/geofencing/border/settings", json=settings, headers=h)
    assert r.status_code == 200, r.text
    r = await ops.client.get(
        "/v1/dashboard/geofencing/border", params={"network_id": nid}, headers=h
    )
    border = r.json()["data"]
    assert border["reduce_vehicle_speed"] is True and border["notify_user"] is False
    assert border["outside_return_policy"] == "alert" and border["shape"]["type"] == "Polygon"

    r = await ops.client.get(
        "/v1/dashboard/geofencing/zones", params={"network_id": nid}, headers=h
    )
    fc = r.json()["data"]
    kinds = [f["properties"]["zone_type"] for f in fc["features"]]
    assert kinds == ["border", "virtual_parking", "forbidden_zone"]
    assert fc["features"][0]["properties"]["outside_return_policy"] == "alert"

    # riders see parkings (seed 001 list-of-points shape) and zones, not the operator routes
    rider = await ops.headers("alice@example.com")
    r = await ops.client.get("/v1/freefloat/zones", params={"network_id": nid}, headers=rider)
    data = r.json()["data"]
    assert data["parkings"][0]["virtual_parking_id"] == pid
    assert data["parkings"][0]["shape"] == box(4.8471, 4.8491)
    assert data["forbidden_zones"][0]["name"] == "works"
    r = await ops.client.get(
        "/v1/dashboard/geofencing/border", params={"network_id": nid}, headers=rider
    )
    assert r.status_code == 403 and r.json()["reason"] == "not-an-operator"


async def test_rider_vehicle_by_serial_and_bad_codes(ops: Ops) -> None:
    rider = await ops.headers("alice@example.com")
    r = await ops.client.get("/v1/freefloat/vehicles/lyf003", headers=rider)
    assert r.status_code == 200, r.text
    v = r.json()["data"]
    assert v["serial_number"] == "LYF003" and v["state"] == "available"
    assert v["battery_level"] == 75 and v["connected"] is False
    assert (v["latitude"], v["longitude"]) == (45.7648, 4.8501)
    r = await ops.client.get("/v1/freefloat/vehicles/NOPE99", headers=rider)
    assert r.status_code == 404
    r = await ops.client.post(
        "/v1/freefloat/unlock",
        json={"qr_code": "https://example.com/nothing/here/"},
        headers={**rider, "Idempotency-Key": "bad-qr-0001"},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "qr_code"
    r = await ops.client.post(
        "/v1/freefloat/unlock",
        json={"serial_number": "LYF001", "qr_code": "LYF001"},
        headers={**rider, "Idempotency-Key": "bad-qr-0002"},
    )
    assert r.status_code == 422


def test_qr_codes_and_serials() -> None:
    assert serial_from_qr("LYF001") == "LYF001"
    assert serial_from_qr(" lyf001 ") == "LYF001"
    assert serial_from_qr("https://kickstand.app/v/LYF001") == "LYF001"
    assert serial_from_qr("https://kickstand.app/v/LYF001/") == "LYF001"
    assert serial_from_qr("https://kickstand.app/unlock?serial_number=ab12cd") == "AB12CD"
    assert serial_from_qr("kickstand:vehicle/BK123456") == "BK123456"
    for bad in ("", "   ", "https://kickstand.app/", "x" * 600, "LY-001", None, 42):
        with pytest.raises(VehicleCodeError):
            serial_from_qr(bad)
    with pytest.raises(VehicleCodeError) as err:
        normalise_serial("ABC")
    assert err.value.field == "serial_number"


async def test_cache_rebuilds_only_when_zones_change(ops: Ops) -> None:
    cache = zones.GeofenceCache(recheck_s=0)
    nid = ops.refs.network_id
    async with ops.maker() as s:
        first = await cache.index(s, nid)
        assert await cache.index(s, nid) is first and cache.builds == 1
        assert first.check(4.8480, 45.7593).virtual_parking_id is None
    async with ops.maker() as s, s.begin():
        await zones.create_virtual_parking(s, nid, box(4.8470, 4.8490), 5)
    async with ops.maker() as s:
        second = await cache.index(s, nid)
    assert second is not first and cache.builds == 2
    assert second.check(4.8480, 45.7593).virtual_parking_id is not None
    # a cache that only rechecks every minute keeps serving the index it has
    lazy = zones.GeofenceCache(recheck_s=60)
    async with ops.maker() as s:
        kept = await lazy.index(s, nid)
    async with ops.maker() as s, s.begin():
        await zones.create_forbidden_zone(s, nid, box(4.8510, 4.8530), "x")
    async with ops.maker() as s:
        assert await lazy.index(s, nid) is kept
        lazy.invalidate(nid)
        assert await lazy.index(s, nid) is not kept


async def test_seed_zones_are_idempotent(ops: Ops) -> None:
    async with ops.maker() as s, s.begin():
        assert await zones.seed_zones(s, ops.refs.network_id) == 6
        assert await zones.seed_zones(s, ops.refs.network_id) == 0
    async with ops.maker() as s:
        loaded = await zones.load_zones(s, ops.refs.network_id)
    assert len(loaded.speed_zones) == 1 and len(loaded.virtual_parkings) == 4
    assert len(loaded.forbidden_zones) == 1 and loaded.border is not None


async def test_rider_map_carries_parkings_and_speed_zones(ops: Ops) -> None:
    async with ops.maker() as s, s.begin():
        await zones.seed_zones(s, ops.refs.network_id)
    rider = await ops.headers("alice@example.com")
    r = await ops.client.get(
        "/v1/map",
        params={"lat": 45.76, "lng": 4.84, "latdeg": 0.1, "lngdeg": 0.1},
        headers=rider,
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert len(data["parkings"]) == 4 and len(data["speed_zones"]) == 1
    assert data["speed_zones"][0]["max_speed"] == 10
    assert data["parkings"][0]["shape"][0] == [4.8335, 45.7615]
    scooters = {v["serial_number"]: v for v in data["vehicles"]}
    assert scooters["LYF001"]["battery_level"] == 75 and scooters["LYF001"]["state"] == "available"
