"""Webhook targets cannot reach inside: refused at registration (production API) and again
at delivery after DNS resolution; a refused delivery is logged, counted and kept in the log."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from kickstand.cloud.api import create_app
from kickstand.cloud.config import Settings
from kickstand.cloud.models import User
from kickstand.cloud.security import create_access_token
from kickstand.cloud.webhooks import service, targets
from kickstand.cloud.webhooks.delivery import DeliveryPolicy, WebhookWorker
from kickstand.cloud.webhooks.models import DeliveryStatus
from kickstand.cloud.webhooks.receiver import Receiver
from kickstand.cloud.webhooks.targets import IPAddress, TargetGuard, why_internal

from .conftest import FAST, PgEnv, run_until, write_events

SECRET = "a-test-secret-that-is-long-enough-for-hs256-0123456789"
PUBLIC = "93.184.216.34"


class FakeDns:
    """Answers from a table that a test can change (DNS changes after registration)."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError(f"no such name {host}")
        return [ipaddress.ip_address(self.table[host])]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    ],
)
def test_internal_addresses_refused(address: str) -> None:
    assert why_internal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", [PUBLIC, "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_allowed(address: str) -> None:
    assert why_internal(ipaddress.ip_address(address)) is None


def test_pinned_url_keeps_scheme_port_path() -> None:
    target = targets.Target("hooks.example", 8443, ipaddress.ip_address("2606:4700::1"))
    assert (
        target.pinned_url("https://hooks.example:8443/in?x=1")
        == "https://[2606:4700::1]:8443/in?x=1"
    )


@pytest.fixture
async def production_api(pg: PgEnv, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        ENVIRONMENT="production",
        DATABASE_URL=pg.url,
        JWT_SECRET=SECRET,
        VAR_DIR=tmp_path,
    )
    app = create_app(settings, engine=pg.engine)
    dns = FakeDns({"hooks.example": PUBLIC, "internal.example": "10.0.0.7"})
    app.state.target_guard = TargetGuard(False, dns)
    async with pg.sessionmaker() as session:
        operator = await session.scalar(select(User).where(User.email == "operator@example.com"))
    assert operator is not None
    token = create_access_token(
        settings, operator.id, operator.permissions, operator.token_generation
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test/v1/dashboard/webhooks",
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        yield client


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5432/",
        "http://localhost:8080/hook",
        "http://api.localhost/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "https://internal.example/hook",  # a name that resolves inside
    ],
)
async def test_registration_refuses_internal_targets_in_production(
    production_api: httpx.AsyncClient, url: str
) -> None:
    r = await production_api.post("/endpoints", json={"url": url, "topics": ["*"]})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == 2 and body["errors"][0]["field"] == "url"
    assert "refused" in body["errors"][0]["message"]


async def test_registration_accepts_public_and_checks_changes(
    production_api: httpx.AsyncClient,
) -> None:
    r = await production_api.post(
        "/endpoints", json={"url": "https://hooks.example/in", "topics": ["*"]}
    )
    assert r.status_code == 200, r.text
    endpoint_id = r.json()["data"]["id"]
    r = await production_api.patch(f"/endpoints/{endpoint_id}", json={"url": "http://10.9.8.7/"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "url"
    r = await production_api.get(f"/endpoints/{endpoint_id}")
    assert r.json()["data"]["url"] == "https://hooks.example/in"


async def test_development_allows_internal_targets() -> None:
    guard = TargetGuard(allow_internal=True, resolver=FakeDns({}))
    await guard.check_url("http://127.0.0.1:9/hook")
    target = await guard.resolve("http://localhost:9/hook")
    assert target.address is None  # the client resolves as usual


async def test_delivery_refused_after_dns_changed(
    pg: PgEnv, caplog: pytest.LogCaptureFixture
) -> None:
    """Registered while the name was public; at delivery it resolves to loopback: no
    request leaves, the attempt is logged, counted and visible in the delivery log."""
    dns = FakeDns({"hooks.example": PUBLIC})
    with Receiver() as receiver:
        port = httpx.URL(receiver.url).port
        url = f"http://hooks.example:{port}/hook"
        async with pg.sessionmaker() as session, session.begin():
            endpoint = await service.create_endpoint(
                session, url=url, topics=["trip.*"], guard=TargetGuard(False, dns)
            )
        dns.table["hooks.example"] = "127.0.0.1"
        await write_events(pg.sessionmaker, [("trip.created", "trip", 1, {"trip_id": 1})])
        policy = DeliveryPolicy(**{**FAST.__dict__, "allow_internal_targets": False})
        guard = TargetGuard(policy.allow_internal_targets, dns)
        with caplog.at_level(logging.WARNING, logger="kickstand.cloud.webhooks.delivery"):
            async with WebhookWorker(pg.sessionmaker, policy, guard=guard) as worker:
                await run_until([worker], lambda: worker.counters["targets_refused"] >= 2)
        assert receiver.snapshot() == []
    assert "event=webhook_target_refused" in caplog.text and "hooks.example" in caplog.text
    async with pg.sessionmaker() as session:
        (delivery,) = await service.list_deliveries(session, endpoint.id)
        _, attempts = await service.get_delivery(session, delivery.id)
    assert delivery.status in (DeliveryStatus.PENDING, DeliveryStatus.FAILED)
    assert delivery.last_error == "target refused: 127.0.0.1 is loopback"
    assert attempts and all(a.error == delivery.last_error for a in attempts)
    assert all(a.status_code is None for a in attempts)


async def test_delivery_connects_to_the_checked_address(
    pg: PgEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The POST goes to the address the guard checked, the name kept in Host: a second
    lookup by the HTTP client cannot swap it (``hooks.example`` exists in no real DNS)."""
    monkeypatch.setattr(targets, "why_internal", lambda _address: None)  # loopback "public"
    dns = FakeDns({"hooks.example": "127.0.0.1"})
    with Receiver() as receiver:
        port = httpx.URL(receiver.url).port
        async with pg.sessionmaker() as session, session.begin():
            endpoint = await service.create_endpoint(
                session, url=f"http://hooks.example:{port}/hook", topics=["trip.*"]
            )
        receiver.secret = endpoint.secret
        await write_events(pg.sessionmaker, [("trip.created", "trip", 1, {"trip_id": 1})])
        policy = DeliveryPolicy(**{**FAST.__dict__, "allow_internal_targets": False})
        async with WebhookWorker(pg.sessionmaker, policy, guard=TargetGuard(False, dns)) as w:
            await run_until([w], lambda: len(receiver.accepted()) >= 1)
        (got,) = receiver.snapshot()
    assert got.signature_ok and got.headers["Host"] == f"hooks.example:{port}"
    assert dns.asked == ["hooks.example"]
