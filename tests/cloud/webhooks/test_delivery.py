"""Webhook delivery against real HTTP receivers on loopback and the harness PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from kickstand.cloud.models import OutboxEvent
from kickstand.cloud.webhooks import service
from kickstand.cloud.webhooks.delivery import WebhookWorker, event_id_for, fan_out
from kickstand.cloud.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from kickstand.cloud.webhooks.receiver import Receiver

from .conftest import FAST, PgEnv, run_until, wait_for, write_events

ENVELOPE_KEYS = {"id", "attemptId", "created", "event", "data", "livemode"}


async def add_endpoint(env: PgEnv, url: str, topics: list[str], **kw: Any) -> WebhookEndpoint:
    async with env.sessionmaker() as session, session.begin():
        return await service.create_endpoint(session, url=url, topics=topics, **kw)


def trip_events(n_trips: int, per_trip: int) -> list[tuple[str, str, Any, dict[str, Any]]]:
    """Interleaved: trip 1 v1, trip 2 v1, …, trip 1 v2, … (per resource order = version)."""
    events = []
    for version in range(1, per_trip + 1):
        for trip in range(1, n_trips + 1):
            topic = "trip.created" if version == 1 else "trip.updated"
            events.append((topic, "trip", trip, {"trip_id": trip, "version": version}))
    return events


async def test_fails_then_recovers_every_event_once_per_attempt(pg: PgEnv) -> None:
    # The first 7 requests fail (500), then everything is accepted.
    with Receiver(behaviour=lambda n, _e: (500 if n < 7 else 200, 0.0)) as receiver:
        endpoint = await add_endpoint(pg, receiver.url, ["trip.*"])
        receiver.secret = endpoint.secret
        events = trip_events(n_trips=4, per_trip=5)
        await write_events(pg.sessionmaker, events)
        async with WebhookWorker(pg.sessionmaker, FAST) as worker:
            await run_until([worker], lambda: len(receiver.accepted()) >= len(events))
        got = receiver.snapshot()

    # every request: a seed 004 envelope, signed, with its own attempt id
    assert all(set(r.envelope) == ENVELOPE_KEYS for r in got)
    assert all(r.signature_ok for r in got)
    attempt_ids = [r.envelope["attemptId"] for r in got]
    assert len(attempt_ids) == len(set(attempt_ids))
    assert all(r.headers["Kickstand-Attempt-Id"] == r.envelope["attemptId"] for r in got)
    # every event accepted exactly once; its id is stable across attempts
    accepted = Counter(r.envelope["id"] for r in got if r.status == 200)
    async with pg.sessionmaker() as session:
        outbox_ids = list(await session.scalars(select(OutboxEvent.id).order_by(OutboxEvent.id)))
        attempts = await session.scalar(select(func.count()).select_from(WebhookAttempt))
        statuses = Counter(await session.scalars(select(WebhookDelivery.status)))
    assert accepted == Counter({event_id_for(i): 1 for i in outbox_ids})
    assert attempts == len(got)  # the log has every attempt the receiver saw
    assert statuses == Counter({DeliveryStatus.SUCCEEDED: len(events)})
    assert {r.envelope["event"] for r in got} == {"trip.created", "trip.updated"}
    assert all(r.envelope["livemode"] is True for r in got)


async def test_order_per_resource_holds_with_two_workers(pg: PgEnv) -> None:
    # Every third request fails (at most once per event: with three resources in turn a
    # global "every third" can hit the same delivery until its retries run out): retries
    # must not let a later version overtake.
    failed_once: set[str] = set()

    def every_third_fails(n: int, envelope: dict[str, Any]) -> tuple[int, float]:
        if n % 3 == 1 and envelope["id"] not in failed_once:
            failed_once.add(envelope["id"])
            return 503, 0.0
        return 200, 0.0

    with Receiver(behaviour=every_third_fails) as receiver:
        endpoint = await add_endpoint(pg, receiver.url, ["*"])
        receiver.secret = endpoint.secret
        events = trip_events(n_trips=6, per_trip=6)
        await write_events(pg.sessionmaker, events)
        async with (
            WebhookWorker(pg.sessionmaker, FAST) as w1,
            WebhookWorker(pg.sessionmaker, FAST) as w2,
        ):
            await run_until([w1, w2], lambda: len(receiver.accepted()) >= len(events))
        accepted = receiver.accepted()
    versions: dict[int, list[int]] = defaultdict(list)
    for r in accepted:
        versions[r.envelope["data"]["trip_id"]].append(r.envelope["data"]["version"])
    assert len(failed_once) >= 3, "deliveries were refused and retried"
    assert all(v == list(range(1, 7)) for v in versions.values()), versions
    assert len(accepted) == len(events)
    assert len({r.envelope["id"] for r in accepted}) == len(events)


async def test_fan_out_per_subscription_and_network(pg: PgEnv) -> None:
    net = pg.demo.network_id
    a = await add_endpoint(pg, "http://127.0.0.1:9/a", ["trip.created"])
    b = await add_endpoint(pg, "http://127.0.0.1:9/b", ["boitier.*", "trip.*"])
    c = await add_endpoint(pg, "http://127.0.0.1:9/c", ["*"], network_ids=[net + 100])
    await write_events(
        pg.sessionmaker,
        [
            ("trip.created", "trip", 1, {"network_id": net}),
            ("trip.updated", "trip", 1, {"network_id": net}),
            ("boitier.locked", "vehicle", 3, {"network_id": net + 100}),
        ],
    )

    # two concurrent fan-outs never make a delivery twice
    async def one() -> int:
        async with pg.sessionmaker() as session, session.begin():
            return await fan_out(session)

    handled = await asyncio.gather(one(), one())
    assert sorted(handled) in ([0, 3], [3, 3]) or sum(handled) == 3
    async with pg.sessionmaker() as session:
        rows = (
            await session.execute(
                select(WebhookDelivery.endpoint_id, WebhookDelivery.topic).order_by(
                    WebhookDelivery.id
                )
            )
        ).all()
        unpublished = await session.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None))
        )
    assert sorted(rows) == sorted(
        [
            (a.id, "trip.created"),
            (b.id, "trip.created"),
            (b.id, "trip.updated"),
            (b.id, "boitier.locked"),
            (c.id, "boitier.locked"),
        ]
    )
    assert unpublished == 0


async def test_failing_endpoint_disabled_and_operator_told(pg: PgEnv) -> None:
    policy = replace(FAST, disable_after_failures=4, disable_after_s=0.0)
    with (
        Receiver(behaviour=lambda _n, _e: (500, 0.0)) as broken,
        Receiver() as ops,
    ):
        bad = await add_endpoint(pg, broken.url, ["trip.*"])
        watcher = await add_endpoint(pg, ops.url, ["webhook_endpoint.disabled"])
        ops.secret = watcher.secret
        await write_events(pg.sessionmaker, trip_events(n_trips=3, per_trip=2))
        async with WebhookWorker(pg.sessionmaker, policy) as worker:
            await run_until([worker], lambda: len(ops.accepted()) >= 1)
            n_broken = len(broken.snapshot())
            await asyncio.sleep(0.3)  # a disabled endpoint gets nothing more
            assert len(broken.snapshot()) == n_broken
        [told] = ops.accepted()
    assert told.envelope["event"] == "webhook_endpoint.disabled"
    assert told.envelope["data"]["id"] == bad.id and told.envelope["data"]["is_active"] is False
    assert "secret" not in told.envelope["data"]
    async with pg.sessionmaker() as session:
        endpoint = await session.get_one(WebhookEndpoint, bad.id)
        pending = await session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(
                WebhookDelivery.endpoint_id == bad.id,
                WebhookDelivery.status == DeliveryStatus.PENDING,
            )
        )
    assert endpoint.is_active is False and endpoint.disabled_at is not None
    assert endpoint.consecutive_failures >= 4 and endpoint.disabled_reason
    assert pending == 6  # kept: re-enabling the endpoint delivers them


async def test_gave_up_then_replayed_from_the_log(pg: PgEnv) -> None:
    healthy = {"ok": False}
    with Receiver(behaviour=lambda _n, _e: (200 if healthy["ok"] else 500, 0.0)) as receiver:
        endpoint = await add_endpoint(pg, receiver.url, ["dock.updated"])
        receiver.secret = endpoint.secret
        await write_events(pg.sessionmaker, [("dock.updated", "spot", 7, {"spot_id": 7})])
        async with WebhookWorker(pg.sessionmaker, FAST) as worker:
            # 1 attempt + 5 retries of the FAST schedule, then `failed`
            await run_until([worker], lambda: len(receiver.snapshot()) >= 6)
            await asyncio.sleep(0.3)
            assert len(receiver.snapshot()) == 6
            async with pg.sessionmaker() as session:
                [log] = await service.list_deliveries(session, endpoint.id)
                assert log.status == DeliveryStatus.FAILED and log.attempts == 6
                _, attempts = await service.get_delivery(session, log.id)
                assert [a.status_code for a in attempts] == [500] * 6
            healthy["ok"] = True
            async with pg.sessionmaker() as session, session.begin():
                replay = await service.replay_delivery(session, log.id)
            await run_until([worker], lambda: len(receiver.accepted()) == 1)
        [ok] = receiver.accepted()
    assert ok.envelope["id"] == event_id_for(log.outbox_id or 0)  # same event id as before
    assert ok.envelope["attemptId"] not in {a.attempt_id for a in attempts}
    async with pg.sessionmaker() as session:
        again = await session.get_one(WebhookDelivery, replay.id)
    assert again.status == DeliveryStatus.SUCCEEDED and again.replay_of_id == log.id


async def test_slow_receiver_does_not_slow_writers_nor_other_endpoints(
    pg: PgEnv, tmp_path: Path
) -> None:
    """The worker runs as its own process (`python -m kickstand.cloud.webhooks`), as deployed;
    outbox writers here only insert rows, whatever the receivers do."""
    events = [("trip.updated", "trip", i, {"trip_id": i, "version": 1}) for i in range(60)]
    async with pg.sessionmaker() as session, session.begin():
        await fan_out(session)  # nothing published before this test's endpoints exist
    env = {**os.environ, "DATABASE_URL": pg.url, "VAR_DIR": str(tmp_path)}
    cmd = [
        sys.executable,
        "-m",
        "kickstand.cloud.webhooks",
        "--concurrency",
        "8",
        "--per-endpoint",
        "2",
        "--poll-interval",
        "0.05",
    ]
    # The slow receiver takes 1 s per delivery, 2 at a time: 2 deliveries/s at best.
    with (
        Receiver(behaviour=lambda _n, _e: (200, 1.0)) as slow,
        Receiver() as fast,
    ):
        await add_endpoint(pg, slow.url, ["trip.*"])
        await add_endpoint(pg, fast.url, ["trip.*"])
        worker = await asyncio.create_subprocess_exec(
            *cmd, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        try:
            await write_events(pg.sessionmaker, events[:1])  # wait for the worker to be up
            assert await wait_for(lambda: bool(fast.accepted())), "the worker did not deliver"
            await write_events(pg.sessionmaker, events)
            # What the slow endpoint had received when the writers were done: writers that
            # waited for its deliveries could not finish before it had most of them.
            slow_when_written = len(slow.accepted())
            await wait_for(lambda: len(fast.accepted()) >= len(events) + 1)
            fast_done = len(fast.accepted())
            slow_done = len(slow.accepted())
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                _, stderr = await asyncio.wait_for(worker.communicate(), 15)
            except TimeoutError:
                worker.kill()
                _, stderr = await worker.communicate()
    assert slow_when_written < len(events) // 2, slow_when_written
    # the fast endpoint got everything while the slow one lags behind
    assert fast_done == len(events) + 1
    assert slow_done < len(events) // 2
    assert worker.returncode == 0, stderr.decode(errors="replace")[-2000:]
