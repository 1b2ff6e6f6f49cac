"""Errors of the cloud core. Each carries what a caller (or an API client) needs."""

from __future__ import annotations


class CloudError(Exception):
    """Root of the cloud core's errors."""


class NotFoundError(CloudError):
    def __init__(self, resource: str, key: object) -> None:
        super().__init__(f"{resource} {key!r} not found")
        self.resource = resource
        self.key = key


class ConflictError(CloudError):
    """The request clashes with the current state (vehicle already rented, …)."""

    def __init__(self, message: str, *, reason: str = "conflict") -> None:
        super().__init__(message)
        self.reason = reason


class RentRefusedError(CloudError):
    """A rent could not be opened; ``reason`` is machine-readable, the message is for people."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class RiderSessionError(CloudError):
    """The rider's session is no longer valid (account gone or disabled, logged out)."""

    def __init__(self, is_active: bool | None, token_generation: int | None) -> None:
        super().__init__("the rider's session is no longer valid")
        #: As read (None: no such account).
        self.is_active = is_active
        self.token_generation = token_generation


class NoPricingRuleError(CloudError):
    def __init__(self, network_id: int | None, local_time: object) -> None:
        super().__init__(f"no pricing rule in force on network {network_id} at {local_time}")
        self.network_id = network_id
        self.local_time = local_time


class InvalidPricingRuleError(CloudError, ValueError):
    pass
