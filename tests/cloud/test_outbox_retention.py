"""Outbox retention: the webhook delivery worker deletes published outbox records
OUTBOX_RETENTION_DAYS after their publication, in bounded batches, but never one an endpoint
still has to receive (unpublished, or with a delivery pending); a station's event history
then covers the retention window. Real events (``outbox.emit``), the real worker, a real
receiver, PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kickstand.cloud import metrics, outbox
from kickstand.cloud.api import create_app
from kickstand.cloud.config import Settings
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.events import catalogue
from kickstand.cloud.events.payloads import DeviceEvent, StationEvent
from kickstand.cloud.models import OutboxEvent, Station
from kickstand.cloud.seed import DemoRefs
from kickstand.cloud.webhooks import service
from kickstand.cloud.webhooks.delivery import DeliveryPolicy, WebhookWorker
from kickstand.cloud.webhooks.models import DeliveryStatus, WebhookDelivery
from kickstand.cloud.webhooks.receiver import Receiver
from tests.cloud.conftest import demo_refs

pytestmark = pytest.mark.postgres

OPERATOR = "operator@example.com"
#: Retries due at once, the receivers on loopback, the deliveries' own retention out of
#: the way (these tests count outbox rows).
POLICY = DeliveryPolicy(
    schedule_s=(0.05,) * 10,
    jitter=0.0,
    allow_internal_targets=True,
    delivery_retention_days=None,
    connect_timeout_s=1.0,
    read_timeout_s=5.0,
)


@dataclass
class Db:
    engine: AsyncEngine
    maker: async_sessionmaker[AsyncSession]
    demo: DemoRefs
    stations: dict[str, Station]


@pytest.fixture
async def db(pg_seeded_url: str) -> AsyncIterator[Db]:
    engine = create_engine(pg_seeded_url)
    maker = create_sessionmaker(engine)
    async with maker() as session:
        found = await session.scalars(select(Station))
        stations = {s.device_id: s for s in found if s.device_id}
    yield Db(engine, maker, demo_refs(pg_seeded_url), stations)
    await engine.dispose()


async def station_updates(db: Db, device_id: str, count: int) -> list[int]:
    """``count`` station.updated events of one station, each in its own transaction."""
    station = db.stations[device_id]
    ids = []
    for i in range(count):
        async with db.maker() as session, session.begin():
            payload = StationEvent(
                network_id=db.demo.network_id, station_id=station.id, device_id=device_id,
                online=i % 2 == 0, at=datetime.now(UTC),
            )  # fmt: skip
            row = outbox.emit(session, catalogue.STATION_UPDATED, station.id, payload)
            await session.flush()
            ids.append(row.id)
    return ids


async def device_event(db: Db, device_id: str) -> int:
    async with db.maker() as session, session.begin():
        payload = DeviceEvent(
            network_id=db.demo.network_id, device_id=device_id, event="badge_read",
            at=datetime.now(UTC), boot_id=1, seq=1, data={},
        )  # fmt: skip
        row = outbox.emit(session, catalogue.DEVICE_EVENT, device_id, payload)
        await session.flush()
        return row.id


async def outbox_ids(db: Db) -> set[int]:
    async with db.maker() as session:
        return set((await session.scalars(select(OutboxEvent.id))).all())


async def test_old_published_rows_go_in_batches_recent_and_undelivered_ones_stay(
    db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    then = datetime.now(UTC) - timedelta(days=40)
    refuse = {"device.event"}  # the receiver answers 500 to these topics
    with Receiver(behaviour=lambda _n, e: (500 if e["event"] in refuse else 200, 0.0)) as rx:
        async with db.maker() as session, session.begin():
            endpoint = await service.create_endpoint(
                session, url=rx.url, topics=["station.updated", "device.event"]
            )
        rx.secret = endpoint.secret
        # 40 days ago: 10 events delivered, one refused (its delivery pending a retry).
        old = await station_updates(db, "st-0001", 10)
        pending = await device_event(db, "st-0002")
        async with WebhookWorker(db.maker, POLICY, clock=lambda: then) as worker:
            await worker.run_until_idle()
        # Today: 3 events delivered.
        recent = await station_updates(db, "st-0001", 3)
        async with WebhookWorker(db.maker, POLICY) as worker:
            await worker.run_until_idle()
        # An event never published (no worker ran since), written 40 days ago.
        unpublished = await device_event(db, "st-0003")
        async with db.maker() as session, session.begin():
            await session.execute(
                update(OutboxEvent).where(OutboxEvent.id == unpublished).values(created_at=then)
            )
        async with db.maker() as session:
            statuses = list(
                await session.scalars(select(WebhookDelivery.status).order_by(WebhookDelivery.id))
            )
        assert statuses == [DeliveryStatus.SUCCEEDED] * 10 + [DeliveryStatus.PENDING] + [
            DeliveryStatus.SUCCEEDED
        ] * 3

        # Batches of 4, two per round: 8 go, the round says a backlog is left; then 2.
        batches = replace(POLICY, outbox_prune_batch=4, outbox_prune_batches=2)
        pruner = WebhookWorker(db.maker, batches)
        async with pruner:
            with caplog.at_level(logging.INFO, logger="kickstand.cloud.webhooks.delivery"):
                assert await pruner.prune() == 8 and pruner.outbox_backlog
                assert await outbox_ids(db) == {*old[8:], pending, *recent, unpublished}
                assert await pruner.prune() == 2 and not pruner.outbox_backlog
                assert await pruner.prune() == 0
            scraped = metrics.render().decode()
        assert await outbox_ids(db) == {pending, *recent, unpublished}
        assert pruner.counters["outbox_pruned"] == 10
        assert any(
            line.startswith("kickstand_webhooks_outbox_pruned_total{") and line.endswith(" 10.0")
            for line in scraped.splitlines()
        ), scraped
        logged = [r.getMessage() for r in caplog.records if "event=outbox_pruned" in r.message]
        assert [m.split(" published_before")[0] for m in logged] == [
            "event=outbox_pruned rows=8 batches=2",
            "event=outbox_pruned rows=2 batches=1",
        ]
        assert "backlog=True" in logged[0] and "backlog=False" in logged[1]

        # Once its endpoint received it, the old event goes at the next round.
        refuse.clear()
        tomorrow = datetime.now(UTC) + timedelta(days=1)  # its retry is due
        async with WebhookWorker(db.maker, POLICY, clock=lambda: tomorrow) as worker:
            await worker.run_until_idle()
        async with db.maker() as session:
            status = await session.scalar(
                select(WebhookDelivery.status).where(WebhookDelivery.outbox_id == pending)
            )
        assert status == DeliveryStatus.SUCCEEDED
        async with pruner:
            assert await pruner.prune() == 1
        assert await outbox_ids(db) == {*recent, unpublished}


async def test_station_history_covers_the_retention_window(db: Db, tmp_path: Path) -> None:
    settings = Settings(
        DATABASE_URL=str(db.engine.url.render_as_string(hide_password=False)),
        VAR_DIR=tmp_path / "var", JWT_SECRET="retention-" + "x" * 40, OUTBOX_RETENTION_DAYS=30,
    )  # fmt: skip
    policy = DeliveryPolicy.for_settings(settings)
    assert policy.outbox_retention_days == 30
    # No endpoint: the worker publishes each event at its time, delivers nothing.
    published: dict[int, list[int]] = {}
    for days in (45, 31, 20, 0):
        published[days] = await station_updates(db, "st-0001", 2)
        at = datetime.now(UTC) - timedelta(days=days)
        async with WebhookWorker(db.maker, policy, clock=lambda at=at: at) as worker:
            await worker.run_until_idle()
    async with WebhookWorker(db.maker, policy) as worker:
        assert await worker.prune() == 4  # the 45 and 31 days old ones

    app = create_app(settings, engine=db.engine)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://kickstand.test"
    ) as client:
        r = await client.post(
            "/v1/auth/login",
            json={"email": OPERATOR, "password": db.demo.passwords[OPERATOR]},
        )
        headers = {"Authorization": f"Bearer {r.json()['data']['token']}"}
        station = db.stations["st-0001"]
        r = await client.get(f"/v1/dashboard/stations/{station.id}/events", headers=headers)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        spec = (await client.get("/openapi.json")).json()
    listed = [e["event_id"] for e in body["data"] if e["topic"] == "station.updated"]
    assert listed == sorted(published[0] + published[20], reverse=True)
    described = spec["paths"]["/v1/dashboard/stations/{station_id}/events"]["get"]
    assert "OUTBOX_RETENTION_DAYS" in described["description"]
