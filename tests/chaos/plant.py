"""Kickstand as deployed — every part its own OS process, on services of its own — so a
chaos test can kill any part for real and then count, event by event, what survived.

    async with Plant(golden, tmp_path, {"st-0001": {1: "LY0001"}}) as plant:
        plant.broker.kill(); plant.broker.start()          # Mosquitto, kill -9
        plant.ingest[0].kill()                              # an ingest worker, kill -9
        plant.postgres.hold_starting_up(); plant.postgres.promote()
        plant.stations["st-0001"].link.cut()                # the station's cellular link
        plant.stations["st-0001"].agent.kill()              # the station agent, kill -9
        report = await plant.settle()                       # produced vs applied

The parts:

* Mosquitto (`MosquittoService`) and PostgreSQL (`PostgresCluster`: a copy of the
  session's migrated and seeded cluster) of the test's own;
* the rider API (`python -m kickstand.cloud api`) and ingest workers (`python -m
  kickstand.cloud ingest`), configured through the environment as deployed (DATABASE_URL,
  MQTT_URL, COMMAND_SIGNING_KEY_FILE, ...);
* per station: its spot boards simulated at the wire on a pty in this process, a
  cuttable TCP link to the broker (`LinkProxy`), and the REAL station agent (`python -m
  kickstand.edge.station --config`) as a process of its own.

What a device PRODUCED is read from the agent's own queue file: before the agent first
starts, a SQLite trigger is added to the file that copies every appended message (boot id,
seq, channel, device time, bytes) into a ledger table in the same transaction. The ledger
holds every message the agent ever stamped — delivered and deleted or not, across kill -9
and restarts (the agent's code is not touched; the trigger lives in its data).

What the cloud APPLIED is read from PostgreSQL: the `device.event` outbox row each applied
event writes (it carries boot id and seq) and `ingested_messages` (the dedupe keys of
events and command results).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import psycopg
from psycopg.rows import dict_row

from kickstand.edge.core import DiskQueue
from kickstand.protocol.signing import load_or_create_private_key, public_key_bytes
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1.messages import UpMessage
from kickstand.simulators.station.proxy import LinkProxy
from kickstand.simulators.station.sim import FAST, SimulatedStation
from kickstand.testing import MosquittoService, PostgresCluster
from kickstand.testing._process import ManagedProcess

log = logging.getLogger("tests.chaos.plant")

DATABASE = "kickstand"
ALICE = ("alice@example.com", "alice-demo-1")
#: (device id, boot id, seq): one sequenced message of one device.
Key = tuple[str, int, int]
_FOREIGN_PREFIXES = ("KICKSTAND_", "INFLUX_", "METRICS_", "JWT_", "API_", "RENT_", "COMMAND_")
_FOREIGN_NAMES = frozenset({"DATABASE_URL", "MQTT_URL", "VAR_DIR", "ENVIRONMENT"})
#: Ingest counters shown in a report (IngestStats fields).
INGEST_COUNTERS = ("applied", "duplicates", "retries", "acks_sent")


# -- the processes ------------------------------------------------------------------------


class _PythonProcess(ManagedProcess):
    """`python -m <module> ...` with the plant's environment; ready when its port answers."""

    start_timeout = 40.0  # two cores, several interpreters importing the cloud at once

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__()
        self.extra_env = dict(env)

    def _env(self) -> dict[str, str]:
        # A developer's own settings (KICKSTAND_* for agents, the cloud's names) must not
        # reach the plant's processes: the environment outranks their config files.
        inherited = {k: v for k, v in os.environ.items()
                     if not k.startswith(_FOREIGN_PREFIXES) and k not in _FOREIGN_NAMES}
        return {**inherited, **self.extra_env}


class ApiProcess(_PythonProcess):
    """The rider API with its MQTT command gateway (uvicorn)."""

    service_name = "api"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _env(self) -> dict[str, str]:
        return {**super()._env(), "VAR_DIR": str(self.base_dir / "var")}

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "kickstand.cloud", "api", "--host", self.host,
                "--port", str(self.port)]


