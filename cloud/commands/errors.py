"""Errors of the command path. Each carries the device and command a caller needs."""

from __future__ import annotations


class CommandError(Exception):
    """Root of the command path's errors."""


class CommandKeyError(CommandError):
    """The signing key is missing or unreadable."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"command signing key {path}: {reason}")
        self.path = path
        self.reason = reason


class DeviceOfflineError(CommandError):
    """Nothing was sent: the device is unknown, offline, or the broker is unreachable."""

    def __init__(self, device_id: str, reason: str) -> None:
        super().__init__(f"{device_id}: {reason}")
        self.device_id = device_id
        self.reason = reason


class CommandTimeoutError(CommandError):
    """Sent, no final answer in time (the command expires on the device at the same time)."""

    def __init__(self, device_id: str, command_id: bytes, timeout_s: float, accepted: bool) -> None:
        state = "accepted but not completed" if accepted else "no answer"
        super().__init__(
            f"{device_id}: {state} within {timeout_s:.1f} s (command {command_id.hex()})"
        )
        self.device_id = device_id
        self.command_id = command_id
        self.timeout_s = timeout_s
        self.accepted = accepted
