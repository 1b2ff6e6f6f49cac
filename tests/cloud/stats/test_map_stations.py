"""Seed 002 Overview, station by station: ``GET /v1/dashboard/overview/map/stations`` lists
every station of the networks with what the console's map draws, in keyset pages of up to
1,000, on SQLite and PostgreSQL, through HTTP.

"Mapville" (made here): cluster A holds S1 (online; spots: active with a vehicle, active
empty, maintenance with a vehicle) and S2 (decommissioned: not listed); cluster B holds S3
(no mainboard heard of: offline; one active empty spot) and ten bare stations. Alerts: a new
one on S1, an escalated one naming S1 and its spot (counted once), a resolved one on S1 (not
counted), a new one on S3's spot only (found through the spot).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import AlertSeverity, AlertState, AlertType
from kickstand.cloud.config import Settings
from kickstand.cloud.keyset import Keyset
from kickstand.cloud.models import (
    Cluster,
    Device,
    DeviceKind,
    Network,
    Spot,
    SpotState,
    Station,
    User,
    UserRole,
    Vehicle,
    VehicleState,
    VehicleType,
)
from kickstand.cloud.security import create_access_token, hash_password
from kickstand.cloud.stats import service
from tests.cloud.api.support import BOTH_DATABASES, Api

pytestmark = BOTH_DATABASES

JWT = "test-secret-" + "x" * 40
BARE = 10


@dataclass
class Mapville:
    headers: dict[str, str]
    network: int
    a: int
    b: int
    s1: int
    s3: int


async def build(api: Api) -> Mapville:
    now = datetime.now(UTC)
    async with api.sessionmaker() as session:
        net = Network(name="Mapville", currency="EUR", timezone="UTC")
        session.add(net)
        await session.flush()
        a = Cluster(network_id=net.id, name="A", latitude=45.0, longitude=4.0)
        b = Cluster(network_id=net.id, name="B", latitude=45.1, longitude=4.1)
        session.add_all([a, b])
        session.add(
            Device(
                device_id="st-map-1", kind=DeviceKind.STATION, online=True, last_seen_at=now,
                heartbeat_s=30,
            )
        )  # fmt: skip
        await session.flush()
        s1 = Station(cluster_id=a.id, device_id="st-map-1", name="S1")
        s2 = Station(cluster_id=a.id, device_id="st-map-2", name="S2", decommissioned_at=now)
        s3 = Station(cluster_id=b.id, device_id="st-map-3", name="S3")
        bare = [
            Station(cluster_id=b.id, device_id=f"st-map-b{i}", name=f"B{i}") for i in range(BARE)
        ]
        session.add_all([s1, s2, s3, *bare])
        await session.flush()
        spots = [
            Spot(station_id=s1.id, displayed_number=1, state=SpotState.ACTIVE),
            Spot(station_id=s1.id, displayed_number=2, state=SpotState.ACTIVE),
            Spot(station_id=s1.id, displayed_number=3, state=SpotState.MAINTENANCE),
            Spot(station_id=s2.id, displayed_number=1, state=SpotState.ACTIVE),
            Spot(station_id=s3.id, displayed_number=1, state=SpotState.ACTIVE),
        ]
        session.add_all(spots)
        await session.flush()
        for serial, spot in (("MAP001", spots[0]), ("MAP002", spots[2])):
            session.add(
                Vehicle(
                    serial_number=serial, vehicle_type=VehicleType.BIKE, network_id=net.id,
                    state=VehicleState.AVAILABLE, spot_id=spot.id,
                )
            )  # fmt: skip

        def alert(key: str, state: AlertState, **on: int) -> FleetAlert:
            return FleetAlert(
                network_id=net.id, alert_type=AlertType.UNEXPECTED_UNLOCK,
                severity=AlertSeverity.HIGH, state=state, cause_key=key, message="m", **on,
            )  # fmt: skip

        session.add_all(
            [
                alert("k1", AlertState.NEW, station_id=s1.id),
                alert("k2", AlertState.ESCALATED, station_id=s1.id, spot_id=spots[0].id),
                alert("k3", AlertState.RESOLVED, station_id=s1.id),
                alert("k4", AlertState.NEW, spot_id=spots[4].id),
            ]
        )
        admin = User(
            email="map-admin@example.com",
            password_hash=hash_password("not-used-1", demo=True),
            role=UserRole.ADMIN,
        )
        session.add(admin)
        await session.commit()
        token = create_access_token(
            Settings(JWT_SECRET=JWT), admin.id, admin.permissions, admin.token_generation
        )
        return Mapville({"Authorization": f"Bearer {token}"}, net.id, a.id, b.id, s1.id, s3.id)


async def _get(api: Api, headers: dict[str, str], query: str) -> Any:
    r = await api.client.get(f"/v1/dashboard/overview/map/stations?{query}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def test_every_station_with_what_the_map_draws(api: Api) -> None:
    m = await build(api)
    body = await _get(api, m.headers, f"networks={m.network}")
    assert body["code"] == 0 and body["next_primary_key"] is None
    rows = body["data"]
    assert [r["name"] for r in rows] == ["S1", "S3", *(f"B{i}" for i in range(BARE))]
    s1, s3 = rows[0], rows[1]
    assert s1 == {
        "station_id": m.s1, "name": "S1", "device_id": "st-map-1", "cluster_id": m.a,
        "cluster_name": "A", "network_id": m.network, "latitude": 45.0, "longitude": 4.0,
        "online": True, "maintenance": True, "open_alerts": 2, "spots": 3, "spots_active": 2,
        "spots_free": 1, "vehicles_available": 1,
    }  # fmt: skip
    assert s3 == {
        "station_id": m.s3, "name": "S3", "device_id": "st-map-3", "cluster_id": m.b,
        "cluster_name": "B", "network_id": m.network, "latitude": 45.1, "longitude": 4.1,
        "online": False, "maintenance": False, "open_alerts": 1, "spots": 1, "spots_active": 1,
        "spots_free": 1, "vehicles_available": 0,
    }  # fmt: skip
    bare = rows[2]
    assert (bare["spots"], bare["open_alerts"], bare["maintenance"]) == (0, 0, False)

    # Keyset pages: 10 then the rest, newest first when asked, the same stations.
    first = await _get(api, m.headers, f"networks={m.network}&page_size=10")
    assert len(first["data"]) == 10 and first["next_primary_key"] == first["data"][-1]["station_id"]
    rest = await _get(
        api,
        m.headers,
        f"networks={m.network}&page_size=10&last_primary_key={first['next_primary_key']}",
    )
    assert rest["next_primary_key"] is None
    assert first["data"] + rest["data"] == rows
    down = await _get(api, m.headers, f"networks={m.network}&primary_key_dir=DESC")
    assert down["data"] == rows[::-1]
    r = await api.client.get(
        f"/v1/dashboard/overview/map/stations?networks={m.network}&page_size=1001",
        headers=m.headers,
    )
    assert r.status_code == 422


async def test_another_networks_operator_gets_nothing_of_it(api: Api) -> None:
    m = await build(api)
    headers = await api.login("operator@example.com")
    r = await api.client.get(
        f"/v1/dashboard/overview/map/stations?networks={m.network}", headers=headers
    )
    assert r.status_code == 403 and r.json()["reason"] == "network-not-allowed"
    r = await api.client.get(
        f"/v1/dashboard/overview/map/stations?networks={api.demo.network_id},{m.network}",
        headers=headers,
    )
    assert r.status_code == 403 and r.json()["reason"] == "network-not-allowed"
    # Its own network's stations, none of Mapville's.
    own = await _get(api, headers, f"networks={api.demo.network_id}")
    assert own["data"] and {s["network_id"] for s in own["data"]} == {api.demo.network_id}
    rider = await api.login("alice@example.com")
    r = await api.client.get(
        f"/v1/dashboard/overview/map/stations?networks={m.network}", headers=rider
    )
    assert r.status_code == 403


async def test_three_statements_whatever_the_number_of_stations(api: Api) -> None:
    """The stations, their spots, their alerts: set-based, never one query per station."""
    m = await build(api)
    engine: AsyncEngine = api.sessionmaker.kw["bind"]
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        for page_size in (10, 1000):
            seen.clear()
            async with api.sessionmaker() as session:
                page, _ = await service.map_stations(
                    session, [m.network], Keyset(page_size, None, "ASC"), datetime.now(UTC)
                )
            assert len(page) == min(page_size, 2 + BARE)
            statements = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
            assert len(statements) == 3, statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
