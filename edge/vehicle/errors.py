"""Errors of the vehicle agent (under kickstand.edge.core.errors.EdgeError)."""

from __future__ import annotations

from kickstand.edge.core.errors import EdgeError
from kickstand.protocol.spotbus import BusError


class LockBoxError(EdgeError):
    """The lock box did not do what was asked; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LockBoxTimeout(LockBoxError):
    """No valid answer within the timeout, after the retries."""


class LockBoxRefused(LockBoxError):
    """The lock box answered with an error response."""

    def __init__(self, cmd: int, error: BusError | int) -> None:
        name = error.name if isinstance(error, BusError) else f"0x{error:02x}"
        super().__init__(f"command 0x{cmd:02x} refused: {name}")
        self.cmd = cmd
        self.error = error
