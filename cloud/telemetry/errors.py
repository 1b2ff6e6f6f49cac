"""Errors of the telemetry package: one small tree rooted in `TelemetryError`."""

from __future__ import annotations


class TelemetryError(Exception):
    """Root of the telemetry errors."""


class InvalidPointError(TelemetryError, ValueError):
    """A point cannot be encoded (bad identifier, non-finite number, no field...)."""

    def __init__(self, measurement: str, reason: str) -> None:
        self.measurement = measurement
        self.reason = reason
        super().__init__(f"invalid {measurement!r} point: {reason}")


class WriterClosedError(TelemetryError):
    """`write()` was called on a writer or store that is not running."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"{what} is not running (use `async with` or call start())")


class TelemetryQueryError(TelemetryError):
    """The telemetry backend refused or failed a query."""

    def __init__(self, query: str, reason: str, status: int | None = None) -> None:
        self.query = query
        self.reason = reason
        self.status = status
        super().__init__(f"telemetry query failed ({status}): {reason}")


class TelemetryUnavailableError(TelemetryError):
    """The telemetry backend cannot be reached (connection refused, timeout)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"telemetry backend {url} unavailable: {reason}")


class QueryRangeError(TelemetryError, ValueError):
    """A query's parameters are out of range (end before start, period too long...)."""

    def __init__(self, parameter: str, reason: str) -> None:
        self.parameter = parameter
        self.reason = reason
        super().__init__(f"{parameter}: {reason}")


class SpoolLockedError(TelemetryError):
    """Another writer (process) is using this spool directory: give each one its own."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        super().__init__(
            f"spool directory {directory} is in use by another writer; "
            "give each writer process its own spool_dir"
        )
