"""Errors of the fleet alerts package."""

from __future__ import annotations

from kickstand.cloud.errors import CloudError, ConflictError, NotFoundError


class AlertError(CloudError):
    """Root of the fleet alert errors."""


class AlertsNotFoundError(NotFoundError, AlertError):
    def __init__(self, alert_ids: list[int]) -> None:
        super().__init__("fleet alerts", alert_ids)
        self.alert_ids = alert_ids


class AlertTransitionError(ConflictError, AlertError):
    """An operator action that the alert's state does not allow (e.g. silence a resolved one)."""

    def __init__(self, alert_ids: list[int], action: str, states: list[str]) -> None:
        super().__init__(
            f"cannot {action} fleet alerts {alert_ids}: they are {', '.join(states)}",
            reason="alert-state",
        )
        self.alert_ids = alert_ids
        self.action = action
        self.states = states
