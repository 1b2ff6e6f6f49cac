"""Errors of the test-services harness."""

from __future__ import annotations


class HarnessError(Exception):
    """Root of the harness errors."""


class ServiceNotInstalledError(HarnessError):
    """A service binary the harness needs is missing (run `make system-packages`)."""

    def __init__(self, service: str, path: str) -> None:
        self.service = service
        self.path = path
        super().__init__(
            f"{service}: {path} not found; install it with testing/ensure-system-packages "
            "(or `make system-packages`)"
        )


class ServiceStartError(HarnessError):
    """A service did not come up; carries the tail of its log."""

    def __init__(self, service: str, reason: str, log_tail: str = "") -> None:
        self.service = service
        self.reason = reason
        self.log_tail = log_tail
        message = f"{service} did not start: {reason}"
        if log_tail:
            message += f"\n--- last lines of the {service} log ---\n{log_tail}"
        super().__init__(message)


class PortTakenError(ServiceStartError):
    """Something else already listens on the port we meant to use."""

    def __init__(self, service: str, host: str, port: int) -> None:
        self.host = host
        self.port = port
        super().__init__(
            service,
            f"{host}:{port} already accepts connections from another process; "
            "the harness never reuses a service it did not start",
        )


class ServiceStateError(HarnessError):
    """An operation that needs a running (or stopped) service got the other."""


class PostgresUnavailableError(HarnessError):
    """The PostgreSQL server cannot be reached and could not be started."""

    def __init__(self, dsn: str, reason: str) -> None:
        self.dsn = dsn
        self.reason = reason
        super().__init__(
            f"PostgreSQL at {dsn} is not reachable: {reason}. Start it (Debian: "
            "`pg_ctlcluster <version> main start`) or point PGHOST/PGPORT/PGUSER at a server "
            "with trust auth."
        )
