"""The test-services harness: real Mosquitto, PostgreSQL and InfluxDB on loopback.

    from kickstand.testing import MosquittoService, PostgresServer, InfluxService
    from kickstand.testing import PostgresCluster, open_postgres

Each service runs in its own temp dir on a free port chosen by the kernel, never reuses a
service someone else left running, is bounded by timeouts, shows its log when it fails
to start, and is cleaned up on exit. tests/conftest.py wraps them as pytest fixtures.
"""

from .errors import (
    HarnessError,
    PortTakenError,
    PostgresUnavailableError,
    ServiceNotInstalledError,
    ServiceStartError,
    ServiceStateError,
)
from .influx import InfluxQueryError, InfluxService
from .mosquitto import DeviceTls, MosquittoService
from .pgcluster import PostgresCluster, open_postgres
from .postgres import Database, PostgresServer

__all__ = [
    "Database",
    "DeviceTls",
    "HarnessError",
    "InfluxQueryError",
    "InfluxService",
    "MosquittoService",
    "PortTakenError",
    "PostgresCluster",
    "PostgresServer",
    "PostgresUnavailableError",
    "ServiceNotInstalledError",
    "ServiceStartError",
    "ServiceStateError",
    "open_postgres",
]