class IngestProcess(_PythonProcess):
    """One ingest worker on the shared subscription; its port serves /metrics, which it
    opens once its worker is connected and subscribed."""

    service_name = "ingest"

    def __init__(self, env: Mapping[str, str], client_id_prefix: str) -> None:
        super().__init__(env)
        self.client_id_prefix = client_id_prefix

    def _env(self) -> dict[str, str]:
        return {**super()._env(), "VAR_DIR": str(self.base_dir / "var"),
                "METRICS_PORT": str(self.port)}

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "kickstand.cloud", "ingest", "--workers", "1",
                "--client-id-prefix", self.client_id_prefix]

    async def counters(self, names: tuple[str, ...]) -> Counter[str]:
        """Some of the worker's counters (`kickstand_ingest_<name>_total`) from its /metrics;
        empty when it does not answer (a killed worker's counts died with it)."""
        found: Counter[str] = Counter()
        if not self.running:
            return found
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                text = (await client.get(f"http://{self.host}:{self.port}/metrics")).text
        except httpx.HTTPError:
            return found
        for line in text.splitlines():
            for name in names:
                if line.startswith(f"kickstand_ingest_{name}_total"):
                    found[name] += int(float(line.rsplit(" ", 1)[1]))
        return found


class AgentProcess(_PythonProcess):
    """The real station agent on its config file; its port is the agent's health endpoint."""

    service_name = "agent"

    def __init__(self, config_path: Path) -> None:
        super().__init__({})
        self.config_path = config_path

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "kickstand.edge.station", "--config",
                str(self.config_path)]

    async def status(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=2) as client:
            response = await client.get(f"http://{self.host}:{self.port}/status")
        body: dict[str, Any] = response.json()
        return body


# -- what a device produced: the ledger in its queue file ---------------------------------

_LEDGER = """
CREATE TABLE IF NOT EXISTS chaos_ledger (
    boot_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    channel TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (boot_id, seq)
);
CREATE TRIGGER IF NOT EXISTS chaos_ledger_copy AFTER INSERT ON queue BEGIN
    INSERT OR IGNORE INTO chaos_ledger (boot_id, seq, channel, ts_ms, payload)
    VALUES (NEW.boot_id, NEW.seq, NEW.channel, NEW.ts_ms, NEW.payload);
END;
"""


@dataclass(frozen=True)
class Produced:
    device_id: str
    boot_id: int
    seq: int
    channel: Channel
    ts_ms: int
    payload: bytes

    @property
    def key(self) -> Key:
        return (self.device_id, self.boot_id, self.seq)

    def decode(self) -> UpMessage:
        return codec.decode_up(self.channel, self.payload)


class Ledger:
    """Every message one agent stamped, read from its queue file."""

    def __init__(self, device_id: str, queue_path: Path) -> None:
        self.device_id = device_id
        self.path = queue_path

    def install(self) -> None:
        """Create the agent's queue file (its own schema) with the ledger trigger in it."""
        DiskQueue(self.path).close()
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            db.execute("DELETE FROM boots")  # the boot of this DiskQueue: not the agent's
            db.executescript(_LEDGER)
            db.commit()

    def read(self) -> list[Produced]:
        with contextlib.closing(sqlite3.connect(self.path, timeout=5)) as db:
            rows = db.execute(
                "SELECT boot_id, seq, channel, ts_ms, payload FROM chaos_ledger "
                "ORDER BY boot_id, seq"
            ).fetchall()
        return [Produced(self.device_id, b, s, Channel(c), t, bytes(p)) for b, s, c, t, p in rows]


# -- a station: simulated boards, cuttable link, real agent process -----------------------


class Station:
    def __init__(
        self,
        device_id: str,
        workdir: Path,
        broker: MosquittoService,
        command_key: str,
        *,
        docked: Mapping[int, str],
        spots: int,
        agent_settings: Mapping[str, Any],
        nfc: bool = False,
    ) -> None:
        self.device_id = device_id
        self.workdir = workdir
        self.sim = SimulatedStation(device_id, spots, workdir=workdir, nfc=nfc)
        self.docked = dict(docked)
        self.link = LinkProxy(broker.host, broker.port)
        self.command_key = command_key
        self.agent_settings = dict(agent_settings)
        self.agent = AgentProcess(workdir / "station.toml")
        self.ledger = Ledger(device_id, workdir / "state" / "queue.db")

    async def start(self) -> None:
        await self.sim.start()
        for spot, serial in self.docked.items():
            self.sim.dock(spot, serial)
        await self.link.start()
        self.sim.write_config(
            self.agent.config_path,
            f"mqtt://{self.link.host}:{self.link.port}",
            [self.command_key],
            **{**FAST, **self.agent_settings, "health_port": self.agent.port},
        )
        self.ledger.install()
        await self.agent.start_async()

    async def accepted(self, within: float = 30.0) -> None:
        """Wait until the agent's (current) birth was accepted by the cloud."""
        await eventually(lambda: self._status_is("boot_accepted"), within,
                         f"{self.device_id} boot accepted")

    async def depth(self) -> int | None:
        """Messages still in the agent's queue (kept until the cloud's Ack); None when the
        agent does not answer."""
        try:
            status = await self.agent.status()
        except (httpx.HTTPError, ValueError):
            return None
        return int(status.get("queue", {}).get("depth", -1))

    async def _status_is(self, key: str) -> bool:
        try:
            return bool((await self.agent.status()).get(key))
        except (httpx.HTTPError, ValueError):
            return False

    async def stop(self) -> None:
        await asyncio.to_thread(self.agent.close)
        await self.link.stop()
        await self.sim.stop()


