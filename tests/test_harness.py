"""The test-services harness works against the real services it starts."""

from __future__ import annotations

import asyncio
import os
import queue
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from kickstand.testing import (
    Database,
    InfluxQueryError,
    InfluxService,
    MosquittoService,
    PortTakenError,
    PostgresCluster,
    PostgresServer,
    ServiceStartError,
    open_postgres,
)
from kickstand.testing._process import free_port, port_accepts
from kickstand.testing.pgcluster import sqlstate_of

TIMEOUT = 5.0


# -- a small synchronous paho client for the checks --------------------------------------


@dataclass
class Peer:
    client: mqtt.Client
    messages: queue.Queue[tuple[str, bytes]] = field(default_factory=queue.Queue)
    subacks: queue.Queue[list[int]] = field(default_factory=queue.Queue)

    def subscribe(self, topic: str, qos: int = 1) -> list[int]:
        result, _mid = self.client.subscribe(topic, qos=qos)
        assert result == mqtt.MQTT_ERR_SUCCESS
        return self.subacks.get(timeout=TIMEOUT)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout=TIMEOUT)
        assert info.is_published()

    def wait_for(self, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
        """Every message received until (topic, payload) arrives."""
        seen: list[tuple[str, bytes]] = []
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                message = self.messages.get(timeout=0.1)
            except queue.Empty:
                continue
            seen.append(message)
            if message == (topic, payload):
                return seen
        raise AssertionError(f"{topic} {payload!r} not received; got {seen}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect(
    broker: MosquittoService,
    client_id: str,
    *,
    cloud: bool = False,
    password: str | None = None,
    clean: bool = True,
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311,
) -> tuple[Peer, int]:
    """Connect and return the peer and the CONNACK reason code value."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
        clean_session=clean if protocol != MQTTProtocolVersion.MQTTv5 else None,
    )
    peer = Peer(client)
    if cloud:
        # The harness URL is what the cloud gets as MQTT_URL: use it as the cloud would.
        url = urlsplit(broker.url)
        assert url.username is not None and url.password is not None
        client.username_pw_set(unquote(url.username),
                               password if password is not None else unquote(url.password))
    connacks: queue.Queue[int] = queue.Queue()
    client.on_connect = lambda _c, _u, _f, rc, _p: connacks.put(rc.value)
    client.on_message = lambda _c, _u, msg: peer.messages.put((msg.topic, msg.payload))
    client.on_subscribe = lambda _c, _u, _mid, rcs, _p: peer.subacks.put([r.value for r in rcs])
    client.connect(broker.host, broker.port, keepalive=10)
    client.loop_start()
    return peer, connacks.get(timeout=TIMEOUT)


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    made: list[Peer] = []
    yield made
    for peer in made:
        peer.close()


def open_peer(peers: list[Peer], broker: MosquittoService, client_id: str, **kw: object) -> Peer:
    peer, rc = connect(broker, client_id, **kw)  # type: ignore[arg-type]
    peers.append(peer)
    assert rc == 0, f"{client_id} refused with reason {rc}"
    return peer


def device_id() -> str:
    return f"st-{uuid.uuid4().hex[:8]}"


# -- Mosquitto ---------------------------------------------------------------------------


def test_mosquitto_url_names_the_cloud_login(mosquitto: MosquittoService) -> None:
    url = urlsplit(mosquitto.url)
    assert url.scheme == "mqtt"
    assert (url.hostname, url.port) == ("127.0.0.1", mosquitto.port)
    assert url.username == mosquitto.cloud_username == "kickstand-cloud"
    assert unquote(url.password or "") == mosquitto.cloud_password
    assert mosquitto.device_url == f"mqtt://127.0.0.1:{mosquitto.port}"


def test_device_publish_reaches_the_cloud(mosquitto: MosquittoService,
                                          peers: list[Peer]) -> None:
    dev = device_id()
    cloud = open_peer(peers, mosquitto, f"cloud-{dev}", cloud=True)
    assert cloud.subscribe(f"ks/v1/d/{dev}/#") == [1]
    device = open_peer(peers, mosquitto, dev)
    device.publish(f"ks/v1/d/{dev}/evt", b"\xa1\x01\x02")
    assert cloud.wait_for(f"ks/v1/d/{dev}/evt", b"\xa1\x01\x02")


def test_device_cannot_publish_as_another_device(mosquitto: MosquittoService,
                                                 peers: list[Peer]) -> None:
    me, victim = device_id(), device_id()
    cloud = open_peer(peers, mosquitto, f"cloud-{me}", cloud=True)
    cloud.subscribe("ks/v1/d/+/#")
    device = open_peer(peers, mosquitto, me)
    device.publish(f"ks/v1/d/{victim}/evt", b"spoofed")
    device.publish(f"ks/v1/c/{me}/cmd", b"own command tree is read-only")
    device.publish(f"ks/v1/d/{me}/evt", b"sentinel")
    seen = cloud.wait_for(f"ks/v1/d/{me}/evt", b"sentinel")
    assert (f"ks/v1/d/{victim}/evt", b"spoofed") not in seen
    assert all(topic.startswith(f"ks/v1/d/{me}/") for topic, _ in seen), seen


@pytest.mark.parametrize(
    "protocol", [MQTTProtocolVersion.MQTTv311, MQTTProtocolVersion.MQTTv5], ids=["v311", "v5"]
)
def test_device_cannot_read_another_devices_commands(
    mosquitto: MosquittoService, peers: list[Peer], protocol: MQTTProtocolVersion
) -> None:
    me, victim = device_id(), device_id()
    spy = open_peer(peers, mosquitto, me, protocol=protocol)
    victim_peer = open_peer(peers, mosquitto, victim, protocol=protocol)
    spy.subscribe(f"ks/v1/c/{victim}/#")
    spy.subscribe("ks/v1/c/+/#")
    spy.subscribe(f"ks/v1/c/{me}/#")
    victim_peer.subscribe(f"ks/v1/c/{victim}/#")
    cloud = open_peer(peers, mosquitto, f"cloud-{me}", cloud=True)
    cloud.publish(f"ks/v1/c/{victim}/cmd", b"unlock spot 3")
    cloud.publish(f"ks/v1/c/{me}/cmd", b"sentinel")
    # The victim gets its command (so it was published), the spy never does.
    assert victim_peer.wait_for(f"ks/v1/c/{victim}/cmd", b"unlock spot 3")
    seen = spy.wait_for(f"ks/v1/c/{me}/cmd", b"sentinel")
    assert all(payload == b"sentinel" for _, payload in seen), seen


def test_device_cannot_read_device_telemetry(mosquitto: MosquittoService,
                                             peers: list[Peer]) -> None:
    me, other = device_id(), device_id()
    spy = open_peer(peers, mosquitto, me)
    spy.subscribe("ks/v1/d/#")
    spy.subscribe(f"ks/v1/c/{me}/#")
    other_peer = open_peer(peers, mosquitto, other)
    other_peer.publish(f"ks/v1/d/{other}/telemetry", b"gps")
    cloud = open_peer(peers, mosquitto, f"cloud-{me}", cloud=True)
    cloud.publish(f"ks/v1/c/{me}/cmd", b"sentinel")
    seen = spy.wait_for(f"ks/v1/c/{me}/cmd", b"sentinel")
    assert seen == [(f"ks/v1/c/{me}/cmd", b"sentinel")]


def test_wrong_cloud_password_is_refused(mosquitto: MosquittoService,
                                         peers: list[Peer]) -> None:
    peer, rc = connect(mosquitto, "cloud-impostor", cloud=True, password="guess")
    peers.append(peer)
    assert rc != 0  # "not authorised"


def test_shared_subscription_splits_messages_between_workers(
    mosquitto: MosquittoService, peers: list[Peer]
) -> None:
    dev = device_id()
    workers = [open_peer(peers, mosquitto, f"ingest-{dev}-{i}", cloud=True) for i in range(2)]
    for worker in workers:
        assert worker.subscribe(f"$share/ingest-{dev}/ks/v1/d/+/#") == [1]
    device = open_peer(peers, mosquitto, dev)
    sent = {f"m{i}".encode() for i in range(20)}
    for payload in sorted(sent):
        device.publish(f"ks/v1/d/{dev}/evt", payload)
    received: list[list[bytes]] = [[], []]
    deadline = time.monotonic() + TIMEOUT
    while sum(map(len, received)) < len(sent) and time.monotonic() < deadline:
        for i, worker in enumerate(workers):
            while not worker.messages.empty():
                received[i].append(worker.messages.get_nowait()[1])
        time.sleep(0.02)
    assert sorted(received[0] + received[1]) == sorted(sent)  # each message exactly once
    assert received[0] and received[1]  # and both workers got a share


def test_broker_restart_keeps_port_and_persistent_sessions(
    mosquitto_private: MosquittoService, peers: list[Peer]
) -> None:
    broker = mosquitto_private
    port, dev = broker.port, device_id()
    worker, rc = connect(broker, "ingest-durable", cloud=True, clean=False)
    assert rc == 0
    worker.subscribe("$share/ingest/ks/v1/d/+/#")
    worker.close()
    device = open_peer(peers, broker, dev)
    device.publish(f"ks/v1/d/{dev}/evt", b"queued while the worker was away")
    device.close()
    peers.remove(device)

    broker.stop()
    assert not broker.running
    assert not port_accepts(broker.host, port)
    broker.start()
    assert broker.port == port and port_accepts(broker.host, port)

    worker = open_peer(peers, broker, "ingest-durable", cloud=True, clean=False)
    assert worker.wait_for(f"ks/v1/d/{dev}/evt", b"queued while the worker was away")


_left_stopped_on: list[int] = []


def test_a_test_may_leave_the_session_broker_stopped(mosquitto: MosquittoService) -> None:
    _left_stopped_on.append(mosquitto.port)
    mosquitto.stop()
    assert not port_accepts(mosquitto.host, mosquitto.port)


def test_the_next_test_finds_it_running_again_on_the_same_port(
    mosquitto: MosquittoService, peers: list[Peer]
) -> None:
    # tests/conftest.py restarts a stopped session service at teardown.
    assert _left_stopped_on == [mosquitto.port]
    assert mosquitto.running
    open_peer(peers, mosquitto, device_id())


def test_paused_broker_hangs_and_resumes(mosquitto_private: MosquittoService,
                                        peers: list[Peer]) -> None:
    dev = device_id()
    cloud = open_peer(peers, mosquitto_private, f"cloud-{dev}", cloud=True)
    cloud.subscribe(f"ks/v1/d/{dev}/#")
    device = open_peer(peers, mosquitto_private, dev)
    mosquitto_private.pause()
    info = device.client.publish(f"ks/v1/d/{dev}/evt", b"during the hang", qos=1)
    time.sleep(0.3)
    assert not info.is_published()  # no PUBACK from a frozen broker
    mosquitto_private.resume()
    info.wait_for_publish(timeout=TIMEOUT)
    assert cloud.wait_for(f"ks/v1/d/{dev}/evt", b"during the hang")
    mosquitto_private.pause()  # close() must still stop a paused broker promptly


def test_service_refuses_a_port_someone_else_listens_on() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        service = MosquittoService(port=squatter.getsockname()[1])
        with pytest.raises(PortTakenError):
            service.start()
        service.close()


def test_failed_start_shows_the_service_log() -> None:
    # influxd's RPC port taken: influxd exits, and the error carries its own words.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        service = InfluxService()
        service.rpc_port = squatter.getsockname()[1]
        with pytest.raises(ServiceStartError) as failure:
            service.start()
        service.close()
    assert "address already in use" in failure.value.log_tail


def test_close_stops_the_process_and_removes_the_temp_dir() -> None:
    service = MosquittoService().start()
    pid, base_dir = service.pid, service.base_dir
    assert pid is not None and base_dir.is_dir()
    service.close()
    assert not base_dir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- PostgreSQL --------------------------------------------------------------------------

_seen_databases: list[str] = []


@pytest.mark.parametrize("round_", [1, 2])
def test_each_test_gets_a_fresh_empty_database(pg_database: Database, round_: int) -> None:
    assert pg_database.name not in _seen_databases
    _seen_databases.append(pg_database.name)
    with psycopg.connect(pg_database.dsn, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
        conn.execute("CREATE TABLE trip (id int PRIMARY KEY)")
        conn.execute("INSERT INTO trip VALUES (%s)", (round_,))


async def test_pg_url_is_an_sqlalchemy_asyncpg_url(pg_url: str) -> None:
    assert pg_url.startswith("postgresql+asyncpg://")
    engine = create_async_engine(pg_url)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT current_database()"))).scalar() \
                == PostgresServer.name_of(pg_url)
    finally:
        await engine.dispose()


def test_template_clone_and_drop(pg_server: PostgresServer) -> None:
    template = pg_server.new_database()
    with psycopg.connect(template.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE station (id int)")
        conn.execute("INSERT INTO station VALUES (7)")
    clone = pg_server.new_database(template=template.name)
    assert clone.name != template.name
    with psycopg.connect(clone.dsn) as conn:
        assert conn.execute("SELECT id FROM station").fetchall() == [(7,)]
    for database in (clone, template):
        pg_server.drop_database(database.url)
    with psycopg.connect(pg_server.dsn_for("postgres")) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)",
            ([clone.name, template.name],),
        ).fetchall()
    assert left == []


# -- InfluxDB ----------------------------------------------------------------------------


def _select(url: str, database: str, q: str) -> list[list[object]]:
    response = httpx.post(f"{url}/query", params={"db": database, "q": q}, timeout=TIMEOUT)
    response.raise_for_status()
    series = response.json()["results"][0].get("series", [])
    return [row for s in series for row in s["values"]]


def test_influx_write_and_read_back(influx: InfluxService, influx_fresh: str) -> None:
    lines = (
        "vehicle_telemetry,vehicle=KS000123 battery=81i,speed=14.5 1700000000000000000\n"
        "vehicle_telemetry,vehicle=KS000124 battery=55i,speed=0 1700000001000000000\n"
    )
    response = httpx.post(f"{influx.url}/write", params={"db": influx_fresh},
                          content=lines.encode(), timeout=TIMEOUT)
    assert response.status_code == 204, response.text
    rows = _select(influx.url, influx_fresh,
                   "SELECT battery, speed FROM vehicle_telemetry ORDER BY time")
    assert rows == [["2023-11-14T22:13:20Z", 81, 14.5], ["2023-11-14T22:13:21Z", 55, 0]]
    # The fresh database is the test's own: the service's default database has none of it.
    assert _select(influx.url, influx.database, "SELECT * FROM vehicle_telemetry") == []


def test_influx_rejects_bad_line_protocol(influx: InfluxService, influx_fresh: str) -> None:
    with pytest.raises(InfluxQueryError) as failure:
        influx.write("no fields here", database=influx_fresh)
    assert failure.value.status == 400


def test_influx_restart_keeps_port_and_data(influx_private: InfluxService) -> None:
    influx = influx_private
    port = influx.port
    influx.write("station_power,station=S1 volts=12.6 1700000000000000000")
    influx.stop()
    assert not port_accepts(influx.host, port)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{influx.url}/ping", timeout=1)
    influx.start()
    assert influx.port == port
    assert _select(influx.url, influx.database, "SELECT volts FROM station_power") == [
        ["2023-11-14T22:13:20Z", 12.6]
    ]


def test_influx_with_auth_refuses_anonymous_writes() -> None:
    with InfluxService(auth=True) as influx:
        anonymous = httpx.post(f"{influx.url}/write", params={"db": influx.database},
                               content=b"m v=1", timeout=TIMEOUT)
        assert anonymous.status_code == 401
        influx.write("m v=1 1700000000000000000")  # with the admin login
        assert influx.env["INFLUX_USERNAME"] == influx.username


# -- PostgreSQL: a cluster of the harness's own ---------------------------------------------


def _rows(dsn: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, connect_timeout=2) as conn:
        return conn.execute(query).fetchall()


def test_own_cluster_survives_kill_9_with_its_data(pg_cluster: PostgresCluster) -> None:
    server = pg_cluster.server()
    database = server.new_database()
    port, pid = pg_cluster.port, pg_cluster.pid
    assert pid is not None
    with psycopg.connect(database.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE ride (id int PRIMARY KEY)")
        conn.execute("INSERT INTO ride VALUES (1), (2)")
    pg_cluster.kill()
    assert not pg_cluster.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(psycopg.OperationalError):
        _rows(database.dsn, "SELECT 1")
    pg_cluster.start()  # crash recovery from the WAL
    assert pg_cluster.port == port
    assert _rows(database.dsn, "SELECT id FROM ride ORDER BY id") == [(1,), (2,)]
    server.close()
    assert _rows(pg_cluster.dsn(), "SELECT count(*) FROM pg_database WHERE datname = "
                 f"'{database.name}'") == [(0,)]


def test_own_cluster_stop_and_start_keep_port_and_data(pg_cluster: PostgresCluster) -> None:
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS harness_note (note text)")
        conn.execute("INSERT INTO harness_note VALUES ('before the stop')")
    pg_cluster.stop()
    assert not port_accepts(pg_cluster.host, pg_cluster.port)
    pg_cluster.start()
    assert ("before the stop",) in _rows(pg_cluster.dsn(), "SELECT note FROM harness_note")


def test_starting_up_mode_refuses_with_57p03_until_promoted(pg_cluster: PostgresCluster) -> None:
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS harness_held (n int)")
        conn.execute("INSERT INTO harness_held VALUES (1)")
    pg_cluster.hold_starting_up()
    assert pg_cluster.starting_up
    for _ in range(3):  # for as long as the test wants, not a passing moment
        with pytest.raises(psycopg.OperationalError) as refused:
            psycopg.connect(pg_cluster.dsn(), connect_timeout=2)
        assert sqlstate_of(refused.value) == "57P03", refused.value
        time.sleep(0.3)
    pg_cluster.promote()
    assert not pg_cluster.starting_up
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        conn.execute("INSERT INTO harness_held VALUES (2)")  # writable: a primary again
    assert (1,) in _rows(pg_cluster.dsn(), "SELECT n FROM harness_held")
    pg_cluster.restart()  # and it stays a primary across restarts
    assert _rows(pg_cluster.dsn(), "SELECT pg_is_in_recovery()") == [(False,)]


def test_a_failover_may_answer_read_only_before_the_promotion(
    pg_cluster: PostgresCluster,
) -> None:
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS harness_failover (n int)")
    pg_cluster.hold_starting_up(hot_standby=True)
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(pg_cluster.dsn(), connect_timeout=2)
    assert sqlstate_of(refused.value) == "57P03"
    pg_cluster.serve_read_only()
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as read_only:
            conn.execute("INSERT INTO harness_failover VALUES (1)")
        assert read_only.value.sqlstate == "25006"
    pg_cluster.promote()
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO harness_failover VALUES (2)")


async def test_start_async_keeps_the_event_loop_running(pg_cluster: PostgresCluster) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    await pg_cluster.stop_async()
    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    try:
        before = ticks
        await pg_cluster.start_async()  # crash-free start: well over 20 ms of waiting
        during = ticks - before
    finally:
        ticker.cancel()
    assert _rows(pg_cluster.dsn(), "SELECT 1") == [(1,)]
    assert during >= 2, "the loop ran while the cluster started"


def test_a_test_may_leave_the_cluster_held_starting_up(pg_cluster: PostgresCluster) -> None:
    pg_cluster.hold_starting_up()


def test_the_next_test_finds_it_promoted(pg_cluster: PostgresCluster) -> None:
    assert not pg_cluster.starting_up
    assert _rows(pg_cluster.dsn(), "SELECT pg_is_in_recovery()") == [(False,)]


def test_clone_has_the_data_on_its_own_port(pg_cluster: PostgresCluster) -> None:
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS harness_cloned (n int)")
        conn.execute("INSERT INTO harness_cloned VALUES (7)")
    pg_cluster.stop()
    with pg_cluster.clone() as copy:
        assert copy.port != pg_cluster.port and copy.data_dir != pg_cluster.data_dir
        with psycopg.connect(copy.dsn(), autocommit=True) as conn:
            conn.execute("INSERT INTO harness_cloned VALUES (8)")
        assert (7,) in _rows(copy.dsn(), "SELECT n FROM harness_cloned")
    pg_cluster.start()
    assert (8,) not in _rows(pg_cluster.dsn(), "SELECT n FROM harness_cloned")


def test_open_postgres_starts_a_cluster_when_no_server_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PGHOST", raising=False)
    monkeypatch.delenv("PGPORT", raising=False)
    nobody = free_port()
    with open_postgres(port=nobody) as server:
        assert server.port != nobody
        database = server.new_database()
        assert _rows(database.dsn, "SELECT current_database()") == [(database.name,)]
        base = server.port
    assert not port_accepts("127.0.0.1", base)  # the cluster went with the block
