"""Account fixtures: the API over SQLite or PostgreSQL with mail going to a real SMTP sink."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kickstand.cloud.api import create_app
from kickstand.cloud.config import Settings
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.seed import DemoRefs
from kickstand.testing.mailsink import MailSink
from tests.cloud.api.conftest import db_url
from tests.cloud.conftest import demo_refs

__all__ = ["db_url"]


@dataclass
class Accounts:
    client: httpx.AsyncClient
    sink: MailSink
    settings: Settings
    app: FastAPI
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    demo: DemoRefs

    def client_from(self, address: str) -> httpx.AsyncClient:
        """Another client of the same app, calling from ``address``."""
        transport = httpx.ASGITransport(app=self.app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://kickstand.test")

    async def sign_up(self, email: str, password: str = "rider-pass-1", **extra: Any) -> str:
        """Sign up and return the mailed confirmation code."""
        body = {"email": email, "password": password, "accept_terms": True, **extra}
        r = await self.client.post("/v1/auth/signup", json=body)
        assert r.status_code == 201, r.text
        mail = await self.sink.wait_for(email, kind="email-confirm")
        return self.sink.token_in(mail)

    async def login(self, email: str, password: str) -> httpx.Response:
        return await self.client.post("/v1/auth/login", json={"email": email, "password": password})


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[MailSink]:
    with MailSink(directory=tmp_path / "mail") as s:
        yield s


def account_settings(db_url: str, tmp_path: Path, sink: MailSink, **over: Any) -> Settings:
    return Settings(
        DATABASE_URL=db_url,
        VAR_DIR=tmp_path / "var",
        JWT_SECRET="test-secret-" + "x" * 40,
        SMTP_HOST=sink.host,
        SMTP_PORT=sink.port,
        SMTP_TIMEOUT_S=5,
        **over,
    )


@pytest.fixture
def overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings a test changes:
    ``@pytest.mark.parametrize("overrides", [{...}], indirect=True)``."""
    return dict(getattr(request, "param", {}))


@pytest.fixture
async def accounts(
    db_url: str, tmp_path: Path, sink: MailSink, overrides: dict[str, Any]
) -> AsyncIterator[Accounts]:
    settings = account_settings(db_url, tmp_path, sink, **overrides)
    engine = create_engine(db_url)
    app = create_app(settings, engine=engine)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kickstand.test") as client:
        yield Accounts(
            client, sink, settings, app, engine, create_sessionmaker(engine), demo_refs(db_url)
        )
    await engine.dispose()
