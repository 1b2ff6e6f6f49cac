"""Seed 002 UsageStats and Overview on a hand-made data set whose answers are worked out
by hand below, on SQLite and PostgreSQL, through HTTP.

Usage network "Statsville" (Europe/Paris; DST starts 2026-03-29 01:00 UTC: 02:00 → 03:00).
Period 2026-03-28 … 2026-03-30 (local days). Clusters A (48.00, 2.00), B (48.01, 2.00).

| trip | started UTC | local           | dow | s    | start→end          | m       | cost | user |
| T7   | 03-27 22:30 | 03-27 23:30 Fri | out | 60   |                    |         | 1    | U2   |
| T1   | 03-27 23:30 | 03-28 00:30 Sat | 6   | 600  | A(48,2)→A(48,2)    | 0       | 1.50 | U1   |
| T2   | 03-29 00:30 | 03-29 01:30 Sun | 0   | 1800 | A→(48.01,2)        | 1111.95 | 0    | U2   |
| T3   | 03-29 01:30 | 03-29 03:30 Sun | 0   | 4000 | B(48.05,2)→A(48,2) | 5559.75 | 2.00 | U1   |
| T4   | 03-30 21:30 | 03-30 23:30 Mon | 1   | runs | A→?                |         |      | U3   |
| T5   | 03-30 22:30 | 03-31 00:30 Tue | out | 60   |                    |         | 1    | U1   |
| T6   | 03-29 10:00 cancelled (never counted)                                     | U1   |

U3 is a member of organization O1; U2 of O2 (who also rides elsewhere only through T7) and
of Otherville's O4.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.access.models import Organization, OrganizationalUnit, UserOrganization
from kickstand.cloud.config import Settings
from kickstand.cloud.models import (
    Cluster,
    Device,
    DeviceKind,
    Network,
    Spot,
    SpotState,
    Station,
    Trip,
    TripStatus,
    User,
    UserRole,
    Vehicle,
    VehicleState,
    VehicleType,
)
from kickstand.cloud.security import create_access_token, hash_password
from kickstand.cloud.seed import operator_permissions
from kickstand.cloud.stats import rollup
from kickstand.cloud.stats import service as stats_service
from kickstand.cloud.stats.service import local_midnight, zone
from tests.cloud.api.support import BOTH_DATABASES, Api

pytestmark = BOTH_DATABASES

JWT = "test-secret-" + "x" * 40
DAY = "start_date=2026-03-28&end_date=2026-03-30&timezone=Europe/Paris"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass
class World:
    headers: dict[str, str]
    usage: int
    live: int
    other: int
    cluster_a: int
    cluster_b: int
    o1: int
    o2: int
    o4: int
    u2: int


async def _user(session: AsyncSession, email: str, role: UserRole = UserRole.RIDER) -> User:
    user = User(email=email, password_hash=hash_password("not-used-1", demo=True), role=role)
    session.add(user)
    await session.flush()
    return user


def _vehicle(network: Network, serial: str, **kw: Any) -> Vehicle:
    return Vehicle(
        serial_number=serial,
        vehicle_type=kw.pop("vehicle_type", VehicleType.BIKE),
        network_id=network.id,
        state=kw.pop("state", VehicleState.AVAILABLE),
        **kw,
    )


async def build(api: Api) -> World:
    async with api.sessionmaker() as session:
        usage = Network(name="Statsville", currency="EUR", timezone="Europe/Paris")
        live = Network(name="Liveville", currency="EUR", timezone="UTC", min_battery_to_rent=10)
        other = Network(name="Otherville", currency="EUR", timezone="UTC")
        session.add_all([usage, live, other])
        await session.flush()
        a = Cluster(network_id=usage.id, name="A", latitude=48.0, longitude=2.0)
        b = Cluster(network_id=usage.id, name="B", latitude=48.05, longitude=2.0)
        elsewhere = Cluster(network_id=other.id, name="X", latitude=10.0, longitude=10.0)
        session.add_all([a, b, elsewhere])
        await session.flush()
        u1, u2, u3 = [await _user(session, f"stats-u{i}@example.com") for i in (1, 2, 3)]
        admin = await _user(session, "stats-admin@example.com", UserRole.ADMIN)
        o1 = Organization(third_party_id=1, name="Org One", network_id=usage.id)
        o2 = Organization(third_party_id=2, name="Org Two", network_id=usage.id)
        # Its member never rode here.
        o3 = Organization(third_party_id=3, name="Org Three", network_id=usage.id)
        # Otherville's: U2 rides here too, but Statsville's figures never name it.
        o4 = Organization(third_party_id=4, name="Org Four", network_id=other.id)
        session.add_all([o1, o2, o3, o4])
        await session.flush()
        u4 = await _user(session, "stats-u4@example.com")
        session.add_all(
            [
                UserOrganization(user_id=u3.id, organization_id=o1.id),
                UserOrganization(user_id=u2.id, organization_id=o2.id),
                UserOrganization(user_id=u4.id, organization_id=o3.id),
                UserOrganization(user_id=u2.id, organization_id=o4.id),
            ]
        )
        v1, v2, v3, v4 = [_vehicle(usage, f"ST{i:04d}") for i in (1, 2, 3, 4)]
        v9 = _vehicle(other, "ST0009")
        session.add_all([v1, v2, v3, v4, v9])
        await session.flush()

        def trip(vehicle: Vehicle, user: User, start: str, **kw: Any) -> Trip:
            started = utc(start)
            seconds = kw.pop("seconds", None)
            finished = seconds is not None
            return Trip(
                vehicle_id=vehicle.id,
                network_id=kw.pop("network_id", usage.id),
                user_id=user.id,
                status=kw.pop("status", TripStatus.FINISHED if finished else TripStatus.RUNNING),
                started_at=started,
                ended_at=started + timedelta(seconds=seconds) if finished else None,
                currency="EUR",
                **kw,
            )

        session.add_all(
            [
                trip(v2, u2, "2026-03-27T22:30", seconds=60, cost=Decimal(1)),  # T7
                trip(
                    v1, u1, "2026-03-27T23:30", seconds=600, cost=Decimal("1.50"),
                    start_cluster_id=a.id, end_cluster_id=a.id,
                    start_latitude=48.0, start_longitude=2.0,
                    end_latitude=48.0, end_longitude=2.0,
                ),  # T1
                trip(
                    v2, u2, "2026-03-29T00:30", seconds=1800, cost=Decimal(0),
                    start_cluster_id=a.id, end_cluster_id=b.id,
                    start_latitude=48.0, start_longitude=2.0,
                    end_latitude=48.01, end_longitude=2.0,
                ),  # T2
                trip(
                    v1, u1, "2026-03-29T01:30", seconds=4000, cost=Decimal("2.00"),
                    start_cluster_id=b.id, end_cluster_id=a.id,
                    start_latitude=48.05, start_longitude=2.0,
                    end_latitude=48.0, end_longitude=2.0,
                ),  # T3
                trip(
                    v3, u3, "2026-03-30T21:30", start_cluster_id=a.id,
                    start_latitude=48.0, start_longitude=2.0,
                ),  # T4, running
                trip(v4, u1, "2026-03-30T22:30", seconds=60, cost=Decimal(1)),  # T5
                trip(v1, u1, "2026-03-29T10:00", status=TripStatus.CANCELLED),  # T6
                # Another network's trip, in the period, never counted for Statsville.
                trip(v9, u4, "2026-03-29T12:00", seconds=60, network_id=other.id),
            ]
        )  # fmt: skip
        await session.commit()
        # Written here, not ended by the engine: the rollup loads them as migration 0019's
        # backfill does (the figures in Europe/Paris, Statsville's zone, read it).
        await (await session.connection()).run_sync(rollup.rebuild)
        await session.commit()
        token = create_access_token(
            Settings(JWT_SECRET=JWT), admin.id, admin.permissions, admin.token_generation
        )
        return World(
            {"Authorization": f"Bearer {token}"},
            usage.id,
            live.id,
            other.id,
            a.id,
            b.id,
            o1.id,
            o2.id,
            o4.id,
            u2.id,
        )


async def get(api: Api, world: World, path: str, query: str) -> Any:
    r = await api.client.get(f"/v1/dashboard/{path}?{query}", headers=world.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["code"] == 0
    return body["data"]


async def test_usage_by_day_week_month_quarter(api: Api) -> None:
    w = await build(api)
    q = f"networks={w.usage}&{DAY}"
    assert await get(api, w, "usage-stats", q) == [
        {"period": "day", "date": "2026-03-28", "trips": 1, "users": 1},
        {"period": "day", "date": "2026-03-29", "trips": 2, "users": 2},
        {"period": "day", "date": "2026-03-30", "trips": 1, "users": 1},
    ]
    weeks = await get(
        api, w, "usage-stats",
        f"networks={w.usage}&start_date=2026-03-01&end_date=2026-04-30&timezone=Europe/Paris",
    )  # fmt: skip
    # Mondays from the week holding March 1st (a Sunday) to the one holding April 30th.
    assert [p["date"] for p in weeks] == [
        "2026-02-23", "2026-03-02", "2026-03-09", "2026-03-16", "2026-03-23",
        "2026-03-30", "2026-04-06", "2026-04-13", "2026-04-20", "2026-04-27",
    ]  # fmt: skip
    busy = {p["date"]: (p["trips"], p["users"]) for p in weeks if p["trips"]}
    assert busy == {"2026-03-23": (4, 2), "2026-03-30": (2, 2)}  # T7 T1 T2 T3 | T4 T5
    months = await get(
        api, w, "usage-stats",
        f"networks={w.usage}&start_date=2026-01-01&end_date=2026-12-31&timezone=Europe/Paris",
    )  # fmt: skip
    assert len(months) == 12 and {p["period"] for p in months} == {"month"}
    assert [(p["date"], p["trips"], p["users"]) for p in months if p["trips"]] == [
        ("2026-03-01", 6, 3)
    ]
    quarters = await get(
        api, w, "usage-stats",
        f"networks={w.usage}&start_date=2024-01-01&end_date=2026-12-31&timezone=Europe/Paris",
    )  # fmt: skip
    assert len(quarters) == 12
    assert [(p["date"], p["trips"]) for p in quarters if p["trips"]] == [("2026-01-01", 6)]
    # In UTC, T1 (23:30 UTC on the 27th) leaves the period and T5 (22:30 on the 30th) joins.
    utc_days = await get(
        api, w, "usage-stats",
        f"networks={w.usage}&start_date=2026-03-28&end_date=2026-03-30&timezone=UTC",
    )  # fmt: skip
    assert [p["trips"] for p in utc_days] == [0, 2, 2]


async def test_summary(api: Api) -> None:
    w = await build(api)
    s = await get(api, w, "usage-stats/summary", f"networks={w.usage}&{DAY}")
    assert (s["trips"], s["users"], s["vehicles"]) == (4, 3, 3)  # T1 T2 T3 T4
    assert s["duration"] == {
        "count": 3,
        "total": pytest.approx(6400),
        "average": pytest.approx(6400 / 3),
        # Bucket-accurate from the rollup (the middle of its 1 min bucket), exact from trips.
        "median": pytest.approx(1800, abs=30),
        "max": pytest.approx(4000),
    }
    d = s["distance"]
    assert d["count"] == 3  # T4 has no end position
    assert d["total"] == pytest.approx(1111.95 + 5559.75, abs=0.5)
    assert d["median"] == pytest.approx(1111.95, abs=50)  # its 100 m bucket
    assert d["max"] == pytest.approx(5559.75, abs=0.1)
    empty = await get(
        api, w, "usage-stats/summary",
        f"networks={w.usage}&start_date=2025-01-01&end_date=2025-01-02&timezone=UTC",
    )  # fmt: skip
    assert empty["trips"] == 0 and empty["duration"]["median"] is None


async def test_by_dow_and_time_of_day(api: Api) -> None:
    w = await build(api)
    dow = await get(api, w, "usage-stats/trips-by-dow", f"networks={w.usage}&{DAY}")
    assert {d["dow"]: d["trips"] for d in dow} == {0: 2, 1: 1, 2: 0, 3: 0, 4: 0, 5: 0, 6: 1}
    hours = await get(api, w, "usage-stats/trips-by-time-of-day", f"networks={w.usage}&{DAY}")
    assert len(hours) == 24
    # T3 starts at 01:30 UTC, 03:30 in Paris after the change (02:xx does not exist that day).
    assert {h["hour"]: h["trips"] for h in hours if h["trips"]} == {0: 1, 1: 1, 3: 1, 23: 1}


async def test_distance_and_duration_distribution(api: Api) -> None:
    w = await build(api)
    q = f"networks={w.usage}&{DAY}"
    distance = await get(api, w, "usage-stats/distance-distribution", q)
    assert len(distance) == 7 * 2
    assert {(r["min"], r["payment_mode"]): r["trips"] for r in distance if r["trips"]} == {
        (0, "paid"): 1,  # T1, 0 m
        (1000, "free"): 1,  # T2, 1,112 m
        (5000, "paid"): 1,  # T3, 5,560 m
    }
    assert distance[-1]["max"] is None and distance[0]["max"] == 500
    duration = await get(api, w, "usage-stats/duration-distribution", q)
    assert {(r["min"], r["payment_mode"]): r["trips"] for r in duration if r["trips"]} == {
        (600, "paid"): 1,  # T1, 600 s: [600, 900)
        (1800, "free"): 1,  # T2
        (3600, "paid"): 1,  # T3, 4,000 s
    }


async def test_station_distribution_and_organizations(api: Api) -> None:
    w = await build(api)
    rows = await get(api, w, "usage-stats/station-distribution", f"networks={w.usage}&{DAY}")
    assert [(r["cluster_id"], r["started"], r["ended"]) for r in rows] == [
        (w.cluster_a, 3, 2),  # started T1 T2 T4, ended T1 T3
        (w.cluster_b, 1, 1),  # started T3, ended T2
    ]
    only_o1 = await get(api, w, "usage-stats", f"networks={w.usage}&{DAY}&organizations={w.o1}")
    assert [p["trips"] for p in only_o1] == [0, 0, 1]  # T4 (U3)
    none = await get(api, w, "usage-stats", f"networks={w.usage}&{DAY}&organizations=null")
    assert [p["trips"] for p in none] == [1, 1, 0]  # T1, T3 (U1); T2 is U2's (O2)
    both = await get(
        api, w, "usage-stats/summary", f"networks={w.usage}&{DAY}&organizations=null,{w.o2}"
    )
    assert both["trips"] == 3  # T1 T2 T3
    orgs = await get(api, w, "usage-stats/organizations", f"networks={w.usage}")
    assert orgs == [
        {"id": w.o1, "name": "Org One", "users": 1},
        {"id": w.o2, "name": "Org Two", "users": 1},
    ]


async def test_bad_periods_are_422(api: Api) -> None:
    w = await build(api)
    for query, field in [
        ("start_date=2026-03-30&end_date=2026-03-28&timezone=UTC", "end_date"),
        ("start_date=2026-03-28&end_date=2026-03-30&timezone=Mars/Olympus", "timezone"),
        ("start_date=1000-01-01&end_date=2026-03-30&timezone=UTC", "start_date"),
        ("start_date=2000-01-01&end_date=2026-03-30&timezone=UTC", "end_date"),
        (f"{DAY}&organizations=x", "organizations"),
    ]:
        r = await api.client.get(
            f"/v1/dashboard/usage-stats?networks={w.usage}&{query}", headers=w.headers
        )
        assert r.status_code == 422, (query, r.text)
        assert r.json()["errors"][0]["field"] == field


async def test_overview(api: Api) -> None:
    w = await build(api)
    now = datetime.now(UTC)
    async with api.sessionmaker() as session:
        live = await session.get_one(Network, w.live)
        cluster = Cluster(network_id=live.id, name="Here", latitude=1.0, longitude=1.0)
        session.add(cluster)
        session.add(
            Device(
                device_id="st-stats-1",
                kind=DeviceKind.STATION,
                online=True,
                last_seen_at=now,
                heartbeat_s=30,
            )
        )
        await session.flush()
        station = Station(cluster_id=cluster.id, device_id="st-stats-1", name="Here 1")
        offline = Station(cluster_id=cluster.id, device_id="st-stats-2", name="Here 2")
        session.add_all([station, offline])
        await session.flush()
        spots = [
            Spot(station_id=station.id, displayed_number=1, state=SpotState.ACTIVE),
            Spot(station_id=station.id, displayed_number=2, state=SpotState.ACTIVE),
            Spot(station_id=station.id, displayed_number=3, state=SpotState.MAINTENANCE),
        ]
        session.add_all(spots)
        await session.flush()
        docked = _vehicle(
            live, "LV0001", vehicle_type=VehicleType.E_BIKE, battery_level=50, spot_id=spots[0].id
        )
        low = _vehicle(live, "LV0002", vehicle_type=VehicleType.KICK_SCOOTER, battery_level=5)
        rented = _vehicle(live, "LV0003", state=VehicleState.RENTED)
        repaired = _vehicle(live, "LV0004", in_maintenance=True)
        held = _vehicle(live, "LV0005", state=VehicleState.RENTED)
        session.add_all([docked, low, rented, repaired, held])
        await session.flush()
        r1, r2, r3 = [await _user(session, f"live-{i}@example.com") for i in (1, 2, 3)]
        midnight = local_midnight(now.date(), zone("UTC"))

        def trip(vehicle: Vehicle, user: User, started: datetime, status: TripStatus) -> Trip:
            ended = None if status in (TripStatus.RUNNING, TripStatus.ON_HOLD) else started
            return Trip(
                vehicle_id=vehicle.id, network_id=live.id, user_id=user.id, status=status,
                started_at=started, ended_at=ended, currency="EUR",
            )  # fmt: skip

        session.add_all(
            [
                trip(rented, r1, midnight + timedelta(seconds=1), TripStatus.RUNNING),
                trip(held, r1, midnight - timedelta(hours=2), TripStatus.ON_HOLD),  # yesterday
                trip(docked, r2, midnight - timedelta(days=3), TripStatus.FINISHED),
                trip(docked, r2, midnight - timedelta(days=10), TripStatus.FINISHED),
                trip(docked, r3, midnight - timedelta(days=40), TripStatus.FINISHED),
                trip(low, r3, midnight - timedelta(days=2), TripStatus.CANCELLED),
            ]
        )
        await session.commit()
        # Liveville's figures in UTC (its zone) read the rollup: loaded as by the backfill.
        await (await session.connection()).run_sync(rollup.rebuild)
        await session.commit()
    q = f"networks={w.live}"
    assert await get(api, w, "overview/stations", q) == {
        "clusters": 1,
        "stations": 2,
        "stations_online": 1,
        "stations_offline": 1,
        "spots": 3,
        "spots_active": 2,
        "spots_maintenance": 1,
        "spots_out_of_order": 0,
        "spots_occupied": 1,
        "spots_free": 1,
    }
    assert await get(api, w, "overview/map", q) == [
        {
            "cluster_id": cluster.id,
            "network_id": w.live,
            "name": "Here",
            "latitude": 1.0,
            "longitude": 1.0,
            "stations": 2,
            "stations_online": 1,
            "spots": 3,
            "spots_active": 2,
            "spots_free": 1,
            "vehicles": 1,
        }
    ]
    assert await get(api, w, "overview/vehicles", q) == {
        "total": 5,
        # Every state is listed, with 0 when no vehicle is in it.
        "by_state": {s.value: 0 for s in VehicleState} | {"available": 3, "rented": 2},
        "by_type": {"bike": 3, "e-bike": 1, "kick-scooter": 1},
        "in_maintenance": 1,
        "docked": 1,
        "undocked": 4,
        "rentable": 1,  # the docked e-bike; the scooter's battery is low
        "low_battery": 1,
    }
    assert await get(api, w, "overview/trips", f"{q}&timezone=UTC") == {
        "running": 1,
        "on_hold": 1,
        "today": 1,
        "yesterday": 1,
        "last_7_days": 3,
        "last_30_days": 4,
    }
    assert await get(api, w, "overview/users", f"{q}&timezone=UTC") == {
        "total": 3,
        "new_last_30_days": 3,
        "active_today": 1,
        "active_last_7_days": 2,
        "active_last_30_days": 2,
    }
    # The usage network's riders are its own: U1 U2 U3 (U4 rode elsewhere).
    users = await get(api, w, "overview/users", f"networks={w.usage}&timezone=Europe/Paris")
    assert users["total"] == 3


async def test_operator_scope(api: Api) -> None:
    w = await build(api)
    headers = await api.login("operator@example.com")
    r = await api.client.get(
        f"/v1/dashboard/usage-stats/summary?networks={w.usage}&{DAY}", headers=headers
    )
    assert r.status_code == 403 and r.json()["reason"] == "network-not-allowed"
    r = await api.client.get(
        f"/v1/dashboard/overview/vehicles?networks={api.demo.network_id}", headers=headers
    )
    assert r.status_code == 200 and r.json()["data"]["total"] > 0


@pytest.mark.parametrize(
    "start,end,trips",
    [
        ("2026-03-28", "2026-03-30", 4),
        ("2026-03-01", "2026-04-30", 6),
        ("2026-01-01", "2026-12-31", 6),
        # Days of two years: each day's riders read from its own year's rows.
        ("2025-12-20", "2026-01-10", 0),
    ],
)
async def test_rollup_and_trips_agree(
    api: Api, monkeypatch: pytest.MonkeyPatch, start: str, end: str, trips: int
) -> None:
    """Every figure of a period in the network's zone, from the rollup and from ``trips``
    (the rollup switched off): the same, medians within half a bucket."""
    w = await build(api)
    q = f"networks={w.usage}&start_date={start}&end_date={end}&timezone=Europe/Paris"
    paths = [
        "usage-stats",
        "usage-stats/summary",
        "usage-stats/trips-by-dow",
        "usage-stats/trips-by-time-of-day",
        "usage-stats/distance-distribution",
        "usage-stats/duration-distribution",
        "usage-stats/station-distribution",
    ]
    fed = [await get(api, w, p, q) for p in paths]

    async def never(*_: Any) -> bool:
        return False

    monkeypatch.setattr(stats_service, "_rollup_answers", never)
    scanned = [await get(api, w, p, q) for p in paths]
    for path, a, b in zip(paths, fed, scanned, strict=True):
        if path.endswith("summary"):
            for measure, half in (("distance", 50), ("duration", 30)):
                assert a[measure].pop("median") == pytest.approx(b[measure].pop("median"), abs=half)
                assert a[measure] == pytest.approx(b[measure])
            assert a == b
        else:
            assert a == b, path
    assert fed[1]["trips"] == trips


async def test_another_networks_organizations_are_not_named(api: Api) -> None:
    """Statsville's operator sees its own organizations only: in the usage stats and in a
    rider's profile (U2 is also a member of Otherville's O4)."""
    w = await build(api)
    async with api.sessionmaker() as session:
        unit = OrganizationalUnit(
            name="Statsville", networks=[w.usage], clusters=[], app_labels=[], organizations=[]
        )
        session.add(unit)
        await session.flush()
        operator = await _user(session, "stats-op@example.com", UserRole.OPERATOR)
        operator.permissions = operator_permissions(w.usage, unit.id)
        await session.commit()
        token = create_access_token(
            Settings(JWT_SECRET=JWT), operator.id, operator.permissions, operator.token_generation
        )
    mine = World(**{**w.__dict__, "headers": {"Authorization": f"Bearer {token}"}})
    orgs = await get(api, mine, "usage-stats/organizations", f"networks={w.usage}")
    assert [o["id"] for o in orgs] == [w.o1, w.o2]
    profile = await get(api, mine, f"users/{w.u2}", "")
    assert profile["organizations"] == [w.o2]
    # A global admin reaches every organization.
    assert (await get(api, w, f"users/{w.u2}", ""))["organizations"] == sorted([w.o2, w.o4])
