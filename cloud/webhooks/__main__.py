"""`python -m kickstand.cloud.webhooks` (or `python -m kickstand.cloud webhooks`): a delivery
worker over DATABASE_URL until SIGINT / SIGTERM. Run as many as you like side by side."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace

from kickstand.cloud import metrics
from kickstand.cloud.config import get_settings
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.webhooks.delivery import DeliveryPolicy, WebhookWorker

log = logging.getLogger("kickstand.cloud.webhooks")


async def serve(
    database_url: str, policy: DeliveryPolicy | None = None, metrics_port: int = 0
) -> None:
    engine = create_engine(database_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    try:
        async with WebhookWorker(create_sessionmaker(engine), policy) as worker:
            metrics.serve(metrics_port)
            await worker.run(stop)
    finally:
        await engine.dispose()


def run(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kickstand.cloud webhooks")
    defaults = DeliveryPolicy()
    parser.add_argument(
        "--concurrency",
        type=int,
        default=defaults.concurrency,
        help="requests in flight at once (default %(default)s)",
    )
    parser.add_argument(
        "--per-endpoint",
        type=int,
        default=defaults.per_endpoint_concurrency,
        help="requests in flight at once to one endpoint (default %(default)s)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=defaults.poll_interval_s,
        help="seconds between polls when idle (default %(default)s)",
    )
    args = parser.parse_args(list(argv or []))
    settings = get_settings()
    policy = replace(
        DeliveryPolicy.for_settings(settings),
        concurrency=max(1, args.concurrency),
        per_endpoint_concurrency=max(1, args.per_endpoint),
        poll_interval_s=max(0.01, args.poll_interval),
    )
    asyncio.run(serve(settings.DATABASE_URL, policy, settings.METRICS_PORT))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sys.exit(run(sys.argv[1:]))
