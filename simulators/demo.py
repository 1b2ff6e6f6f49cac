"""`make run`: the whole system on embedded defaults, with a simulated city.

    python -m kickstand.simulators.demo [--api-port 8000] [--broker-port 1883]

One process, one event loop:

- the MQTT broker: ``MQTT_URL`` when set, else an in-process broker (amqtt) on
  ``--broker-port`` (the next free port when it is taken);
- the database: ``DATABASE_URL`` (default SQLite ``var/kickstand.sqlite3``), migrated
  and seeded with the Lyon demo network and its geofencing zones;
- telemetry: ``INFLUX_URL`` when set, else the local store ``var/telemetry.sqlite3``;
- the cloud: the rider/operator API (uvicorn), an ingest worker with fleet alerts and
  the geofencing hook, the webhook delivery worker;
- mail: ``SMTP_HOST`` when set, else an in-process SMTP sink that saves every mail
  (sign-up confirmations, password resets) as a file in ``var/mail/``;
- the devices: the seed's four stations, spot boards emulated on pseudo terminals and
  each driven by the real station agent, and the seed's free-floating scooters, their
  GPS / lock box / battery emulated and each driven by the real vehicle agent.

Ctrl-C stops everything cleanly. This module lives with the simulators because it
starts them; the cloud and the agents run unmodified.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shlex
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("kickstand.simulators.demo")

BANNER = """
Kickstand is running (Ctrl-C to stop)

  rider/operator API   http://{api}   (OpenAPI: http://{api}/docs)
  MQTT broker          {broker}
  database             {database}
  telemetry            {telemetry}
  stations             {stations}
  free-floating        {vehicles}
  mail                 {mail}
  scenario control     127.0.0.1:{control}, every command it knows:
                       {python} -m kickstand.simulators station ctl --port {control} help

Demo accounts: alice@example.com / alice-demo-1 (rider), operator@example.com / operator-demo-1