# -- the comparison -----------------------------------------------------------------------


@dataclass
class Report:
    """Produced (the agents' ledgers) against applied (the cloud's database)."""

    produced_events: int = 0
    produced_results: int = 0
    applied_events: int = 0  # device.event rows
    missing_events: list[Key] = field(default_factory=list)
    doubled_events: dict[Key, int] = field(default_factory=dict)
    unknown_events: list[Key] = field(default_factory=list)  # applied, never produced
    missing_results: list[Key] = field(default_factory=list)
    dead_letters: int = 0
    boots: dict[str, int] = field(default_factory=dict)  # boots per device
    #: Counters of the ingest workers alive at the end (resends deduped, retries, acks).
    ingest: dict[str, int] = field(default_factory=dict)
    #: What each agent still keeps queued at the end (0: the cloud acknowledged all).
    queued: dict[str, int | None] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return not (self.missing_events or self.doubled_events or self.unknown_events
                    or self.missing_results)

    def summary(self) -> str:
        return (
            f"events produced={self.produced_events} applied_rows={self.applied_events} "
            f"missing={len(self.missing_events)} doubled={len(self.doubled_events)} "
            f"unknown={len(self.unknown_events)}; results produced={self.produced_results} "
            f"missing={len(self.missing_results)}; dead_letters={self.dead_letters}; "
            f"boots={self.boots}; still queued on the devices {self.queued}; "
            f"live ingest counters {self.ingest}"
            + (f"; first missing={self.missing_events[:5]}" if self.missing_events else "")
            + (f"; doubled={list(self.doubled_events.items())[:5]}"
               if self.doubled_events else "")
        )


#: Fewer produced events than this and the scenario proved nothing.
MIN_EVENTS = 40


def check(report: Report, plant: Plant, min_events: int = MIN_EVENTS) -> None:
    """Every produced event applied exactly once (call it while the plant runs: its
    diagnostics read the processes' logs)."""
    print(f"\nchaos: {report.summary()}")
    assert report.produced_events >= min_events, report.summary()
    assert not report.unknown_events, f"applied but never produced: {report.summary()}"
    assert not report.doubled_events, f"applied twice: {report.summary()}"
    assert not report.missing_events and not report.missing_results, (
        f"lost: {report.summary()}\n{plant.diagnostics()}"
    )
    assert all(n == 0 for n in report.queued.values()), (
        f"applied, but the devices still keep (no Ack reached them): {report.summary()}"
    )


# -- the plant ----------------------------------------------------------------------------


