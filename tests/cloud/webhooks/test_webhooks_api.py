"""The operators' webhook API on PostgreSQL: topics, endpoints, the log, replay, re-enable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from kickstand.cloud.api import create_app
from kickstand.cloud.config import Settings
from kickstand.cloud.events import CATALOGUE
from kickstand.cloud.models import User
from kickstand.cloud.security import create_access_token
from kickstand.cloud.webhooks.delivery import WebhookWorker
from kickstand.cloud.webhooks.receiver import Receiver

from .conftest import FAST, PgEnv, run_until, write_events

SECRET = "a-test-secret-that-is-long-enough-for-hs256-0123456789"


@pytest.fixture
async def api(pg: PgEnv, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(DATABASE_URL=pg.url, JWT_SECRET=SECRET, VAR_DIR=tmp_path)
    app = create_app(settings, engine=pg.engine)
    async with pg.sessionmaker() as session:
        users = {u.email: u for u in await session.scalars(select(User))}

    def auth(email: str) -> dict[str, str]:
        u = users[email]
        token = create_access_token(settings, u.id, u.permissions, u.token_generation)
        return {"Authorization": f"Bearer {token}"}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://test/v1/dashboard/webhooks",
        headers=auth("operator@example.com"),
    ) as client:
        client.rider_headers = auth("alice@example.com")  # type: ignore[attr-defined]
        yield client


async def test_topics_and_endpoint_validation(api: httpx.AsyncClient) -> None:
    r = await api.get("/topics")
    topics = {t["topic"]: t for t in r.json()["data"]}
    assert r.json()["code"] == 0 and "boitier.pin.incorrect" in topics
    assert topics["trip.terminated"]["resource"] == "trip"
    # The served list is the event catalogue, with each topic's scope and payload schema.
    assert set(topics) == set(CATALOGUE)
    assert topics["rent.updated"]["scope"] == "network_id"
    assert "network_id" in topics["dock.updated"]["payload_schema"]["required"]
    r = await api.get("/topics", headers=api.rider_headers)  # type: ignore[attr-defined]
    assert r.status_code == 403

    r = await api.post("/endpoints", json={"url": "https://ops.example/h", "topics": ["nope.*"]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "topics"
    r = await api.post("/endpoints", json={"url": "file:///etc/passwd", "topics": ["*"]})
    assert r.status_code == 422
    r = await api.post(
        "/endpoints",
        json={"url": "https://ops.example/h", "topics": ["*"], "network_ids": [12345]},
    )
    assert r.status_code == 403 and r.json()["reason"] == "network-not-allowed"
    r = await api.post(
        "/endpoints", json={"url": "https://ops.example/h", "topics": ["trip.*", "fleet_alert.*"]}
    )
    created = r.json()["data"]
    assert created["secret"].startswith("whsec_") and created["is_active"] is True
    r = await api.get("/endpoints")
    [listed] = r.json()["data"]
    assert listed["id"] == created["id"] and "secret" not in listed
    r = await api.post(f"/endpoints/{created['id']}/rotate-secret")
    assert r.json()["data"]["secret"] != created["secret"]
    r = await api.delete(f"/endpoints/{created['id']}")
    assert r.json() == {"code": 0}
    r = await api.get(f"/endpoints/{created['id']}")
    assert r.status_code == 404 and r.json()["code"] != 0


async def test_log_replay_and_re_enable(pg: PgEnv, api: httpx.AsyncClient) -> None:
    state = {"status": 500}
    with Receiver(behaviour=lambda _n, _e: (state["status"], 0.0)) as receiver:
        r = await api.post("/endpoints", json={"url": receiver.url, "topics": ["trip.*"]})
        endpoint = r.json()["data"]
        receiver.secret = endpoint["secret"]
        net = pg.demo.network_id
        assert endpoint["network_ids"] == [net]  # an operator's endpoint: its networks
        await write_events(
            pg.sessionmaker,
            [
                ("trip.created", "trip", 1, {"trip_id": 1, "network_id": net}),
                ("trip.created", "trip", 2, {"trip_id": 2, "network_id": net + 1}),  # not ours
                ("trip.updated", "trip", 1, {"trip_id": 1, "network_id": net, "v": 2}),
            ],
        )
        policy = replace(FAST, disable_after_failures=3, disable_after_s=0.0)
        async with WebhookWorker(pg.sessionmaker, policy) as worker:
            await run_until([worker], lambda: len(receiver.snapshot()) >= 3)
        r = await api.get(f"/endpoints/{endpoint['id']}")
        disabled = r.json()["data"]
        assert disabled["is_active"] is False and disabled["disabled_reason"]

        r = await api.get(f"/endpoints/{endpoint['id']}/deliveries", params={"page_size": 10})
        log = r.json()["data"]
        assert [d["event"] for d in log] == ["trip.updated", "trip.created"]  # newest first
        assert log[1]["attempts"] == 3 and log[1]["status"] == "pending"
        assert log[0]["attempts"] == 0  # waits for trip 1's earlier event
        r = await api.get(f"/deliveries/{log[1]['id']}")
        detail = r.json()["data"]
        assert [a["status_code"] for a in detail["attempt_log"]] == [500, 500, 500]
        assert detail["data"] == {"trip_id": 1, "network_id": net}

        # the receiver is fixed; the operator re-enables: both go out, in order
        state["status"] = 200
        r = await api.patch(f"/endpoints/{endpoint['id']}", json={"is_active": True})
        assert r.json()["data"]["is_active"] is True
        assert r.json()["data"]["consecutive_failures"] == 0
        async with WebhookWorker(pg.sessionmaker, FAST) as worker:
            await run_until([worker], lambda: len(receiver.accepted()) >= 2)
            assert [x.envelope["event"] for x in receiver.accepted()] == [
                "trip.created",
                "trip.updated",
            ]
            # replay from the log: same event id, a new attempt id
            r = await api.post(f"/deliveries/{log[0]['id']}/replay")
            replay = r.json()["data"]
            assert replay["replay_of_id"] == log[0]["id"] and replay["status"] == "pending"
            await run_until([worker], lambda: len(receiver.accepted()) >= 3)
        first, second, again = receiver.accepted()
    assert again.envelope["id"] == second.envelope["id"]
    assert again.envelope["attemptId"] != second.envelope["attemptId"]
    assert all(x.signature_ok for x in (first, second, again))
    r = await api.get(f"/endpoints/{endpoint['id']}/deliveries", params={"status": "succeeded"})
    assert len(r.json()["data"]) == 3
    # The log is a keyset page like every listing: oldest first on asking, one page here.
    r = await api.get(
        f"/endpoints/{endpoint['id']}/deliveries",
        params={"primary_key_dir": "ASC", "page_size": 10},
    )
    page = r.json()
    assert [d["id"] for d in page["data"]] == sorted(d["id"] for d in page["data"])
    assert [d["event"] for d in page["data"]][:2] == ["trip.created", "trip.updated"]
    assert page["next_primary_key"] is None
