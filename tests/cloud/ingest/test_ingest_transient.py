"""Transient vs permanent database errors (by SQLSTATE, from the real PostgreSQL), and a
worker whose database refuses connections: it keeps the messages (no PUBACK, no dead
letter) and applies them once the database is back; it still stops when told to."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.ingest.tables import IngestedMessage
from kickstand.cloud.transient import is_transient
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m
from kickstand.testing import MosquittoService, PostgresCluster
from tests.cloud.conftest import _build_template
from tests.cloud.ingest.conftest import WorkerFactory
from tests.cloud.ingest.fakes import FakeDevice, eventually

Maker = async_sessionmaker[AsyncSession]

#: SQLSTATE → transient? Raised by the real server (RAISE … USING ERRCODE).
RAISED = {
    "57P03": True,  # cannot_connect_now: "the database system is starting up"
    "57P01": True,  # admin_shutdown
    "57P02": True,  # crash_shutdown
    "25006": True,  # read_only_sql_transaction (a replica not yet promoted, a failover)
    "08006": True,  # connection_failure
    "08001": True,  # sqlclient_unable_to_establish_sqlconnection
    "53300": True,  # too_many_connections
    "53100": True,  # disk_full
    "53200": True,  # out_of_memory
    "58030": True,  # io_error
    "40001": True,  # serialization_failure
    "40P01": True,  # deadlock_detected
    "55P03": True,  # lock_not_available
    "23505": False,  # unique_violation
    "23503": False,  # foreign_key_violation
    "22008": False,  # datetime_field_overflow
    "22021": False,  # character_not_in_repertoire (a NUL in a text)
    "22P02": False,  # invalid_text_representation
    "42P01": False,  # undefined_table (a bug)
    "57014": False,  # query_canceled (a statement timeout: the same batch times out again)
    "XX000": False,  # internal_error
}


@pytest.fixture
async def maker(pg_url: str) -> AsyncIterator[Maker]:
    engine = create_engine(pg_url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def _error_of(maker: Maker, sql: str, **params: object) -> BaseException:
    async with maker() as session:
        try:
            await session.execute(text(sql), params)
        except Exception as exc:
            return exc
    raise AssertionError(f"no error from {sql!r}")


@pytest.mark.parametrize(("sqlstate", "transient"), sorted(RAISED.items()))
async def test_raised_sqlstates_are_classified_by_class(
    maker: Maker, sqlstate: str, transient: bool
) -> None:
    exc = await _error_of(
        maker, f"DO $$ BEGIN RAISE EXCEPTION 'test' USING ERRCODE = '{sqlstate}'; END $$"
    )
    assert is_transient(exc) is transient, repr(exc)


async def test_real_failures_are_classified(maker: Maker, pg_url: str) -> None:
    # A value PostgreSQL cannot store: permanent.
    nul = await _error_of(maker, "SELECT CAST(:v AS text)", v="a\x00b")
    assert not is_transient(nul), repr(nul)
    overflow = await _error_of(maker, "SELECT to_timestamp(:v)", v=2.0**62)
    assert not is_transient(overflow), repr(overflow)
    # A lock another transaction holds, asked for with NOWAIT: transient (55P03).
    async with maker() as holder, holder.begin():
        await holder.execute(text("CREATE TABLE IF NOT EXISTS t_lock (id int primary key)"))
    async with maker() as holder, holder.begin():
        await holder.execute(text("LOCK TABLE t_lock IN ACCESS EXCLUSIVE MODE"))
        busy = await _error_of(maker, "LOCK TABLE t_lock IN ACCESS EXCLUSIVE MODE NOWAIT")
    assert is_transient(busy), repr(busy)
    # Our connection terminated by an administrator: transient (57P01 / invalidated).
    async with maker() as victim:
        pid = (await victim.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with maker() as admin:
            await admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        await asyncio.sleep(0.1)
        with pytest.raises(Exception) as killed:
            await victim.execute(text("SELECT 1"))
    assert is_transient(killed.value), repr(killed.value)
    # Nothing listening: transient.
    engine = create_engine(_with_port(pg_url, _free_port()))
    try:
        with pytest.raises(Exception) as refused:
            async with engine.connect():
                pass
    finally:
        await engine.dispose()
    assert is_transient(refused.value), repr(refused.value)
    # A bug is permanent.
    assert not is_transient(KeyError("x")) and not is_transient(ValueError("x"))


# -- a database that goes away and comes back -----------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


class TcpGate:
    """A TCP relay in front of the real server: ``close()`` refuses new connections and
    cuts the open ones (what a database restart looks like to a client), ``open()`` relays
    again on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = _free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))


@pytest.fixture
async def gate(pg_seeded_url: str) -> AsyncIterator[TcpGate]:
    parts = urlsplit(pg_seeded_url)
    gate = TcpGate(parts.hostname or "127.0.0.1", parts.port or 5432)
    await gate.open()
    try:
        yield gate
    finally:
        await gate.close()


@pytest.fixture
async def gated_maker(pg_seeded_url: str, gate: TcpGate) -> AsyncIterator[Maker]:
    engine = create_engine(_with_port(pg_seeded_url, gate.port))
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


def _birth() -> m.Birth:
    return m.Birth(kind=pe.DeviceKind.STATION, firmware="1.4.2", hardware="station-v1")


