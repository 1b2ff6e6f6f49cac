"""Helpers of the field-operations tests: trips started through the trip engine, an operator
of another network; the API fixture is tests/cloud/api's (see conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from kickstand.cloud import trips
from kickstand.cloud.access.models import OrganizationalUnit
from kickstand.cloud.models import Network, Spot, Station, Trip, User, UserRole
from kickstand.cloud.rent_gateway import UnlockOutcome
from kickstand.cloud.rents import apply_unlock_outcome, open_rent
from kickstand.cloud.security import hash_password
from kickstand.cloud.seed import operator_permissions
from tests.cloud.api.support import Api

#: Every test of this folder runs on PostgreSQL.
ON_POSTGRES = pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
OPERATOR = "operator@example.com"
OTHER_OPERATOR = "other-op@example.com"
OTHER_PASSWORD = "other-operator-1"


async def spot_id(api: Api, device_id: str, number: int) -> int:
    async with api.sessionmaker() as s:
        found: int = (
            await s.scalars(
                select(Spot.id)
                .join(Station)
                .where(Station.device_id == device_id, Spot.displayed_number == number)
            )
        ).one()
        return found


async def start_trip(
    api: Api,
    device_id: str,
    number: int,
    serial: str,
    *,
    email: str = "alice@example.com",
    minutes_ago: float = 30,
) -> int:
    """A rider's running trip: a rent at the spot, the unlock, the removal (device time
    ``minutes_ago`` before now)."""
    start = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    async with api.sessionmaker() as s:
        rent, _, _ = await open_rent(
            s,
            api.demo.user_ids[email],
            spot_id=await spot_id(api, device_id, number),
            idempotency_key=f"trip-{serial}",
            now=start - timedelta(seconds=20),
        )
        await apply_unlock_outcome(
            s, rent.id, UnlockOutcome.unlocked(), now=start - timedelta(seconds=10)
        )
        started = await trips.vehicle_removed(s, device_id, number, serial, start)
        await s.commit()
        assert started.trip is not None, started
        return started.trip.id


async def end_trip(api: Api, device_id: str, number: int, serial: str, minutes_ago: float) -> None:
    async with api.sessionmaker() as s:
        ended = await trips.vehicle_docked(
            s, device_id, number, serial, datetime.now(UTC) - timedelta(minutes=minutes_ago)
        )
        await s.commit()
        assert ended.action == "ended", ended


async def trip_row(api: Api, trip_id: int) -> Trip:
    async with api.sessionmaker() as s:
        return await s.get_one(Trip, trip_id)


async def other_operator(api: Api) -> dict[str, str]:
    """Login headers of an operator of another network (every operator permission there)."""
    async with api.sessionmaker() as s:
        other = Network(name="Elsewhere", currency="EUR", timezone="Europe/Paris")
        s.add(other)
        await s.flush()
        unit = OrganizationalUnit(
            name="Elsewhere", networks=[other.id], clusters=[], app_labels=[], organizations=[]
        )
        s.add(unit)
        await s.flush()
        s.add(
            User(
                email=OTHER_OPERATOR,
                password_hash=hash_password(OTHER_PASSWORD, demo=True),
                role=UserRole.OPERATOR,
                permissions=operator_permissions(other.id, unit.id),
                email_confirmed_at=datetime.now(UTC),
            )
        )
        await s.commit()
    r = await api.client.post(
        "/v1/auth/login", json={"email": OTHER_OPERATOR, "password": OTHER_PASSWORD}
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['data']['token']}"}
