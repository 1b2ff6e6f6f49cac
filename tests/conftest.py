"""Fixtures for the real test services (kickstand.testing), started lazily on first use.

Session scope (one per run, started only when a test asks):
    mosquitto    MosquittoService   host, port, url (cloud login), device_url,
                                    cloud_username, cloud_password, stop(), start()
    pg_server    PostgresServer     create_database() -> url, new_database() -> Database,
                                    drop_database(name), dsn_for(name), url_for(name);
                                    the machine's server, or when none answers on
                                    127.0.0.1:5432 a cluster of the harness's own
    pg_cluster   PostgresCluster    a cluster of the harness's own, always (kill(), stop(),
                                    start(), hold_starting_up(), promote(), server())
    influx       InfluxService      url, database, query(), write(), stop(), start()

Function scope:
    pg_url            a fresh empty database's postgresql+asyncpg:// URL, dropped after
    pg_database       the same as a Database (name, url, dsn), dropped after
    influx_fresh      a fresh database name on the session InfluxDB, dropped after
    mosquitto_private / influx_private   a broker / InfluxDB of the test's own (to kill,
                                    stop or break without disturbing other tests)

A test that stops (or pauses, or holds starting up) a session service and fails before
starting it again does not break the tests after it: the service is started again (same
port, same data) at teardown.
Tests using these fixtures get the matching marker (mqtt, postgres, influx) added.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from kickstand.testing import (
    Database,
    InfluxService,
    MosquittoService,
    PostgresCluster,
    PostgresServer,
    open_postgres,
)
from kickstand.testing._process import ManagedProcess

log = logging.getLogger("kickstand.testing.fixtures")

MARKERS = {
    "mqtt": "needs the harness's Mosquitto broker",
    "postgres": "needs a fresh PostgreSQL database from the harness",
    "influx": "needs the harness's InfluxDB 1.6",
    "slow": "a long scenario (still part of make test)",
}

_FIXTURE_MARKERS = {
    "mosquitto": "mqtt",
    "mosquitto_private": "mqtt",
    "pg_server": "postgres",
    "pg_cluster": "postgres",
    "pg_url": "postgres",
    "pg_database": "postgres",
    "influx": "influx",
    "influx_fresh": "influx",
    "influx_private": "influx",
}

# Session services created so far, to restart one a failed test left stopped.
_session_services: list[ManagedProcess] = []


def pytest_configure(config: pytest.Config) -> None:
    declared = {line.split(":", 1)[0].strip() for line in config.getini("markers")}
    for name, text in MARKERS.items():
        if name not in declared:
            config.addinivalue_line("markers", f"{name}: {text}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        for fixture, marker in _FIXTURE_MARKERS.items():
            if fixture in fixtures and item.get_closest_marker(marker) is None:
                item.add_marker(marker)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    for service in _session_services:
        if service.paused:
            service.resume()
        if isinstance(service, PostgresCluster) and service.starting_up:
            service.promote()
        if not service.running:
            log.warning("session_service_restart service=%s test=%s",
                        service.service_name, item.nodeid)
            service.start()


# -- MQTT -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[MosquittoService]:
    with MosquittoService() as broker:
        _session_services.append(broker)
        try:
            yield broker
        finally:
            _session_services.remove(broker)


@pytest.fixture
def mosquitto_private() -> Iterator[MosquittoService]:
    with MosquittoService() as broker:
        yield broker


# -- PostgreSQL -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    with open_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    with PostgresCluster() as cluster:
        _session_services.append(cluster)
        try:
            yield cluster
        finally:
            _session_services.remove(cluster)


@pytest.fixture
def pg_database(pg_server: PostgresServer) -> Iterator[Database]:
    database = pg_server.new_database()
    try:
        yield database
    finally:
        pg_server.drop_database(database.name)


@pytest.fixture
def pg_url(pg_database: Database) -> str:
    return pg_database.url


# -- InfluxDB ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def influx() -> Iterator[InfluxService]:
    with InfluxService() as service:
        _session_services.append(service)
        try:
            yield service
        finally:
            _session_services.remove(service)


@pytest.fixture
def influx_fresh(influx: InfluxService) -> Iterator[str]:
    name = influx.create_database()
    try:
        yield name
    finally:
        influx.drop_database(name)


@pytest.fixture
def influx_private() -> Iterator[InfluxService]:
    with InfluxService() as service:
        yield service
