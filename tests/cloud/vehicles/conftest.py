"""The API fixtures of tests/cloud/api, on the harness's PostgreSQL, and vehicle helpers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kickstand.cloud.models import Network, User, UserRole
from kickstand.cloud.security import hash_password
from tests.cloud.api.conftest import api, db_url
from tests.cloud.api.support import Api

__all__ = ["OPERATOR", "PG", "add_admin", "add_network", "api", "db_url", "register"]

#: Every test of this folder runs on PostgreSQL (the database that refuses most).
PG = pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
OPERATOR = "operator@example.com"
ADMIN_PASSWORD = "admin-password-1"


async def register(api: Api, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {
        "serial_number": "TST001",
        "vehicle_type": "e-bike",
        "model": "Kick One",
        "network_id": api.demo.network_id,
        **fields,
    }
    r = await api.client.post("/v1/dashboard/vehicles", json=body, headers=headers)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def add_network(api: Api, name: str = "Elsewhere", currency: str = "CHF") -> int:
    async with api.sessionmaker() as session:
        network = Network(name=name, currency=currency, timezone="Europe/Zurich")
        session.add(network)
        await session.commit()
        return network.id


async def add_admin(api: Api) -> dict[str, str]:
    async with api.sessionmaker() as session:
        session.add(
            User(
                email="admin@example.com",
                password_hash=hash_password(ADMIN_PASSWORD, demo=True),
                role=UserRole.ADMIN,
                permissions=[],
                email_confirmed_at=datetime.now(UTC),
            )
        )
        await session.commit()
    api.demo.passwords.setdefault("admin@example.com", ADMIN_PASSWORD)
    return await api.login("admin@example.com")