Try it (a rider unlocks bike LY0001 in spot 1 of st-0001, rides, docks at st-0002):
  API=http://{api}
  TOKEN=$(curl -s -X POST $API/v1/auth/login -H 'content-type: application/json' \
          -d '{{"email":"alice@example.com","password":"alice-demo-1"}}' | python3 -c \
          'import json,sys; print(json.load(sys.stdin)["data"]["token"])')
  curl -s -w '\\n' -X POST $API/v1/rents -H "authorization: Bearer $TOKEN" \
       -H 'content-type: application/json' -H "Idempotency-Key: $(date +%s)" -d '{{"spot_id": 1}}'
  {python} -m kickstand.simulators station ctl --port {control} st-0001 take 1
  {python} -m kickstand.simulators station ctl --port {control} st-0002 dock 5 LY0001
  sleep 2  # the station reports the dock; the cloud ends and bills the trip
  curl -s -w '\\n' $API/v1/trips -H "authorization: Bearer $TOKEN"
{signup}"""

#: Shown when mails land in the sink's folder: a rider signs up and confirms the mailed code
#: (the mail is sent just after the sign-up's answer: hence the pause).
SIGNUP = """
Sign up a rider (the confirmation mail lands in {maildir}/):
  API=http://{api}
  curl -s -X POST $API/v1/auth/signup -H 'content-type: application/json' \\
       -d '{{"email":"me@example.com","password":"my-password-1","accept_terms":true}}'
  sleep 1; MAIL=$(ls -t {maildir}/*.eml | head -1); cat "$MAIL"
  CODE=$(grep -o 'code in the app: [A-Za-z0-9]*' "$MAIL" | cut -d' ' -f5)
  curl -s -X POST $API/v1/auth/email/confirm -H 'content-type: application/json' \\
       -d "{{\\"token\\":\\"$CODE\\"}}"
  curl -s -X POST $API/v1/auth/login -H 'content-type: application/json' \\
       -d '{{"email":"me@example.com","password":"my-password-1"}}'
"""


class _QuietServer:
    """A uvicorn server that leaves the process's signals to this launcher."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        self.server = Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))

    async def serve(self) -> None:
        await self.server.serve()

    def stop(self) -> None:
        self.server.should_exit = True


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _pick_port(host: str, preferred: int, tries: int = 100) -> int:
    """``preferred``, else the next free port after it (the banner says which)."""
    for port in range(preferred, min(preferred + tries, 65536)):
        if _port_free(host, port):
            if port != preferred:
                log.warning("event=port_taken port=%s using=%s", preferred, port)
            return port
    raise OSError(f"no free port in {preferred}..{preferred + tries - 1} on {host}")


async def _prepare_database(settings: Any) -> tuple[list[str], list[tuple[str, float, float]]]:
    """Migrate, seed, add the demo zones; returns station device ids and free-floating vehicles."""
    from sqlalchemy import select

    from kickstand.cloud.db import create_engine, create_sessionmaker
    from kickstand.cloud.geofence.store import seed_zones
    from kickstand.cloud.migrations import upgrade
    from kickstand.cloud.models import Station, Vehicle
    from kickstand.cloud.seed import seed_demo

    engine = create_engine(settings)
    try:
        await upgrade(engine)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session, session.begin():
            refs = await seed_demo(session)
            await seed_zones(session, refs.network_id)
        async with sessionmaker() as session:
            stations = list((await session.scalars(select(Station.device_id))).all())
            floating = [
                (v.serial_number, v.longitude, v.latitude)
                for v in await session.scalars(select(Vehicle).where(Vehicle.spot_id.is_(None)))
                if v.longitude is not None and v.latitude is not None
            ]
    finally:
        await engine.dispose()
    return sorted(s for s in stations if s), sorted(floating)


async def _wait_online(fleet: Any, vehicles: Any, timeout_s: float = 60.0) -> None:
    """Until every station and vehicle was accepted by the cloud: the banner's journey
    then works as soon as it is printed."""
    stations = [r.agent.link.accepted.wait() for r in fleet.rigs.values() if r.agent is not None]
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*stations)
            await vehicles.wait_online(timeout_s=timeout_s)
    except TimeoutError:
        log.warning(
            "event=devices_not_online stations_accepted=%s of=%s",
            fleet.accepted(),
            len(fleet.rigs),
        )


async def run(args: argparse.Namespace) -> int:
    from kickstand.cloud.alerts.engine import AlertEngine
    from kickstand.cloud.api import create_app
    from kickstand.cloud.broker import EmbeddedBroker, MqttUrl
    from kickstand.cloud.commands import MqttCommandGateway
    from kickstand.cloud.commands.gateway import create_gateway
    from kickstand.cloud.commands.issuer import CommandIssuer
    from kickstand.cloud.commands.keys import load_signer
    from kickstand.cloud.config import get_settings
    from kickstand.cloud.db import create_engine, create_sessionmaker
    from kickstand.cloud.firmware.runner import CampaignRunner
    from kickstand.cloud.freefloat import FreeFloatHook
    from kickstand.cloud.geofence.store import GeofenceCache
    from kickstand.cloud.ingest.worker import IngestWorker
    from kickstand.cloud.seed import ensure_development
    from kickstand.cloud.telemetry import open_telemetry_store
    from kickstand.cloud.webhooks.delivery import DeliveryPolicy, start_worker
    from kickstand.simulators.station.fleet import StationFleet
    from kickstand.simulators.station.scenario import ControlServer, ScenarioController
    from kickstand.simulators.vehicle.fleet import VehicleFleet

    settings = get_settings()
    ensure_development(settings.ENVIRONMENT)  # the demo seed's passwords are public
    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    stations, floating = await _prepare_database(settings)
    signer = load_signer(settings)
    keys = [signer.public_key.hex()]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async with contextlib.AsyncExitStack() as stack:
        if settings.MQTT_URL:
            cloud_url, shared = settings.MQTT_URL, True
            broker = MqttUrl.parse(cloud_url)
            device_url = f"mqtt://{broker.host}:{broker.port}"
        else:
            port = _pick_port(args.host, args.broker_port)
            cloud_url = device_url = await stack.enter_async_context(
                EmbeddedBroker(args.host, port)
            )
            shared = False  # amqtt has no $share: exactly one ingest worker
        maildir: Path | None = None
        if settings.SMTP_HOST is None:
            from kickstand.testing.mailsink import MailSink

            maildir = (settings.VAR_DIR / "mail").resolve()
            sink = stack.enter_context(MailSink(directory=maildir))
            settings = settings.model_copy(update={"SMTP_HOST": sink.host, "SMTP_PORT": sink.port})
            mail = f"SMTP sink smtp://{sink.host}:{sink.port}, each mail saved in {maildir}/"
        else:
            mail = f"SMTP server {settings.SMTP_HOST}:{settings.SMTP_PORT}"
        engine = create_engine(settings)
        stack.push_async_callback(engine.dispose)
        sessionmaker = create_sessionmaker(engine)
        store = open_telemetry_store(
            settings.INFLUX_URL,
            settings.INFLUX_DATABASE,
            settings.INFLUX_USERNAME,
            settings.INFLUX_PASSWORD,
            spool_dir=settings.VAR_DIR / "telemetry-spool" / "demo",
            local_path=settings.VAR_DIR / "telemetry.sqlite3",
        )
        await stack.enter_async_context(store)

        alerts = AlertEngine()
        ingest_commands = MqttCommandGateway.from_settings(
            settings, sessionmaker, mqtt_url=cloud_url
        )
        await stack.enter_async_context(ingest_commands)
        freefloat = FreeFloatHook(GeofenceCache(), commands=ingest_commands, alerts=alerts)
        stack.push_async_callback(freefloat.aclose)
        await stack.enter_async_context(
            IngestWorker(
                cloud_url,
                sessionmaker,
                telemetry=store,
                ack_delay_s=settings.ACK_DELAY_S,
                client_id="ingest-demo",
                shared=shared,
                alerts=alerts,
                sweep_alerts_every_s=60.0,
                freefloat=freefloat,
                # Badge rides and authorization lists: ingest signs its own commands.
                issuer=CommandIssuer.from_settings(settings, sent_by="ingest-demo"),
            )
        )
        # Firmware campaigns (issue 18): advanced beside ingest, through its signed gateway.
        await stack.enter_async_context(
            CampaignRunner(
                sessionmaker,
                ingest_commands,
                every_s=settings.FIRMWARE_CAMPAIGN_EVERY_S,
                alerts=alerts,
            )
        )
        webhooks = await start_worker(sessionmaker, DeliveryPolicy.for_settings(settings))
        stack.push_async_callback(webhooks.stop)

        app = create_app(
            settings,
            command_gateway=create_gateway(settings, mqtt_url=cloud_url, sessionmaker=sessionmaker),
        )
        api = _QuietServer(app, args.host, _pick_port(args.host, args.api_port))
        api_task = asyncio.create_task(api.serve(), name="api")

        workdir = settings.VAR_DIR / "demo"
        fleet = await stack.enter_async_context(
            StationFleet(
                len(stations), mqtt_url=device_url, keys=keys, workdir=workdir / "stations"
            )
        )
        vehicles = await stack.enter_async_context(
            VehicleFleet(
                workdir / "vehicles",
                mqtt_host=MqttUrl.parse(device_url).host,
                mqtt_port=MqttUrl.parse(device_url).port,
                command_keys=keys,
            )
        )
        for serial, lon, lat in floating:
            await vehicles.add(serial, position=(lon, lat))
        control = ControlServer(
            {d: ScenarioController(r.sim, r) for d, r in fleet.rigs.items()},
            port=_pick_port("127.0.0.1", args.control_port),
        )
        await control.start()
        stack.push_async_callback(control.stop)
        await _wait_online(fleet, vehicles)

        print(
            BANNER.format(
                api=f"{args.host}:{api.server.config.port}",
                broker=MqttUrl.parse(device_url).safe()
                + (
                    ""
                    if settings.MQTT_URL
                    else " (in-process) — development only: binds no device identity;"
                    " production devices use Mosquitto's TLS listener (deploy/README.md)"
                ),
                database=settings.DATABASE_URL.split("@")[-1],
                telemetry=settings.INFLUX_URL
                or f"local store {settings.VAR_DIR}/telemetry.sqlite3",
                stations=", ".join(fleet.rigs),
                vehicles=", ".join(serial for serial, _, _ in floating) or "none",
                control=control.port,
                python=shlex.quote(sys.executable),
                mail=mail,
                signup=""
                if maildir is None
                else SIGNUP.format(api=f"{args.host}:{api.server.config.port}", maildir=maildir),
            ),
            flush=True,
        )
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({stopper, api_task}, return_when=asyncio.FIRST_COMPLETED)
        print("stopping…", flush=True)
        api.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(api_task, 10)
        stopper.cancel()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kickstand.simulators.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--api-port", type=int, default=int(os.environ.get("API_PORT", "8000")))
    parser.add_argument("--broker-port", type=int, default=1883)
    parser.add_argument("--control-port", type=int, default=7100)
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    os.environ.setdefault("ENVIRONMENT", "development")
    Path("var").mkdir(exist_ok=True)
    from kickstand.cloud.seed import DemoSeedRefusedError

    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130
    except DemoSeedRefusedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
