"""Webhook fan-out: events per second delivered to 10 local receivers.

A fresh PostgreSQL database from the test harness (kickstand.testing) migrated to head;
10 endpoints subscribed to "*", each served by a receiver on loopback (standard-library
HTTP server, in a child process so it does not share our GIL) that verifies signatures.
N outbox events are written first; the clock runs from the first fan-out to the last
delivery recorded as succeeded (fan-out + signed POST + attempt log, all included).

    .venv/bin/python benchmarks/webhook_fanout.py [--events 300] [--endpoints 10] [--workers 2]

Last line: ``webhook deliveries/s: N``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import multiprocessing.connection
import time
from dataclasses import replace
from datetime import UTC, datetime

import httpx
from sqlalchemy import func, select

from kickstand.cloud import outbox
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.events.catalogue import TRIP_UPDATED
from kickstand.cloud.events.payloads import TripEvent
from kickstand.cloud.migrations import upgrade
from kickstand.cloud.webhooks import service
from kickstand.cloud.webhooks.delivery import DeliveryPolicy, WebhookWorker
from kickstand.cloud.webhooks.models import DeliveryStatus, WebhookDelivery
from kickstand.cloud.webhooks.receiver import Receiver
from kickstand.testing import open_postgres


def serve_receivers(n: int, conn: multiprocessing.connection.Connection) -> None:
    receivers = [Receiver().start() for _ in range(n)]
    conn.send([r.url for r in receivers])
    secrets = conn.recv()  # the endpoints' secrets, once registered
    for receiver, secret in zip(receivers, secrets, strict=True):
        receiver.secret = secret
    conn.recv()  # stop
    ok = sum(len([x for x in r.accepted() if x.signature_ok]) for r in receivers)
    conn.send(ok)
    for receiver in receivers:
        receiver.stop()


async def bare_posts(urls: list[str], total: int, concurrency: int) -> float:
    """Baseline: the same receivers, plain POSTs of a small JSON body, no database."""
    clients = {
        u: httpx.AsyncClient(limits=httpx.Limits(max_connections=max(1, concurrency // 2)))
        for u in urls
    }
    gate = asyncio.Semaphore(concurrency)
    body = (
        b'{"id":"x","attemptId":"y","created":0,"event":"trip.updated","data":{},"livemode":true}'
    )

    async def one(i: int) -> None:
        url = urls[i % len(urls)]
        async with gate:
            response = await clients[url].post(url, content=body)
            response.raise_for_status()

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(total)))
    elapsed = time.perf_counter() - t0
    for client in clients.values():
        await client.aclose()
    return total / elapsed


STARTED = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def _trip(trip_id: int, version: int) -> TripEvent:
    """A running trip's ``trip.updated`` (the payload of the busiest topic)."""
    return TripEvent(
        trip_id=trip_id,
        user_id=1,
        vehicle_id=trip_id,
        serial_number=f"BENCH{trip_id:04d}",
        network_id=1,
        rent_id=None,
        status="running",
        started_at=STARTED,
        ended_at=None,
        start_spot_id=None,
        end_spot_id=None,
        start_cluster_id=None,
        end_cluster_id=None,
        on_hold_since=None,
        billing_stopped_at=None,
        cost=None,
        currency="EUR",
        version=version,
    )


async def bench(url: str, events: int, endpoints: int, workers: int, concurrency: int) -> None:
    engine = create_engine(url, pool_size=10 * workers, max_overflow=10)
    await upgrade(engine)
    maker = create_sessionmaker(engine)
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=serve_receivers, args=(endpoints, child))
    proc.start()
    try:
        urls = parent.recv()
        secrets = []
        async with maker() as session, session.begin():
            for receiver_url in urls:
                ep = await service.create_endpoint(session, url=receiver_url, topics=["*"])
                secrets.append(ep.secret)
        bare_rate = await bare_posts(urls, min(2000, events * endpoints), concurrency * workers)
        parent.send(secrets)
        async with maker() as session, session.begin():
            for i in range(events):
                outbox.emit(session, TRIP_UPDATED, i % 50, _trip(i % 50, version=i))
        policy = replace(
            DeliveryPolicy(allow_internal_targets=True),  # a receiver on loopback
            concurrency=concurrency,
            per_endpoint_concurrency=max(1, concurrency // 2),
            poll_interval_s=0.01,
            batch_size=concurrency,
        )
        expected = events * endpoints
        stop = asyncio.Event()
        pool = [WebhookWorker(maker, policy) for _ in range(workers)]
        for w in pool:
            await w.__aenter__()
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(w.run(stop)) for w in pool]
        done = 0
        while done < expected:
            await asyncio.sleep(0.25)
            async with maker() as session:
                done = int(
                    await session.scalar(
                        select(func.count())
                        .select_from(WebhookDelivery)
                        .where(WebhookDelivery.status == DeliveryStatus.SUCCEEDED)
                    )
                    or 0
                )
            if time.perf_counter() - t0 > 300:
                raise SystemExit(f"timed out: {done}/{expected} delivered")
        elapsed = time.perf_counter() - t0
        stop.set()
        await asyncio.gather(*tasks)
        for w in pool:
            await w.__aexit__(None, None, None)
        parent.send("stop")
        verified = parent.recv()
        attempts = sum(w.counters["delivered"] + w.counters["failed_attempts"] for w in pool)
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.terminate()
        await engine.dispose()
    print(f"events: {events}, endpoints: {endpoints}, deliveries: {expected}")
    print(f"workers: {workers} x concurrency {concurrency}; attempts: {attempts}")
    print(f"signed deliveries verified by the receivers: {verified}")
    print(f"elapsed: {elapsed:.2f} s (fan-out, POST, attempt log; ordered per resource)")
    print(f"baseline, bare POSTs to the same receivers (no database): {bare_rate:.0f}/s")
    print(f"webhook deliveries/s: {expected / elapsed:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with open_postgres() as server:
        database = server.new_database()
        try:
            asyncio.run(
                bench(database.url, args.events, args.endpoints, args.workers, args.concurrency)
            )
        finally:
            server.drop_database(database.name)


if __name__ == "__main__":
    main()
