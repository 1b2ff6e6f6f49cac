"""The usage rollup fed trip by trip (the engine's seam) equals the one rebuilt from scratch
from ``trips`` (migration 0019's backfill), on SQLite and PostgreSQL: random trips ended in
random order across a DST change and New Year, a late trip (started days before the others
ended), a trip ended twice (a retried end), a billing stop through the engine (paid → free),
a trip whose share changes after its end and one taken out whole. Every table: the
hourly, daily and monthly histograms, clusters, presence and riders (migration 0023)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import trips as engine
from kickstand.cloud.models import (
    Cluster,
    Network,
    Trip,
    TripStatus,
    User,
    UserRole,
    Vehicle,
    VehicleState,
    VehicleType,
)
from kickstand.cloud.security import hash_password
from kickstand.cloud.stats import rollup, service
from kickstand.cloud.stats.repository import OrganizationFilter
from kickstand.cloud.stats.rollup import (
    CLUSTER,
    HISTOGRAM,
    HISTOGRAM_MONTH,
    HOURLY,
    LEDGER,
    PRESENCE,
    RIDER,
)
from tests.cloud.api.support import BOTH_DATABASES, Api

pytestmark = BOTH_DATABASES


def _key(value: Any) -> Any:
    return str(value) if not isinstance(value, (int, float, bool)) or value is None else value


async def snapshot(session: AsyncSession, network_ids: list[int]) -> dict[str, Any]:
    """Every rollup row of the networks, rows that count nothing left out (a share taken
    out leaves its zero behind; a rebuild writes none)."""
    out: dict[str, Any] = {}
    for table, counts in (
        (LEDGER, None),
        (HOURLY, ("trips",)),
        (HISTOGRAM, ("trips",)),
        (CLUSTER, ("started", "ended")),
        (PRESENCE, tuple(f"{x}{i}" for x in "mp" for i in range(6))),
        (RIDER, ("trips",)),
        (HISTOGRAM_MONTH, ("trips",)),
    ):
        rows = (
            await session.execute(select(table).where(table.c.network_id.in_(network_ids)))
        ).all()
        kept = {}
        for row in rows:
            m = row._mapping
            if counts and not any(m[c] for c in counts):
                continue
            pk = tuple(_key(m[c.name]) for c in table.primary_key.columns)
            kept[pk] = {k: v for k, v in m.items() if k not in table.primary_key.columns}
        out[table.name] = kept
    return out


def assert_same(fed: dict[str, Any], rebuilt: dict[str, Any]) -> None:
    for name, rows in rebuilt.items():
        assert set(fed[name]) == set(rows), name
        for pk, values in rows.items():
            for column, value in values.items():
                got = fed[name][pk][column]
                if isinstance(value, float) or isinstance(got, float):
                    assert got == pytest.approx(value, rel=1e-9, abs=1e-6), (name, pk, column)
                else:
                    assert got == value, (name, pk, column)


async def test_rollup_fed_by_trip_ends_equals_a_rebuild(api: Api) -> None:
    rng = random.Random(16)
    async with api.sessionmaker() as session:
        paris = Network(name="Rollup Paris", currency="EUR", timezone="Europe/Paris")
        tokyo = Network(name="Rollup Tokyo", currency="EUR", timezone="Asia/Tokyo")
        session.add_all([paris, tokyo])
        await session.flush()
        clusters = [
            Cluster(network_id=n.id, name=f"R{i}", latitude=48 + i / 100, longitude=2 + i / 50)
            for n in (paris, tokyo)
            for i in range(4)
        ]
        session.add_all(clusters)
        riders = [
            User(
                email=f"rollup-{i}@example.com",
                password_hash=hash_password("not-used-1", demo=True),
                role=UserRole.RIDER,
            )
            for i in range(5)
        ]
        session.add_all(riders)
        vehicles = [
            Vehicle(
                serial_number=f"RU{i:04d}",
                vehicle_type=VehicleType.BIKE,
                network_id=(paris if i % 2 else tokyo).id,
                state=VehicleState.AVAILABLE,
            )
            for i in range(6)
        ]
        session.add_all(vehicles)
        await session.flush()
        # Around the spring DST change (Paris, 2026-03-29) and New Year.
        starts = [datetime(2026, 3, 27, tzinfo=UTC), datetime(2025, 12, 30, tzinfo=UTC)]
        made: list[Trip] = []
        ends: dict[int, tuple[Cluster | None, datetime]] = {}
        for i in range(60):
            vehicle = vehicles[i % len(vehicles)]
            network_id = vehicle.network_id
            own = [c for c in clusters if c.network_id == network_id]
            start = rng.choice(starts) + timedelta(minutes=rng.randrange(0, 4 * 24 * 60))
            a, b = rng.choice(own), rng.choice([*own, None])
            trip = Trip(
                user_id=rng.choice(riders).id if rng.random() > 0.1 else None,
                vehicle_id=vehicle.id,
                network_id=network_id,
                # Not running (a vehicle has one active trip): its end comes below.
                status=TripStatus.FINISHED,
                start_cluster_id=a.id,
                start_latitude=a.latitude,
                start_longitude=a.longitude,
                started_at=start + timedelta(microseconds=i),
                currency="EUR",
                hold_periods=[],
            )
            ends[id(trip)] = (b, start + timedelta(seconds=rng.randrange(30, 9000)))
            made.append(trip)
        session.add_all(made)
        await session.flush()
        # The late trip: started days before, ended after everything else.
        late = made.pop(0)
        rng.shuffle(made)
        for trip in [*made, late]:
            end_cluster, ended = ends[id(trip)]
            trip.status = TripStatus.FINISHED
            trip.ended_at = ended
            trip.end_cluster_id = end_cluster.id if end_cluster is not None else None
            trip.end_latitude = end_cluster.latitude if end_cluster is not None else None
            trip.end_longitude = end_cluster.longitude if end_cluster is not None else None
            trip.cost = Decimal(rng.choice(["0", "1.25", "2"]))
            await rollup.apply_trip(session, trip)
        # A retried end counts once.
        await rollup.apply_trip(session, made[0])
        await rollup.apply_trip(session, late)
        # A share that changes after the end: paid → free (through the ledger).
        changed = next(t for t in made if t.cost and t.cost > 0)
        changed.cost = Decimal(0)
        await rollup.apply_trip(session, changed)
        # A share taken out whole (the trip no longer finished): its rider's count too.
        gone = next(t for t in made if t.user_id is not None and t is not changed)
        gone.status = TripStatus.CANCELLED
        await rollup.apply_trip(session, gone)
        # The engine's billing stop re-bills a finished trip through the same seam.
        billed = next(t for t in made if t.cost and t.cost > 0 and t not in (changed, gone))
        await session.commit()
        billed_id = billed.id
        ids = [paris.id, tokyo.id]
        paris_id = paris.id
    async with api.sessionmaker() as session:
        assert billed_id is not None
        before = (
            await session.execute(select(LEDGER.c.paid).where(LEDGER.c.trip_id == billed_id))
        ).scalar_one()
        assert before is True
        await engine.stop_billing(session, billed_id, datetime(2026, 1, 1, tzinfo=UTC))
        await session.commit()
    async with api.sessionmaker() as session:
        fed = await snapshot(session, ids)
        after = fed["trip_rollup_ledger"][(billed_id,)]["paid"]
        # No pricing rule for these networks: the re-bill leaves no cost, so "free" now.
        trip = await session.get_one(Trip, billed_id)
        assert after is bool(trip.cost is not None and trip.cost > 0)
        assert sum(v["trips"] for v in fed["trip_rollup_hourly"].values()) == 59
        with_rider = sum(1 for v in fed["trip_rollup_ledger"].values() if v["user_id"])
        assert sum(v["trips"] for v in fed["trip_rollup_rider"].values()) == with_rider
        daily, monthly = (
            sum(v["trips"] for v in fed[name].values())
            for name in ("trip_rollup_histogram", "trip_rollup_histogram_month")
        )
        assert monthly == daily > 59
    async with api.sessionmaker() as session:
        await (await session.connection()).run_sync(rollup.rebuild)
        await session.commit()
    async with api.sessionmaker() as session:
        rebuilt = await snapshot(session, ids)
    assert len(rebuilt["trip_rollup_ledger"]) == 59
    assert_same(fed, rebuilt)
    # Riders per day and week across New Year: the days of December are read from the
    # January rows' "year before" masks; the same as counted from trips.
    for start, end in (
        (date(2025, 12, 29), date(2026, 1, 3)),
        (date(2025, 12, 1), date(2026, 1, 31)),
    ):
        period = service.window(start, end, "Europe/Paris")
        async with api.sessionmaker() as session:
            fed_usage = await service.usage(session, [paris_id], period, OrganizationFilter())
            fed_summary = await service.summary(session, [paris_id], period, OrganizationFilter())
        async with api.sessionmaker() as session:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(service, "_rollup_answers", _never)
                scanned = await service.usage(session, [paris_id], period, OrganizationFilter())
                summary = await service.summary(session, [paris_id], period, OrganizationFilter())
        assert fed_usage == scanned
        assert sum(p.users for p in scanned) > 0
        assert (fed_summary.users, fed_summary.vehicles) == (summary.users, summary.vehicles)


async def _never(*_: Any) -> bool:
    return False
