"""The rigs' errors: one small tree, each class with what a technician or caller needs."""

from __future__ import annotations

from pathlib import Path


class RigError(Exception):
    """Anything that stops a rig run before or outside a step."""


class RigConfigError(RigError):
    """The rig description file is missing, unreadable or wrong."""

    def __init__(self, path: Path | None, reason: str) -> None:
        where = str(path) if path is not None else "rig description"
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.reason = reason


class StepFailed(RigError):
    """A step found the device out of its limits; ``message`` says what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StepSkipped(RigError):
    """A step could not be run (no person at the bench, a prerequisite failed)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
