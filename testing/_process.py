"""One supervised service process: a temp dir, a log file, a port, start/stop with timeouts.

The concrete services (Mosquitto, InfluxDB, a PostgreSQL cluster; the chaos suite's cloud
processes and agents) write their config into the temp dir and hand the command line to
`ManagedProcess`. Everything here is bounded in time: starting waits at most
`start_timeout` for readiness, stopping escalates `stop_signal` -> SIGKILL.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import ctypes
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from .errors import PortTakenError, ServiceNotInstalledError, ServiceStartError, ServiceStateError

log = logging.getLogger("kickstand.testing.process")

LOOPBACK = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


def free_port(host: str = LOOPBACK) -> int:
    """A port nobody listens on right now, chosen by the kernel (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_binary(service: str, *candidates: str) -> str:
    """The first existing executable among the candidates (absolute paths or names on PATH)."""
    for candidate in candidates:
        if os.path.isabs(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
        else:
            found = shutil.which(candidate)
            if found:
                return found
    raise ServiceNotInstalledError(service, candidates[0])


@dataclass(frozen=True)
class RunAs:
    """`subprocess` arguments that run a child as a system user (only root changes user)."""

    user: int | None = None
    group: int | None = None
    extra_groups: list[int] | None = None

    @classmethod
    def named(cls, name: str | None) -> RunAs:
        if name is None or os.geteuid() != 0:
            return cls()
        entry = pwd.getpwnam(name)
        return cls(entry.pw_uid, entry.pw_gid, [])

    def chown(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.user, self.group if self.group is not None else -1)


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file ('' when there is none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _load_prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Resolved once here: the child, between fork and exec, must not dlopen (a lock another
# thread held at fork time would hang it).
_PRCTL = _load_prctl()


def _die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    def arm() -> None:
        # Runs in the child between fork and exec (after a change of user, which would
        # clear it): if the test process dies (even by SIGKILL), the kernel sends the
        # service `sig`, so no broker outlives the run.
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, sig)

    return arm


class ManagedProcess(abc.ABC):
    """A service binary in its own temp dir, listening on one fixed loopback port.

    The port and the temp dir are chosen once; `stop()` then `start()` brings the service
    back on the same port with the same data. Subclasses implement `_command()` and may
    override `_ready()` (default: the port accepts TCP connections).
    """

    service_name = "service"
    start_timeout = 20.0
    stop_timeout = 10.0
    #: What `stop()` sends first (PostgreSQL's SIGTERM waits for its clients: it takes SIGINT).
    stop_signal: int = signal.SIGTERM
    #: A system user to run the service as (PostgreSQL refuses to run as root); None: ours.
    run_as: str | None = None

    def __init__(self, *, host: str = LOOPBACK, port: int | None = None) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._tmp = tempfile.TemporaryDirectory(prefix=f"kickstand-{self.service_name}-")
        self.base_dir = Path(self._tmp.name)
        self.log_path = self.base_dir / f"{self.service_name}.out.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False
        self._started_once = False
        self._paused = False
        self._lock = threading.Lock()
        # Last resort when nobody calls close(): kill the process at garbage collection
        # or interpreter exit.
        self._finalizer = weakref.finalize(self, ManagedProcess._reap, [None])

    # -- subclass hooks -------------------------------------------------------------------

    @abc.abstractmethod
    def _command(self) -> list[str]:
        """The service's command line."""

    def _prepare(self) -> None:  # noqa: B027 (an optional hook: doing nothing is right)
        """Write config files before the first start (called once)."""

    def _env(self) -> dict[str, str] | None:
        """The service's environment (None: ours)."""
        return None

    def _ready(self) -> bool:
        return port_accepts(self.host, self.port)

    def _after_start(self) -> None:  # noqa: B027 (an optional hook: doing nothing is right)
        """Runs once the service is ready (e.g. create a database)."""

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused and self.running

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    def start(self) -> Self:
        if not self._spawn_once():
            return self
        try:
            self._wait_ready()
            self._after_start()
        except BaseException:
            self._terminate()
            raise
        self._log_started()
        return self

    async def start_async(self) -> Self:
        """`start()` for a caller on an event loop: the process is spawned from this (main)
        thread, so it still dies with us, and the wait for readiness does not block the
        loop (simulated hardware on it keeps answering the agent being started)."""
        if not self._spawn_once():
            return self
        try:
            deadline = time.monotonic() + self.start_timeout
            # Polled: another process's readiness has no event to await.
            while not self._check_ready(deadline):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            self._after_start()
        except BaseException:
            self._terminate()
            raise
        self._log_started()
        return self

    def _spawn_once(self) -> bool:
        """Spawn the process unless it runs; False when it already ran."""
        with self._lock:
            if self._closed:
                raise ServiceStateError(f"{self.service_name} was closed; make a new one")
            if self.running:
                return False
            if not getattr(self, "_prepared", False):
                self._prepare()
                self._prepared = True
            self._wait_port_free(grace=3.0 if self._started_once else 0.0)
            self._spawn()
            self._started_once = True
        return True

    def _log_started(self) -> None:
        log.info("service_started service=%s port=%d pid=%s", self.service_name, self.port,
                 self.pid)

    def stop(self) -> None:
        """Graceful stop (`stop_signal`, then SIGKILL after `stop_timeout`); data stays."""
        with self._lock:
            self._terminate(sig=self.stop_signal)

    async def stop_async(self) -> None:
        """`stop()` without blocking an event loop (the wait runs in a thread)."""
        await asyncio.to_thread(self.stop)

    def kill(self) -> None:
        """Crash the service (SIGKILL to its whole process group, as a machine crash
        would: no helper process outlives it) to test recovery; data written so far stays."""
        with self._lock:
            self._terminate(sig=signal.SIGKILL)

    def pause(self) -> None:
        """Freeze the service (SIGSTOP): connections stay open but nothing answers, the
        way a hung broker or a network partition looks to a client."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                raise ServiceStateError(f"{self.service_name} is not running")
            self._proc.send_signal(signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        """Undo `pause()` (SIGCONT)."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.send_signal(signal.SIGCONT)
            self._paused = False

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the service and delete its temp dir."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._terminate(sig=self.stop_signal)
        self._finalizer.detach()
        with contextlib.suppress(OSError):
            self._tmp.cleanup()

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------

    def _wait_port_free(self, grace: float) -> None:
        # A restart reuses our port: if someone else took it meanwhile, say so rather than
        # talk to their service. Give a just-stopped process's socket a moment to go away.
        deadline = time.monotonic() + grace
        while port_accepts(self.host, self.port):
            if time.monotonic() > deadline:
                raise PortTakenError(self.service_name, self.host, self.port)
            time.sleep(0.05)

    def _spawn(self) -> None:
        cmd = self._command()
        run_as = RunAs.named(self.run_as)
        out = open(self.log_path, "ab")
        try:
            out.write(f"\n=== start {time.strftime('%H:%M:%S')}: {' '.join(cmd)}\n".encode())
            out.flush()
            main_thread = threading.current_thread() is threading.main_thread()
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.base_dir,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # Only tie the child to a thread that lives as long as the process.
                preexec_fn=_die_with_parent(self.stop_signal) if main_thread and _PRCTL
                else None,
                user=run_as.user,
                group=run_as.group,
                extra_groups=run_as.extra_groups,
            )
        finally:
            out.close()
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, ManagedProcess._reap, [self._proc])

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not self._check_ready(deadline):
            time.sleep(0.02)

    def _check_ready(self, deadline: float) -> bool:
        """True once ready; ServiceStartError when the process died or the time is up."""
        proc = self._proc
        assert proc is not None
        code = proc.poll()
        if code is not None:
            raise ServiceStartError(
                self.service_name, f"exited with code {code}", self.log_tail()
            )
        if self._ready():
            return True
        if time.monotonic() > deadline:
            raise ServiceStartError(
                self.service_name,
                f"not ready on {self.host}:{self.port} after {self.start_timeout:.0f}s",
                self.log_tail(),
            )
        return False

    def _terminate(self, sig: int = signal.SIGTERM) -> None:
        proc = self._proc
        self._proc = None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if sig == signal.SIGKILL:
                # The service leads its own session (start_new_session): its group is ours.
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
            if self._paused:
                proc.send_signal(signal.SIGCONT)
        self._paused = False
        try:
            proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            log.warning("service_kill service=%s pid=%d reason=stop_timeout",
                        self.service_name, proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=self.stop_timeout)

    @staticmethod
    def _reap(procs: list[subprocess.Popen[bytes] | None]) -> None:
        for proc in procs:
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(Exception):
                    proc.kill()
                    proc.wait(timeout=5)
