"""The whole system on loopback, for the end-to-end journey and the unlock benchmark.

Real Mosquitto (from the harness) and PostgreSQL (a seeded database), the cloud as it
runs in production — ingest worker(s) on the shared subscription, the rider API under
uvicorn with the MQTT command gateway — and the REAL station agent against simulated
spot boards (``kickstand.simulators.station.StationRig``: pty spot bus, cuttable link).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import uvicorn
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kickstand.cloud.alerts.engine import AlertEngine
from kickstand.cloud.api import create_app
from kickstand.cloud.broker import free_port
from kickstand.cloud.commands import MqttCommandGateway, load_signer
from kickstand.cloud.commands.issuer import CommandIssuer
from kickstand.cloud.config import Settings
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.devices.identity import DeviceCa
from kickstand.cloud.ingest import IngestWorker
from kickstand.cloud.models import Spot, Station
from kickstand.simulators.station.sim import StationRig
from kickstand.testing import MosquittoService, PostgresServer
from kickstand.testing.mosquitto import API_ACCOUNT

log = logging.getLogger("tests.e2e.city")


class CloudClock:
    """The ingest workers' clock (``City(cloud_clock_ms=...)``), ``skew_ms`` apart from the
    API's, which signs the commands: stations sync to the ingest clock (BootReply,
    TimeReply), so they run that far off the signer."""

    def __init__(self) -> None:
        self.skew_ms = 0

    def __call__(self) -> int:
        return time.time_ns() // 1_000_000 + self.skew_ms


class City:
    """``stations`` maps a seeded station device id to its docked vehicles {spot: serial}."""

    def __init__(
        self,
        *,
        mqtt_url: str,
        broker_host: str,
        broker_port: int,
        database_url: str,
        workdir: Path,
        stations: Mapping[str, Mapping[int, str]],
        spots: int = 6,
        workers: int = 1,
        unlock_window_s: int = 30,
        command_timeout_s: float = 5.0,
        rig_overrides: Mapping[str, Any] | None = None,
        heartbeat_s: int = 30,
        cloud_clock_ms: Callable[[], int] | None = None,
        nfc: bool = False,
        settings: Mapping[str, Any] | None = None,
        api_mqtt_url: str | None = None,
    ) -> None:
        """``api_mqtt_url``: the API's own broker account (TLS broker: ``cloud-api``);
        None: the API logs in as ingest does (``mqtt_url``)."""
        self.workdir = workdir
        self.broker_host, self.broker_port = broker_host, broker_port
        self.settings = Settings(
            DATABASE_URL=database_url,
            MQTT_URL=mqtt_url,
            VAR_DIR=workdir / "var",
            COMMAND_TIMEOUT_S=command_timeout_s,
            RENT_UNLOCK_WINDOW_S=max(5, unlock_window_s),
            **(settings or {}),  # more of the cloud's settings (SMTP_HOST, …)
        )
        #: The API process's settings: its MQTT_URL its own account's when given.
        self.api_settings = (
            self.settings
            if api_mqtt_url is None
            else self.settings.model_copy(update={"MQTT_URL": api_mqtt_url})
        )
        self.station_plan = {k: dict(v) for k, v in stations.items()}
        self.spots = spots
        #: Stations with a simulated NFC badge at their reader (``rig.sim.present_badge``).
        self.nfc = nfc
        self.n_workers = workers
        #: The heartbeat interval the cloud gives the stations (liveness: 3 of them).
        self.heartbeat_s = heartbeat_s
        #: The ingest workers' clock (BootReply/TimeReply time), when a test sets it apart
        #: from the API's (which signs commands): the stations sync to it.
        self.cloud_clock_ms = cloud_clock_ms
        self.rig_overrides = {"unlock_window_s": unlock_window_s, **(rig_overrides or {})}
        self.engine: AsyncEngine | None = None
        self.sessionmaker: async_sessionmaker[AsyncSession] | None = None
        self.workers: list[IngestWorker] = []
        self.rigs: dict[str, StationRig] = {}
        self.gateway: MqttCommandGateway | None = None
        self.http: httpx.AsyncClient | None = None
        self._server: uvicorn.Server | None = None
        self._server_task: asyncio.Task[None] | None = None
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        settings = self.settings
        signer = load_signer(settings)  # development: created in VAR_DIR
        self.engine = create_engine(settings)
        self._stack.push_async_callback(_bounded, "engine", self.engine.dispose)
        self.sessionmaker = create_sessionmaker(self.engine)
        group = f"e2e{uuid.uuid4().hex[:8]}"
        alerts = AlertEngine()
        for n in range(self.n_workers):
            worker = IngestWorker(
                settings.MQTT_URL or "",
                self.sessionmaker,
                client_id=f"{group}-ingest-{n}",
                group=group,
                alerts=alerts,
                heartbeat_s=self.heartbeat_s,
                clock_ms=self.cloud_clock_ms,
                # As the ingest process does: it signs badge unlocks and list updates.
                issuer=CommandIssuer(
                    signer,
                    valid_s=settings.COMMAND_VALID_S,
                    sent_by=f"{group}-ingest-{n}",
                    unlock_window_s=settings.RENT_UNLOCK_WINDOW_S,
                ),
                # Certificate renewals (issue 17): signed when DEVICE_CA_DIR is set.
                device_ca=DeviceCa.from_settings(settings),
            )
            await worker.start()
            self._stack.push_async_callback(_bounded, f"worker {n}", worker.stop)
            self.workers.append(worker)
        keys = [signer.public_key.hex()]
        for device_id, docked in self.station_plan.items():
            rig = StationRig(
                device_id,
                self.broker_host,
                self.broker_port,
                command_keys=keys,
                workdir=self.workdir / device_id,
                spots=self.spots,
                nfc=self.nfc,
                **self.rig_overrides,
            )
            for spot, serial in docked.items():
                rig.sim.dock(spot, serial)
            await rig.start()
            self._stack.push_async_callback(_bounded, f"rig {device_id}", rig.stop)
            self.rigs[device_id] = rig
        for rig in self.rigs.values():
            await rig.accepted(within=15)
        self.gateway = MqttCommandGateway.from_settings(self.api_settings, self.sessionmaker)
        app = create_app(self.api_settings, command_gateway=self.gateway, engine=self.engine)
        port = free_port()
        # Keep-alive longer than any pause of a test (uvicorn's 5 s default closed an idle
        # connection just as the client reused it: ReadError after a 5 s wait).
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
            timeout_keep_alive=120,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._server_task = asyncio.create_task(self._server.serve())
        self._stack.push_async_callback(_bounded, "api server", self._stop_server)
        deadline = time.monotonic() + 15
        while not self._server.started:
            if self._server_task.done():
                self._server_task.result()
            if time.monotonic() > deadline:
                raise TimeoutError("uvicorn did not start")
            await asyncio.sleep(0.02)
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)
        self._stack.push_async_callback(_bounded, "http client", self.http.aclose)

    async def _stop_server(self) -> None:
        if self._server is not None and self._server_task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._server_task, 15)

    # -- helpers ------------------------------------------------------------------------

    def client(self) -> httpx.AsyncClient:
        assert self.http is not None
        return self.http

    async def login(self, email: str, password: str) -> dict[str, str]:
        r = await self.client().post("/v1/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['data']['token']}"}

    async def spot_id(self, device_id: str, number: int) -> int:
        assert self.sessionmaker is not None
        async with self.sessionmaker() as s:
            spot_id: int = (
                await s.execute(
                    select(Spot.id)
                    .join(Station, Station.id == Spot.station_id)
                    .where(Station.device_id == device_id, Spot.displayed_number == number)
                )
            ).scalar_one()
        return spot_id

    async def settled(self) -> None:
        """Every worker has applied everything it received."""
        await eventually(_all_idle(self.workers), 10)


@contextlib.asynccontextmanager
async def seeded_city(
    mosquitto: MosquittoService,
    pg_server: PostgresServer,
    pg_template: str,
    workdir: Path,
    **options: Any,
) -> AsyncIterator[City]:
    """A City on a fresh copy of the seeded database (dropped afterwards), on the harness's
    Mosquitto; ``options`` are City's (stations, heartbeat_s, …)."""
    database = pg_server.new_database(template=pg_template)
    try:
        async with City(
            mqtt_url=mosquitto.url,
            # The deployment's TLS policy: the API with its own account, as deployed.
            api_mqtt_url=(
                mosquitto.service_url(API_ACCOUNT) if mosquitto.tls is not None else None
            ),
            broker_host=mosquitto.host,
            broker_port=mosquitto.port,
            database_url=database.url,
            workdir=workdir,
            **options,
        ) as city:
            yield city
    finally:
        pg_server.drop_database(database.name)


async def _bounded(name: str, stop: Callable[[], Awaitable[object]], wait_s: float = 20) -> None:
    """Stop one part; a part that hangs is reported by name and left behind."""
    started = time.monotonic()
    try:
        await asyncio.wait_for(stop(), wait_s)
    except TimeoutError:
        log.error("event=city_stop_timeout part=%s wait_s=%s", name, wait_s)
        return
    log.info("event=city_part_stopped part=%s s=%.2f", name, time.monotonic() - started)


def _all_idle(workers: list[IngestWorker]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return all(w.idle for w in workers)

    return check


async def eventually(check: Callable[[], Awaitable[bool]], wait_s: float = 10.0) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {wait_s} s")
        await asyncio.sleep(0.05)
