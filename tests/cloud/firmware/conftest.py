"""Firmware fixtures: the API with a firmware key and an image store of the test's own,
operators of the demo network and of another network, a global operator (an admin: images
are the installation's), an image upload helper (as that admin)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.api import create_app
from kickstand.cloud.config import Settings
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.firmware.keys import create_key
from kickstand.cloud.models import Network, User, UserRole
from kickstand.cloud.rent_gateway import CommandGateway, UnavailableCommandGateway
from kickstand.cloud.security import create_access_token, hash_password
from kickstand.cloud.seed import DemoRefs, operator_permissions
from kickstand.protocol.signing import public_key_bytes
from tests.cloud.conftest import demo_refs

JWT = "firmware-test-secret-" + "x" * 40


@dataclass
class Fw:
    client: httpx.AsyncClient
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    demo: DemoRefs
    #: The raw public half of the installation's firmware key (what devices trust).
    public_key: bytes
    operator: dict[str, str]
    #: An operator of another network (with the firmware permission there).
    other: dict[str, str]
    other_network: int
    #: A global operator (role admin): the only one who uploads or deletes images.
    admin: dict[str, str]
    #: The app behind ``client`` (a test serves it over real HTTP).
    app: FastAPI

    async def upload(
        self,
        data: bytes,
        target: str = "vehicle-controller:vc1",
        version: str = "2.0.0",
        *,
        as_: dict[str, str] | None = None,
    ) -> httpx.Response:
        return await self.client.post(
            "/v1/dashboard/firmware/images",
            params={"target": target, "version": version},
            content=data,
            headers={**(as_ or self.admin), "Content-Type": "application/octet-stream"},
        )


def fw_settings(db_url: str, tmp_path: Path, **extra: object) -> Settings:
    key_file = tmp_path / "firmware-signing.key"
    if not key_file.exists():
        create_key(key_file)
    return Settings(
        DATABASE_URL=db_url,
        VAR_DIR=tmp_path / "var",
        JWT_SECRET=JWT,
        FIRMWARE_SIGNING_KEY_FILE=key_file,
        FIRMWARE_STORE_DIR=tmp_path / "images",
        FIRMWARE_BASE_URL="http://kickstand.test",
        **extra,  # type: ignore[arg-type]
    )


async def open_fw(
    db_url: str, tmp_path: Path, gateway: CommandGateway | None = None, **extra: object
) -> AsyncIterator[Fw]:
    settings = fw_settings(db_url, tmp_path, **extra)
    engine = create_engine(db_url)
    app = create_app(
        settings, command_gateway=gateway or UnavailableCommandGateway(), engine=engine
    )
    maker = create_sessionmaker(engine)
    demo = demo_refs(db_url)
    async with maker() as session, session.begin():
        elsewhere = Network(name="Elsewhere", currency="EUR", timezone="Europe/Paris")
        session.add(elsewhere)
        await session.flush()
        other = User(
            email="fw-other@example.com",
            password_hash=hash_password("not-used-here-1", demo=True),
            role=UserRole.OPERATOR,
            permissions=operator_permissions(elsewhere.id),
            email_confirmed_at=datetime.now(UTC),
        )
        admin = User(
            email="fw-admin@example.com",
            password_hash=hash_password("not-used-here-1", demo=True),
            role=UserRole.ADMIN,
            email_confirmed_at=datetime.now(UTC),
        )
        session.add_all([other, admin])
        await session.flush()
        other_token = create_access_token(settings, other.id, other.permissions, 0)
        admin_token = create_access_token(settings, admin.id, admin.permissions, 0)
        other_network = elsewhere.id
    from kickstand.cloud.firmware.keys import load_firmware_key

    public = public_key_bytes(load_firmware_key(settings))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kickstand.test") as client:
        email = "operator@example.com"
        r = await client.post(
            "/v1/auth/login", json={"email": email, "password": demo.passwords[email]}
        )
        assert r.status_code == 200, r.text
        yield Fw(
            client,
            settings,
            maker,
            demo,
            public,
            {"Authorization": f"Bearer {r.json()['data']['token']}"},
            {"Authorization": f"Bearer {other_token}"},
            other_network,
            {"Authorization": f"Bearer {admin_token}"},
            app,
        )
    await engine.dispose()


@pytest.fixture
async def fw(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Fw]:
    async for env in open_fw(sqlite_url, tmp_path):
        yield env
