"""Errors of rider accounts (sign-up, confirmation, reset, login rules).

Each is a :class:`~kickstand.cloud.errors.CloudError` carrying what a caller needs; the API
maps each class to its HTTP status and stable wire code in one place
(``kickstand.cloud.api.errors``).
"""

from __future__ import annotations

from typing import Any

from kickstand.cloud.errors import CloudError


class AccountError(CloudError):
    """Root of the account errors. ``reason`` is machine-readable, the message for people."""

    reason = "account-error"

    def __init__(self, message: str, *, data: Any = None) -> None:
        super().__init__(message)
        #: Extra data for the client (the resend token of :class:`EmailNotConfirmedError`).
        self.data = data


class InvalidCredentialsError(AccountError):
    """Wrong email or password (the same answer for both: accounts are not revealed)."""

    reason = "invalid-credentials"


class AccountDisabledError(AccountError):
    reason = "account-disabled"


class EmailNotConfirmedError(AccountError):
    """Seed 001's login code 7: ``data`` holds the token that authorizes a resend."""

    reason = "email-not-confirmed"


class EmailTakenError(AccountError):
    reason = "email-taken"


class InvalidAccountTokenError(AccountError):
    """A confirmation / reset / email-change token that is unknown, used, or expired."""

    reason = "invalid-token"


class TooManyAttemptsError(AccountError):
    """Login throttled: per account or per client address. Retry after ``retry_after_s``."""

    reason = "too-many-attempts"

    def __init__(self, message: str, *, retry_after_s: int, scope: str) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, retry_after_s)
        #: "account" or "address": which limit was hit.
        self.scope = scope


class UnknownConsentError(AccountError):
    reason = "unknown-consent"


class TermsNotAcceptedError(AccountError):
    reason = "terms-not-accepted"
