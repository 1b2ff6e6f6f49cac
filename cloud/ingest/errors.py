"""Errors of the ingest workers (bad input is never raised out of a worker: it is counted)."""

from __future__ import annotations


class IngestError(Exception):
    """Root of the ingest package's errors."""


class IngestConfigError(IngestError):
    def __init__(self, message: str) -> None:
        super().__init__(message)


class BrokerConnectError(IngestError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot connect to the MQTT broker {url}: {reason}")
        self.url = url
        self.reason = reason
