"""A PostgreSQL cluster of the harness's own: `initdb` in a temp dir, on a free loopback port.

The distribution's `postgresql` package (`pg_config --bindir`, /usr/lib/postgresql/*/bin),
trust auth, superuser `postgres`, fsync off unless asked for. Like Mosquitto and InfluxDB
it is a ManagedProcess: stopped, killed (-9, the whole process group, as a crash would)
and started again on the same port with the same data (crash recovery on a kill).

    with PostgresCluster() as cluster:
        server = cluster.server()          # a PostgresServer: new_database(), ...
        cluster.kill(); cluster.start()    # crash recovery
        cluster.hold_starting_up()         # answers 57P03 "the database system is starting up"
        cluster.serve_read_only()          # (optional) a hot standby: writes fail with 25006
        cluster.promote()                  # ... until this: accepts connections again
        copy = cluster.clone()             # (stopped) the same data, another port and dir

`hold_starting_up()` restarts the cluster as a standby (`standby.signal`) whose
`restore_command` waits for a flag file: the startup process cannot even read the
checkpoint record, so every connection is refused with 57P03, for as long as the test
wants. `promote()` drops the flag (the standby replays its own pg_wal; with hot_standby
off it still refuses with 57P03, never answers read-only) and promotes it (`pg_ctl
promote`): a primary again, same data. `serve_read_only()` in between is the failover a
client may also meet: the standby replayed its WAL and accepts connections, read-only
(`25006 cannot execute INSERT in a read-only transaction`), until it is promoted.

`open_postgres()` is the server the suite uses: the machine's when one answers, else a
cluster of our own for as long as the block runs (a fresh machine needs nothing running).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg

from ._process import LOOPBACK, ManagedProcess, RunAs
from .errors import ServiceNotInstalledError, ServiceStartError, ServiceStateError
from .postgres import PostgresServer

log = logging.getLogger("kickstand.testing.pgcluster")

SUPERUSER = "postgres"
#: The system user the server runs as when we are root (postgres refuses to run as root).
SYSTEM_USER = "postgres"
#: SQLSTATE of "the database system is starting up" (class 57, cannot_connect_now).
CANNOT_CONNECT_NOW = "57P03"
_HARNESS_CONF = "kickstand.conf"
_STANDBY_CONF = "kickstand-standby.conf"


def postgres_bindir() -> Path:
    """The directory of `initdb`, `postgres` and `pg_ctl` (the newest installed version)."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10, check=False).stdout.strip()
            if out:
                candidates.append(Path(out))

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path))

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version,
                                           reverse=True)]
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(os.path.realpath(found)).parent)
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK)
               for name in ("initdb", "postgres", "pg_ctl", "pg_controldata")):
            return bindir
    raise ServiceNotInstalledError("postgresql", "initdb")


def sqlstate_of(exc: psycopg.Error) -> str | None:
    """The SQLSTATE of an error, also of a refused connection (psycopg has it only in the
    message there)."""
    if exc.sqlstate:
        return exc.sqlstate
    if "the database system is starting up" in str(exc):
        return CANNOT_CONNECT_NOW
    return None