class Plant:
    """``stations`` maps a seeded station device id to its docked vehicles {spot: serial}."""

    def __init__(
        self,
        golden: PostgresCluster,
        workdir: Path,
        stations: Mapping[str, Mapping[int, str]],
        *,
        ingest_workers: int = 1,
        spots: int = 6,
        unlock_window_s: int = 30,
        ack_timeout_s: float = 3.0,
        agent_acks: bool = True,
        nfc: bool = False,
    ) -> None:
        """``agent_acks=False``: agents of protocol v1 before the end-to-end Ack (they delete
        a message on the broker's PUBACK) — the control that shows the count sees losses.
        ``nfc``: each station has a simulated badge reader (``station.sim.present_badge``)."""
        self.golden = golden
        self.workdir = workdir
        self.station_plan = {k: dict(v) for k, v in stations.items()}
        self.n_ingest = ingest_workers
        self.spots = spots
        self.unlock_window_s = unlock_window_s
        self.ack_timeout_s = ack_timeout_s
        self.agent_acks = agent_acks
        self.nfc = nfc
        self.broker = MosquittoService()
        self.postgres = golden.clone()
        self.api: ApiProcess | None = None
        self.ingest: list[IngestProcess] = []
        self.stations: dict[str, Station] = {}
        self.env: dict[str, str] = {}
        self._stack = contextlib.AsyncExitStack()

    # -- lifecycle ------------------------------------------------------------------------

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
        self._stack.callback(self.broker.close)
        self._stack.callback(self.postgres.close)
        await asyncio.gather(self.broker.start_async(), self.postgres.start_async())
        key_path = self.workdir / "command-signing.key"
        public = public_key_bytes(load_or_create_private_key(key_path)).hex()
        self.env = {
            "ENVIRONMENT": "development",
            "DATABASE_URL": self.database_url,
            "MQTT_URL": self.broker.url,
            "COMMAND_SIGNING_KEY_FILE": str(key_path),
            "RENT_UNLOCK_WINDOW_S": str(self.unlock_window_s),
            "COMMAND_TIMEOUT_S": "5",
            # Deployed, the cloud merges Acks over 10 s and a device resends after 30 s;
            # the plant keeps that ratio on its shorter resend timeout.
            "ACK_DELAY_S": f"{self.ack_timeout_s / 3:g}",
        }
        self.api = ApiProcess(self.env)
        self._stack.callback(self.api.close)
        for n in range(self.n_ingest):
            worker = IngestProcess(self.env, f"chaos-ingest-{n}")
            self._stack.callback(worker.close)
            self.ingest.append(worker)
        await asyncio.gather(self.api.start_async(), *(w.start_async() for w in self.ingest))
        for device_id, docked in self.station_plan.items():
            station = Station(
                device_id, self.workdir / device_id, self.broker, public, docked=docked,
                spots=self.spots, nfc=self.nfc,
                agent_settings={"acks": self.agent_acks, "ack_timeout_s": self.ack_timeout_s,
                                "unlock_window_s": self.unlock_window_s},
            )
            self.stations[device_id] = station
        self._stack.push_async_callback(self._stop_stations)
        await asyncio.gather(*(s.start() for s in self.stations.values()))
        try:
            await asyncio.gather(*(s.accepted() for s in self.stations.values()))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnostics(60)}") from None

    async def _stop_stations(self) -> None:
        # Side by side: an agent takes a second to stop, a plant has several.
        await asyncio.gather(*(s.stop() for s in self.stations.values()))

    @property
    def database_url(self) -> str:
        return f"postgresql+asyncpg://postgres@{self.postgres.host}:{self.postgres.port}/{DATABASE}"

    @property
    def dsn(self) -> str:
        return self.postgres.dsn(DATABASE)

    # -- reading the database -------------------------------------------------------------

    async def rows(self, query: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        async with await psycopg.AsyncConnection.connect(
            self.dsn, autocommit=True, connect_timeout=3, row_factory=dict_row
        ) as conn:
            cursor = await conn.execute(query, params)
            return await cursor.fetchall()

    async def value(self, query: str, params: tuple[Any, ...] = ()) -> Any:
        rows = await self.rows(query, params)
        return next(iter(rows[0].values())) if rows else None

    def produced(self) -> list[Produced]:
        return [p for s in self.stations.values() for p in s.ledger.read()]

    async def compare(self) -> Report:
        produced = self.produced()
        events = {p.key for p in produced if p.channel is Channel.EVENT}
        results = {p.key for p in produced if p.channel is Channel.RESULT}
        devices = list(self.stations)
        applied = Counter(
            (r["payload"]["device_id"], int(r["payload"]["boot_id"]), int(r["payload"]["seq"]))
            for r in await self.rows(
                "SELECT payload FROM outbox WHERE topic = 'device.event'"
                " AND resource_id = ANY(%s)", (devices,))
        )
        ingested = {
            (r["device_id"], int(r["boot_id"]), int(r["seq"]))
            for r in await self.rows(
                "SELECT device_id, boot_id, seq FROM ingested_messages WHERE device_id = ANY(%s)",
                (devices,))
        }
        dead = 0
        if await self.value("SELECT to_regclass('dead_letters') IS NOT NULL"):
            dead = int(await self.value(
                "SELECT count(*) FROM dead_letters WHERE device_id = ANY(%s)", (devices,)))
        return Report(
            produced_events=len(events),
            produced_results=len(results),
            applied_events=sum(applied.values()),
            missing_events=sorted(k for k in events if applied[k] == 0),
            doubled_events={k: n for k, n in sorted(applied.items()) if n > 1},
            unknown_events=sorted(k for k in applied if k not in events),
            missing_results=sorted(k for k in results if k not in ingested),
            dead_letters=dead,
            boots=dict(Counter(d for d, _ in {(p.device_id, p.boot_id) for p in produced})),
        )

    async def settle(self, within: float = 20.0) -> Report:
        """Wait until every produced event is applied (or `within` is over), let late
        resends land, and compare."""
        deadline = time.monotonic() + within
        report = await self.compare()
        while report.missing_events or report.missing_results:
            # With no ingest process left (one crashed), nothing more can be applied.
            if time.monotonic() > deadline or not any(w.running for w in self.ingest):
                break
            await asyncio.sleep(0.5)
            report = await self.compare()
        # The devices learn of it: their queues empty as the cloud's Acks arrive. (And a
        # resend racing its own Ack would show up as a second application meanwhile.)
        queued = await self._queued()
        while any(n != 0 for n in queued.values()) and time.monotonic() < deadline + 5:
            await asyncio.sleep(0.5)
            queued = await self._queued()
        await asyncio.sleep(1.0)
        report = await self.compare()
        report.queued = queued
        totals: Counter[str] = Counter()
        for worker in self.ingest:
            totals.update(await worker.counters(INGEST_COUNTERS))
        report.ingest = dict(totals)
        log.warning("chaos_report %s", report.summary())
        return report

    async def _queued(self) -> dict[str, int | None]:
        return {d: await s.depth() for d, s in self.stations.items()}

    def diagnostics(self, lines: int = 25) -> str:
        """The last lines of every process's log."""
        parts = []
        for name, proc in [("api", self.api),
                           *((w.client_id_prefix, w) for w in self.ingest),
                           *((f"agent {d}", s.agent) for d, s in self.stations.items())]:
            if proc is not None:
                parts.append(f"--- {name} ---\n{proc.log_tail(lines)}")
        return "\n".join(parts)

    # -- load -----------------------------------------------------------------------------

    async def burst(self, seconds: float, *, period_s: float = 0.3,
                    spots: tuple[int, ...] = (4, 5, 6)) -> int:
        """Make every station report: the empty spots' boards heat past the alarm threshold
        and cool down again, one change every `period_s` per spot (one Temperature event
        per change, statuses with them). Returns the changes made."""
        changes = 0
        hot = False
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            hot = not hot
            for station in self.stations.values():
                for spot in spots:
                    if hot:
                        station.sim.overheat(spot)
                    else:
                        station.sim.cool(spot)
                    changes += 1
            await asyncio.sleep(period_s)
        if hot:  # end cool: the boards' last state is the quiet one
            for station in self.stations.values():
                for spot in spots:
                    station.sim.cool(spot)
                    changes += 1
        return changes

    # -- the rider's side -----------------------------------------------------------------

    async def login(self, email: str, password: str) -> dict[str, str]:
        assert self.api is not None
        async with httpx.AsyncClient(base_url=self.api.url, timeout=30) as http:
            r = await http.post("/v1/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['data']['token']}"}

    async def rent(self, headers: Mapping[str, str], spot_id: int, key: str
                   ) -> tuple[int, dict[str, Any]]:
        assert self.api is not None
        async with httpx.AsyncClient(base_url=self.api.url, timeout=30) as http:
            r = await http.post("/v1/rents", json={"spot_id": spot_id},
                                headers={**headers, "Idempotency-Key": key})
        return r.status_code, r.json()

    async def spot_id(self, device_id: str, number: int) -> int:
        return int(await self.value(
            "SELECT spots.id FROM spots JOIN stations ON stations.id = spots.station_id"
            " WHERE stations.device_id = %s AND spots.displayed_number = %s",
            (device_id, number)))

    async def wallet(self, email: str) -> Decimal:
        return Decimal(await self.value("SELECT wallet_balance FROM users WHERE email = %s",
                                        (email,)))

    async def sweep(self) -> None:
        """The ingest's periodic sweep (unlock windows closed with no event, holds past
        their limit, alert sweeps) now rather than at its next minute, with the same code."""
        from kickstand.cloud.db import create_engine, create_sessionmaker
        from kickstand.cloud.ingest.apply import BatchApplier, IngestStats

        engine = create_engine(self.database_url)
        try:
            await BatchApplier(create_sessionmaker(engine), IngestStats()).sweep()
        finally:
            await engine.dispose()


async def eventually(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.1)


def device_time(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, UTC)
