"""Errors of the cloud core. Each carries what a caller (or an API client) needs.

The one root, :class:`CloudError`: each package's errors (``webhooks/errors.py``,
``accounts/errors.py``, …) derive from it or from the kinds below. A route raises one of
them (or an ``ApiError`` of ``cloud/api/errors.py``) and never builds an error response:
``cloud/api/errors.py`` maps each class to its HTTP status and stable wire code in one
table, and sends the envelope.
"""

from __future__ import annotations


class CloudError(Exception):
    """Root of the cloud core's errors."""


class InvalidInputError(CloudError, ValueError):
    """A value a service refused: 422, ``errors[0].field`` names it."""

    def __init__(self, message: str, *, field: str, reason: str = "validation") -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason


class ForbiddenError(CloudError):
    """Authenticated, but not allowed to do this (role, network scope)."""

    def __init__(self, message: str, *, reason: str = "forbidden") -> None:
        super().__init__(message)
        self.reason = reason


class UnavailableError(CloudError):
    """A dependency (the database) cannot be reached now; the same request may work later."""

    def __init__(self, message: str, *, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


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
