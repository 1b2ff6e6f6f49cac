"""`python -m kickstand.cloud ingest [--workers N] [--no-shared]`: run ingest workers.

Reads the cloud Settings (MQTT_URL, DATABASE_URL, INFLUX_URL, VAR_DIR). Workers use clean
sessions (nothing waits at the broker for a worker that is gone; the devices resend what
was not acknowledged end to end, see :mod:`kickstand.cloud.ingest.worker`); their client
ids (``<prefix>-<n>``) only name them in the broker's logs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Sequence

log = logging.getLogger("kickstand.cloud.ingest")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kickstand.cloud ingest")
    parser.add_argument("--workers", type=int, default=1, help="workers in this process")
    parser.add_argument(
        "--no-shared",
        action="store_true",
        help="plain subscription ks/v1/d/+/+ (brokers without $share; run ONE worker)",
    )
    parser.add_argument("--client-id-prefix", default=f"ingest-{socket.gethostname()}")
    parser.add_argument("--batch-max", type=int, default=1000)
    parser.add_argument("--heartbeat-s", type=int, default=30)
    return parser


async def serve(args: argparse.Namespace) -> int:
    from kickstand.cloud import metrics
    from kickstand.cloud.alerts.engine import AlertEngine
    from kickstand.cloud.commands import MqttCommandGateway
    from kickstand.cloud.commands.issuer import CommandIssuer
    from kickstand.cloud.config import get_settings
    from kickstand.cloud.db import create_engine, create_sessionmaker
    from kickstand.cloud.devices.identity import DeviceCa
    from kickstand.cloud.firmware.runner import CampaignRunner
    from kickstand.cloud.freefloat import FreeFloatHook
    from kickstand.cloud.geofence.store import GeofenceCache
    from kickstand.cloud.ingest.worker import IngestWorker
    from kickstand.cloud.telemetry import open_telemetry_store

    settings = get_settings()
    if not settings.MQTT_URL:
        print(
            "error: MQTT_URL is not set. A separate ingest process needs a broker; the "
            "embedded broker only lives inside `make run`.",
            file=sys.stderr,
        )
        return 2
    if args.no_shared and args.workers != 1:
        print("error: --no-shared runs exactly one worker", file=sys.stderr)
        return 2
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    store = open_telemetry_store(
        settings.INFLUX_URL,
        settings.INFLUX_DATABASE,
        settings.INFLUX_USERNAME,
        settings.INFLUX_PASSWORD,
        spool_dir=settings.VAR_DIR / "telemetry-spool",
        local_path=settings.VAR_DIR / "telemetry.sqlite3",
    )
    alerts = AlertEngine()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with store, contextlib.AsyncExitStack() as stack:
            # Geofencing: speed limits go out signed, through a command gateway of our own.
            commands = MqttCommandGateway.from_settings(settings, sessionmaker)
            await stack.enter_async_context(commands)
            freefloat = FreeFloatHook(GeofenceCache(), commands=commands, alerts=alerts)
            stack.push_async_callback(freefloat.aclose)
            # Firmware campaigns (issue 18): waves advanced and updates sent through the same
            # signed gateway; processes side by side take each campaign in turn (SKIP LOCKED).
            await stack.enter_async_context(
                CampaignRunner(
                    sessionmaker,
                    commands,
                    every_s=settings.FIRMWARE_CAMPAIGN_EVERY_S,
                    alerts=alerts,
                )
            )
            workers = [
                await stack.enter_async_context(
                    IngestWorker(
                        settings.MQTT_URL,
                        sessionmaker,
                        telemetry=store,
                        ack_delay_s=settings.ACK_DELAY_S,
                        client_id=f"{args.client_id_prefix}-{n}",
                        shared=not args.no_shared,
                        batch_max=args.batch_max,
                        heartbeat_s=args.heartbeat_s,
                        alerts=alerts,
                        sweep_alerts_every_s=60.0 if n == 1 else None,
                        freefloat=freefloat,
                        issuer=CommandIssuer.from_settings(settings, sent_by="ingest"),
                        device_ca=DeviceCa.from_settings(settings),
                    )
                )
                for n in range(1, args.workers + 1)
            ]
            metrics.serve(settings.METRICS_PORT)  # every worker's IngestStats, at scrape time
            log.info("event=ingest_running workers=%s", len(workers))
            waits = [asyncio.create_task(w.wait()) for w in workers]
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([stopper, *waits], return_when=asyncio.FIRST_COMPLETED)
            for task in [stopper, *waits]:
                task.cancel()
            for task in done:
                if task is not stopper and not task.cancelled() and task.exception():
                    log.error("event=ingest_worker_crashed error=%r", task.exception())
                    return 1
    finally:
        await engine.dispose()
    return 0


def run(argv: Sequence[str] | None = None) -> int:
    rest = list(argv) if argv is not None else sys.argv[1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    args = _parser().parse_args(rest)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sys.exit(run())