async def test_worker_keeps_messages_while_the_database_is_down(
    mosquitto: MosquittoService,
    start_worker: WorkerFactory,
    gate: TcpGate,
    gated_maker: Maker,
    pg_sessionmaker: Maker,
) -> None:
    worker = await start_worker(sessionmaker=gated_maker, dead_letters_per_hour=1)
    async with FakeDevice(mosquitto.host, mosquitto.port, "st-0001", boot_id=31) as dev:
        await dev.send(_birth())
        assert (await dev.expect(Channel.BOOT)).status is pe.BootStatus.ACCEPTED
        await gate.close()
        await dev.raw(Channel.EVENT, b"\xff")  # a dead letter to store: it waits too
        for seq in range(1, 6):
            await dev.send(m.PowerCut(), seq=seq)
        await eventually(lambda: _true(worker.stats.retries >= 6))
        assert worker.stats.applied == 1  # the birth only
        assert not worker.stats.dead_lettered and not worker.stats.dead_dropped
        await gate.open()

        async def applied() -> bool:
            return worker.stats.applied >= 6 and bool(worker.stats.dead_lettered)

        await eventually(applied, wait_s=20)
    # Retried many times, stored once, within a budget of one: retries spend no budget.
    assert worker.stats.dead_lettered == {"malformed": 1}
    assert not worker.stats.dead_dropped
    async with pg_sessionmaker() as s:
        keys = await s.scalar(
            select(func.count())
            .select_from(IngestedMessage)
            .where(IngestedMessage.device_id == "st-0001", IngestedMessage.boot_id == 31)
        )
    assert keys == 5


async def test_a_worker_stuck_on_a_dead_database_stops(
    mosquitto: MosquittoService, start_worker: WorkerFactory, gate: TcpGate, gated_maker: Maker
) -> None:
    worker = await start_worker(sessionmaker=gated_maker)
    await gate.close()
    async with FakeDevice(mosquitto.host, mosquitto.port, "st-0002", boot_id=32) as dev:
        await dev.send(_birth())
        await eventually(lambda: _true(worker.stats.retries >= 2))
    await asyncio.wait_for(worker.stop(), 5)


async def _true(value: bool) -> bool:
    return value


async def test_a_dead_letter_store_that_fails_holds_the_message_and_the_worker_lives(
    mosquitto: MosquittoService, start_worker: WorkerFactory, pg_sessionmaker: Maker
) -> None:
    """The dead-letter store is the last resort: when even it fails (here a trigger
    refuses every row, a permanent error), the message is neither dropped nor
    acknowledged, the worker retries and lives on; once the store works, it is kept."""
    refuse = (
        "CREATE FUNCTION refuse_letters() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'no letters today'; END $$",
        "CREATE TRIGGER refuse BEFORE INSERT ON dead_letters "
        "FOR EACH ROW EXECUTE FUNCTION refuse_letters()",
    )
    async with pg_sessionmaker() as session, session.begin():
        for statement in refuse:
            await session.execute(text(statement))
    worker = await start_worker()
    async with FakeDevice(mosquitto.host, mosquitto.port, "st-0004", boot_id=34) as dev:
        await dev.raw(Channel.STATUS, b"\xff")
        await eventually(lambda: _true(worker.stats.retries >= 2))
        assert not worker.stats.dead_lettered
        assert worker._task is not None and not worker._task.done()
        async with pg_sessionmaker() as session, session.begin():
            await session.execute(text("DROP TRIGGER refuse ON dead_letters"))
        await eventually(lambda: _true(worker.stats.dead_lettered["malformed"] == 1), wait_s=15)


# -- a database "starting up" (57P03), for real -----------------------------------------


@pytest.mark.slow
async def test_worker_waits_out_a_database_starting_up(
    mosquitto: MosquittoService, start_worker: WorkerFactory, pg_cluster: PostgresCluster
) -> None:
    """The cluster restarted as a standby that cannot finish starting: every connection
    gets 57P03 until it is promoted. Nothing is dropped meanwhile (issue 13: 756 events lost
    in 30 s), all is applied once after."""
    server = pg_cluster.server()
    url = server.create_database()
    await asyncio.to_thread(_build_template, url)
    engine = create_engine(url)
    maker = create_sessionmaker(engine)
    try:
        worker = await start_worker(sessionmaker=maker)
        async with FakeDevice(mosquitto.host, mosquitto.port, "st-0003", boot_id=33) as dev:
            await dev.send(_birth())
            assert (await dev.expect(Channel.BOOT)).status is pe.BootStatus.ACCEPTED
            await pg_cluster.hold_starting_up_async()
            for seq in range(1, 21):
                await dev.send(m.PowerCut(), seq=seq)
            await eventually(lambda: _true(worker.stats.retries >= 3), wait_s=20)
            assert worker.stats.applied == 1 and not worker.stats.dead_lettered
            await asyncio.to_thread(pg_cluster.promote)
            await eventually(lambda: _true(worker.stats.applied >= 21), wait_s=30)
        async with maker() as s:
            keys = await s.scalar(
                select(func.count())
                .select_from(IngestedMessage)
                .where(IngestedMessage.device_id == "st-0003")
            )
        assert keys == 20
    finally:
        await engine.dispose()