class PostgresCluster(ManagedProcess):
    """`postgres -D <temp dir>` on a free loopback port, initialised at first start."""

    service_name = "postgres"
    start_timeout = 30.0
    # SIGTERM is the "smart" shutdown, which waits for every client to leave; SIGINT is
    # the "fast" one (clients disconnected, a clean checkpoint).
    stop_signal = signal.SIGINT
    run_as = SYSTEM_USER

    def __init__(self, *, host: str = LOOPBACK, port: int | None = None, fsync: bool = False,
                 max_connections: int = 200) -> None:
        self.bindir = postgres_bindir()
        super().__init__(host=host, port=port)
        self.fsync = fsync
        self.max_connections = max_connections
        self.data_dir = self.base_dir / "data"
        self.wal_released_path = self.base_dir / "wal-released"
        self._run_as = RunAs.named(self.run_as)
        self._starting_up = False
        self._hot_standby = False
        self._copy_from: Path | None = None

    # -- addresses ------------------------------------------------------------------------

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def server(self) -> PostgresServer:
        """Admin access to this cluster (fresh databases, dropped at the server's close)."""
        return PostgresServer(host=self.host, port=self.port, user=SUPERUSER, password="")

    def connect(self, database: str = "postgres", timeout: float = 2.0
                ) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.dsn(database), autocommit=True,
                               connect_timeout=max(1, int(timeout)))

    # -- the "starting up" mode -----------------------------------------------------------

    @property
    def starting_up(self) -> bool:
        """Held as a standby waiting for WAL (see `hold_starting_up`)."""
        return self._starting_up and self.running

    def hold_starting_up(self, *, hot_standby: bool = False) -> None:
        """Restart as a standby that cannot finish starting: every connection gets 57P03
        until `promote()`. Returns once a connection was refused that way. `hot_standby`:
        allow `serve_read_only()` before the promotion."""
        self.stop()
        self._enter_standby(hot_standby)
        try:
            self.start()
        except BaseException:
            self._leave_standby()
            raise

    async def hold_starting_up_async(self, *, hot_standby: bool = False) -> None:
        """`hold_starting_up()` for a caller on an event loop (see `start_async`)."""
        await self.stop_async()
        self._enter_standby(hot_standby)
        try:
            await self.start_async()
        except BaseException:
            self._leave_standby()
            raise

    def _enter_standby(self, hot_standby: bool) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.wal_released_path.unlink()
        # The shell's parent is the startup process: when a stop kills that, stop waiting.
        wait = (f'while [ ! -e "{self.wal_released_path}" ] && kill -0 $PPID 2>/dev/null; '
                "do sleep 0.05; done; exit 1")
        # hot_standby off: once its WAL is read the standby still refuses with 57P03 (and
        # never answers read-only in between) until it is promoted.
        self._write_owned(
            self.data_dir / _STANDBY_CONF,
            f"restore_command = '{wait}'\nhot_standby = {'on' if hot_standby else 'off'}\n",
        )
        self._write_owned(self.data_dir / "standby.signal", "")
        self._starting_up = True
        self._hot_standby = hot_standby

    def serve_read_only(self, timeout: float = 30.0) -> None:
        """Let a standby held with `hot_standby=True` read its WAL: it then accepts
        connections, read-only, until `promote()`."""
        if not (self._starting_up and self._hot_standby):
            raise ServiceStateError("postgres is not held starting up with hot_standby")
        self._write_owned(self.wal_released_path, "")
        self._wait(lambda: self._in_recovery() is True, time.monotonic() + timeout,
                   "accept read-only connections")

    def promote(self, timeout: float = 30.0) -> None:
        """End `hold_starting_up()`: let the standby read its WAL, then promote it."""
        if not self._starting_up:
            raise ServiceStateError("postgres is not held starting up")
        self._write_owned(self.wal_released_path, "")
        deadline = time.monotonic() + timeout
        # `pg_ctl promote` refuses a server that has not yet entered archive recovery.
        self._wait(lambda: self._control_state() == "in archive recovery", deadline,
                   "enter archive recovery")
        result = subprocess.run(
            [str(self.bindir / "pg_ctl"), "promote", "-D", str(self.data_dir), "-w",
             "-t", str(int(timeout))],
            capture_output=True, text=True, timeout=timeout + 5, check=False,
            user=self._run_as.user, group=self._run_as.group,
            extra_groups=self._run_as.extra_groups,
        )
        if result.returncode != 0:
            raise ServiceStartError("postgres", f"pg_ctl promote failed: {result.stderr}",
                                    self.log_tail())
        self._wait(lambda: self._in_recovery() is False, deadline, "leave recovery")
        self._leave_standby()

    def _control_state(self) -> str | None:
        """'Database cluster state' of pg_controldata ('in archive recovery', ...)."""
        result = subprocess.run(
            [str(self.bindir / "pg_controldata"), "-D", str(self.data_dir)],
            capture_output=True, text=True, timeout=10, check=False,
            user=self._run_as.user, group=self._run_as.group,
            extra_groups=self._run_as.extra_groups,
        )
        for line in result.stdout.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "Database cluster state":
                return value.strip()
        return None

    def _leave_standby(self) -> None:
        self._starting_up = False
        for name in (_STANDBY_CONF, "standby.signal"):
            with contextlib.suppress(FileNotFoundError):
                (self.data_dir / name).unlink()

    def _in_recovery(self) -> bool | None:
        """pg_is_in_recovery(), or None while connections are refused."""
        try:
            with self.connect() as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        except psycopg.OperationalError:
            return None
        return bool(row and row[0])

    def _wait(self, ready: Callable[[], bool], deadline: float, what: str) -> None:
        while not ready():
            if time.monotonic() > deadline:
                raise ServiceStartError("postgres", f"did not {what} in time", self.log_tail())
            time.sleep(0.05)

    # -- copies ---------------------------------------------------------------------------

    def clone(self, *, fsync: bool | None = None) -> PostgresCluster:
        """A new cluster (own dir and port, not started) holding a copy of this one's data.
        This one must be stopped (a consistent copy without a base backup)."""
        if self.running:
            raise ServiceStateError("stop the cluster before cloning it")
        if not (self.data_dir / "PG_VERSION").exists():
            raise ServiceStateError("the cluster was never started: nothing to clone")
        copy = PostgresCluster(host=self.host, fsync=self.fsync if fsync is None else fsync,
                               max_connections=self.max_connections)
        copy._copy_from = self.data_dir
        return copy

    # -- ManagedProcess hooks -------------------------------------------------------------

    def _prepare(self) -> None:
        self._run_as.chown(self.base_dir)
        if self._copy_from is not None:
            self._as_user(["cp", "-a", str(self._copy_from), str(self.data_dir)], "copy")
        else:
            self._as_user(
                [str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                 "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync",
                 "--no-instructions"],
                "initdb",
            )
            with open(self.data_dir / "postgresql.conf", "a") as conf:
                conf.write(f"\ninclude_if_exists = '{_HARNESS_CONF}'\n"
                           f"include_if_exists = '{_STANDBY_CONF}'\n")
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "postmaster.pid").unlink()
        fsync = "on" if self.fsync else "off"
        self._write_owned(
            self.data_dir / _HARNESS_CONF,
            "# Written by kickstand.testing.pgcluster at every first start.\n"
            f"listen_addresses = '{self.host}'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.base_dir}'\n"
            f"max_connections = {self.max_connections}\n"
            f"fsync = {fsync}\n"
            f"full_page_writes = {fsync}\n"
            "shared_buffers = 32MB\n"
            "log_min_messages = warning\n"
            "log_line_prefix = '%m [%p] '\n",
        )

    def _command(self) -> list[str]:
        return [str(self.bindir / "postgres"), "-D", str(self.data_dir)]

    def _ready(self) -> bool:
        try:
            with self.connect(timeout=1) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError as exc:
            return self._starting_up and sqlstate_of(exc) == CANNOT_CONNECT_NOW
        return not self._starting_up

    # -- helpers --------------------------------------------------------------------------

    def _as_user(self, cmd: list[str], what: str) -> None:
        result = subprocess.run(
            cmd, cwd=self.base_dir, capture_output=True, text=True, timeout=120, check=False,
            user=self._run_as.user, group=self._run_as.group,
            extra_groups=self._run_as.extra_groups,
        )
        if result.returncode != 0:
            raise ServiceStartError("postgres", f"{what} failed", result.stderr + result.stdout)

    def _write_owned(self, path: Path, text: str) -> None:
        path.write_text(text)
        self._run_as.chown(path)


@contextlib.contextmanager
def open_postgres(*, host: str | None = None, port: int | None = None
                  ) -> Iterator[PostgresServer]:
    """The suite's PostgreSQL: the machine's server (`host`/`port`, else PGHOST / PGPORT,
    else 127.0.0.1:5432) when it answers; when it does not and no PGHOST / PGPORT names
    one, a cluster of the harness's own for as long as the block runs."""
    server = PostgresServer(host=host, port=port)
    if server.reachable() or os.environ.get("PGHOST") or os.environ.get("PGPORT"):
        with server:
            yield server
        return
    log.info("postgres_own_cluster reason=no server on %s:%s", server.host, server.port)
    with PostgresCluster() as cluster, cluster.server() as own:
        yield own
