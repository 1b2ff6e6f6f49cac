"""Every error the API sends, in one place: wire codes, HTTP statuses, the envelope.

Envelope: ``{"code": <non-zero>, "message", "reason"?, "errors"?: [{"field", "message"}],
"data"?}``. ``code`` is stable and documented (:class:`ErrorCode`, :data:`CODES`, served
at ``GET /v1/errors``); ``message`` is for people; ``reason`` is a machine-readable detail;
validation errors list each field.

The one way: services raise errors of the :class:`~kickstand.cloud.errors.CloudError`
tree; :data:`ERRORS` maps each class to its HTTP status and code; a route that must
refuse something itself raises :class:`ApiError` through a helper here (``invalid``,
``forbidden``, ``unauthenticated``…). FastAPI's own errors (validation, unknown route,
method not allowed) and database failures (503 with Retry-After when transient, by the
SQLSTATE classification of ``cloud/transient.py``) are sent in the same envelope.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DataError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from kickstand.cloud.accounts import errors as accounts
from kickstand.cloud.errors import (
    CloudError,
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    RentRefusedError,
    RiderSessionError,
    UnavailableError,
)
from kickstand.cloud.transient import is_transient, sqlstate_of

log = logging.getLogger("kickstand.cloud.api.errors")

#: Seconds a client is asked to wait when the database is unreachable.
UNAVAILABLE_RETRY_AFTER_S = 5
#: A device offline: about one heartbeat (30 s) before it may be back.
DEVICE_OFFLINE_RETRY_AFTER_S = 30


class ErrorCode(enum.IntEnum):
    """Stable wire codes. Never renumber; add at the end of a range. Meaning: :data:`CODES`."""

    INTERNAL = 1
    VALIDATION = 2
    UNAUTHENTICATED = 3
    TOKEN_EXPIRED = 4
    INVALID_CREDENTIALS = 5
    FORBIDDEN = 6
    #: Seed 001: login refused until the email is confirmed (``data.token`` authorizes a resend).
    EMAIL_NOT_CONFIRMED = 7
    NOT_FOUND = 10
    CONFLICT = 11
    RENT_REFUSED = 12
    DEVICE_OFFLINE = 13
    DEVICE_TIMEOUT = 14
    DEVICE_REFUSED = 15
    IDEMPOTENCY_KEY_REUSED = 16
    IDEMPOTENCY_IN_PROGRESS = 17
    REFRESH_TOKEN_REUSED = 18
    WALLET_EMPTY = 19
    METHOD_NOT_ALLOWED = 20
    TELEMETRY_UNAVAILABLE = 21
    UNAVAILABLE = 22
    #: The MDS feeds (issue 19): the Accept header asks for a version we do not serve.
    NOT_ACCEPTABLE = 23
    #: Firmware downloads (issue 18): a Range starting past the image's end.
    RANGE_NOT_SATISFIABLE = 24
    # Rider accounts (kickstand.cloud.accounts): 30-39.
    TOO_MANY_ATTEMPTS = 30
    ACCOUNT_TOKEN_INVALID = 31
    EMAIL_TAKEN = 32
    TERMS_NOT_ACCEPTED = 33
    UNKNOWN_CONSENT = 34


#: Each code: the HTTP status(es) it is sent with and what it means (the served table).
CODES: dict[ErrorCode, tuple[tuple[int, ...], str]] = {
    ErrorCode.INTERNAL: ((500,), "something went wrong on our side (logged); try again"),
    ErrorCode.VALIDATION: ((400, 422), "the request is invalid; `errors[]` names each field"),
    ErrorCode.UNAUTHENTICATED: ((401,), "no valid access token, or the session was closed"),
    ErrorCode.TOKEN_EXPIRED: ((401,), "the token expired: refresh it or log in again"),
    ErrorCode.INVALID_CREDENTIALS: ((401,), "wrong email or password"),
    ErrorCode.FORBIDDEN: ((403,), "authenticated, but not allowed (role, network, account)"),
    ErrorCode.EMAIL_NOT_CONFIRMED: ((403,), "confirm the email first (`data.token` resends)"),
    ErrorCode.NOT_FOUND: ((404,), "no such resource or route, or not one of yours"),
    ErrorCode.CONFLICT: ((409,), "the request clashes with the current state (`reason`)"),
    ErrorCode.RENT_REFUSED: ((404, 409), "the rent cannot be opened; `reason` says why"),
    ErrorCode.DEVICE_OFFLINE: ((503,), "the station or vehicle is offline"),
    ErrorCode.DEVICE_TIMEOUT: ((504,), "the device has not answered yet; it may still act"),
    ErrorCode.DEVICE_REFUSED: ((409,), "the device refused the command"),
    ErrorCode.IDEMPOTENCY_KEY_REUSED: ((422,), "Idempotency-Key used for another request"),
    ErrorCode.IDEMPOTENCY_IN_PROGRESS: ((409,), "a request with this key is running or failed"),
    ErrorCode.REFRESH_TOKEN_REUSED: ((401,), "a refresh token was used twice: log in again"),
    ErrorCode.WALLET_EMPTY: ((402,), "the wallet cannot pay for this"),
    ErrorCode.METHOD_NOT_ALLOWED: ((405,), "the route exists, not with this method"),
    ErrorCode.TELEMETRY_UNAVAILABLE: ((502, 503), "telemetry down (503), query refused (502)"),
    ErrorCode.UNAVAILABLE: ((503,), "the database cannot be reached; retry after Retry-After"),
    ErrorCode.NOT_ACCEPTABLE: ((406,), "the Accept header asks for a version not served"),
    ErrorCode.RANGE_NOT_SATISFIABLE: (
        (416,),
        "the Range starts past the end (`Content-Range: bytes */<size>`)",
    ),
    ErrorCode.TOO_MANY_ATTEMPTS: ((429,), "too many attempts; retry after Retry-After"),
    ErrorCode.ACCOUNT_TOKEN_INVALID: ((400,), "the account token is unknown, used or expired"),
    ErrorCode.EMAIL_TAKEN: ((409,), "an account already uses this email"),
    ErrorCode.TERMS_NOT_ACCEPTED: ((422,), "the terms of service must be accepted"),
    ErrorCode.UNKNOWN_CONSENT: ((422,), "no such consent"),
}


class FieldError(BaseModel):
    """One refused field (``field`` dotted, as sent); some errors add details."""

    model_config = ConfigDict(extra="allow")
    field: str
    message: str


class ErrorBody(BaseModel):
    """The envelope of every error the API sends (what :meth:`ApiError.body` writes)."""

    code: int = Field(ge=1, description="Stable wire code; the table: `GET /v1/errors`.")
    message: str = Field(description="For people.")
    reason: str | None = Field(default=None, description="A machine-readable detail.")
    errors: list[FieldError] | None = Field(default=None, description="Each refused field.")
    data: Any = Field(default=None, description="What the client needs to go on, if any.")


class ApiError(CloudError):
    """An error as sent: status, code, message, and the envelope's optional parts."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        *,
        reason: str | None = None,
        errors: list[dict[str, str]] | None = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.reason = reason
        self.errors = errors
        self.data = data
        self.headers = headers

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": int(self.code), "message": self.message}
        if self.reason is not None:
            body["reason"] = self.reason
        if self.errors is not None:
            body["errors"] = self.errors
        if self.data is not None:
            body["data"] = self.data
        return body

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


# ── helpers for routes (the only way a route builds an error) ──────────────────────────


def unauthenticated(message: str = "log in first: missing or invalid access token") -> ApiError:
    return ApiError(401, ErrorCode.UNAUTHENTICATED, message, headers={"WWW-Authenticate": "Bearer"})


def not_found(resource: str, key: object) -> ApiError:
    return ApiError(
        404, ErrorCode.NOT_FOUND, f"{resource} {key} does not exist", reason="not-found"
    )


def invalid(field: str, message: str, *, reason: str = "validation") -> ApiError:
    """422 on one field (``errors[0].field``): the same shape as FastAPI's validation."""
    return invalid_fields(
        f"invalid {field}: {message}", [{"field": field, "message": message}], reason=reason
    )


def invalid_fields(
    message: str, errors: list[dict[str, str]], *, reason: str = "validation"
) -> ApiError:
    """422 listing several fields (each ``{"field", "message", …}``)."""
    return ApiError(422, ErrorCode.VALIDATION, message, reason=reason, errors=errors)


def bad_request(field: str, message: str) -> ApiError:
    """400 on one field, for the specifications that say 400 (MDS query parameters)."""
    return ApiError(
        400,
        ErrorCode.VALIDATION,
        f"invalid {field}: {message}",
        reason="validation",
        errors=[{"field": field, "message": message}],
    )


def not_acceptable(message: str) -> ApiError:
    return ApiError(406, ErrorCode.NOT_ACCEPTABLE, message, reason="version-not-served")


def range_not_satisfiable(size: int) -> ApiError:
    """416 with ``Content-Range: bytes */<size>`` (RFC 9110 §15.5.17): the client learns
    the size and starts over."""
    return ApiError(
        416,
        ErrorCode.RANGE_NOT_SATISFIABLE,
        f"the range starts past the end of the {size} bytes",
        reason="range-not-satisfiable",
        headers={"Content-Range": f"bytes */{size}"},
    )


def forbidden(message: str, *, reason: str = "forbidden") -> ApiError:
    return ApiError(403, ErrorCode.FORBIDDEN, message, reason=reason)


def unavailable(message: str, *, retry_after_s: int = UNAVAILABLE_RETRY_AFTER_S) -> ApiError:
    return ApiError(
        503,
        ErrorCode.UNAVAILABLE,
        message,
        reason="unavailable",
        headers={"Retry-After": str(retry_after_s)},
    )


def telemetry_unavailable() -> ApiError:
    return ApiError(
        503,
        ErrorCode.TELEMETRY_UNAVAILABLE,
        "telemetry is unavailable right now (the telemetry store cannot be reached); "
        "please try again later",
        reason="telemetry-unavailable",
        headers={"Retry-After": "30"},
    )


def conflict(message: str, *, reason: str = "conflict", data: Any = None) -> ApiError:
    return ApiError(409, ErrorCode.CONFLICT, message, reason=reason, data=data)


def token_expired(message: str, *, reason: str | None = None, bearer: bool = False) -> ApiError:
    """401: an access token (``bearer``: with ``WWW-Authenticate``) or a refresh token expired."""
    headers = {"WWW-Authenticate": "Bearer"} if bearer else None
    return ApiError(401, ErrorCode.TOKEN_EXPIRED, message, reason=reason, headers=headers)


def refresh_token_reused() -> ApiError:
    return ApiError(
        401,
        ErrorCode.REFRESH_TOKEN_REUSED,
        "this refresh token was already used; for your safety this session is closed, log in again",
        reason="refresh-token-reused",
    )


def idempotency_key_reused() -> ApiError:
    return ApiError(
        422,
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
        "this Idempotency-Key was already used for a different request; use a new key",
        reason="idempotency-key-reused",
        errors=[{"field": "Idempotency-Key", "message": "already used for another request"}],
    )


def idempotency_in_progress(message: str, *, reason: str) -> ApiError:
    """409: the key's first request is still running (or failed and may be retried)."""
    return ApiError(409, ErrorCode.IDEMPOTENCY_IN_PROGRESS, message, reason=reason)


def device_offline(message: str, *, data: Any) -> ApiError:
    # A 503 says when to try again (as every 503 here): about a heartbeat of a device.
    return ApiError(
        503, ErrorCode.DEVICE_OFFLINE, message, reason="device-offline", data=data,
        headers={"Retry-After": str(DEVICE_OFFLINE_RETRY_AFTER_S)},
    )  # fmt: skip


def device_refused(message: str, *, data: Any) -> ApiError:
    return ApiError(409, ErrorCode.DEVICE_REFUSED, message, reason="device-refused", data=data)


def device_timeout(message: str, *, data: Any) -> ApiError:
    return ApiError(504, ErrorCode.DEVICE_TIMEOUT, message, reason="device-timeout", data=data)


def telemetry_query_failed() -> ApiError:
    return ApiError(
        502,
        ErrorCode.TELEMETRY_UNAVAILABLE,
        "the telemetry store refused the query; please try again later",
        reason="telemetry-query-failed",
    )


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_error(exc: RequestValidationError) -> ApiError:
    errors = [
        {"field": _field(e.get("loc", ())), "message": str(e.get("msg", "invalid"))}
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"field": "body", "message": "invalid request"}
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ApiError(
        422,
        ErrorCode.VALIDATION,
        f"invalid {first['field']}: {first['message']}{more}",
        reason="validation",
        errors=errors,
    )


# ── the one table: error class → HTTP status and wire code ─────────────────────────────

#: Looked up along the class's MRO (the nearest listed base decides). An unlisted
#: CloudError is a bug: 500, logged.
ERRORS: dict[type[CloudError], tuple[int, ErrorCode]] = {
    InvalidInputError: (422, ErrorCode.VALIDATION),
    ForbiddenError: (403, ErrorCode.FORBIDDEN),
    UnavailableError: (503, ErrorCode.UNAVAILABLE),
    NotFoundError: (404, ErrorCode.NOT_FOUND),
    ConflictError: (409, ErrorCode.CONFLICT),
    RiderSessionError: (401, ErrorCode.UNAUTHENTICATED),
    accounts.AccountError: (400, ErrorCode.VALIDATION),
    accounts.InvalidCredentialsError: (401, ErrorCode.INVALID_CREDENTIALS),
    accounts.AccountDisabledError: (403, ErrorCode.FORBIDDEN),
    accounts.EmailNotConfirmedError: (403, ErrorCode.EMAIL_NOT_CONFIRMED),
    accounts.EmailTakenError: (409, ErrorCode.EMAIL_TAKEN),
    accounts.InvalidAccountTokenError: (400, ErrorCode.ACCOUNT_TOKEN_INVALID),
    accounts.TooManyAttemptsError: (429, ErrorCode.TOO_MANY_ATTEMPTS),
    accounts.TermsNotAcceptedError: (422, ErrorCode.TERMS_NOT_ACCEPTED),
    accounts.UnknownConsentError: (422, ErrorCode.UNKNOWN_CONSENT),
}


def rent_refused(exc: RentRefusedError) -> ApiError:
    if exc.reason == "wallet-empty":
        return ApiError(402, ErrorCode.WALLET_EMPTY, str(exc), reason=exc.reason)
    status = 404 if exc.reason == "spot-empty" else 409
    return ApiError(status, ErrorCode.RENT_REFUSED, str(exc), reason=exc.reason)


def _internal() -> ApiError:
    return ApiError(500, ErrorCode.INTERNAL, "something went wrong on our side; please try again")


def to_api_error(exc: CloudError) -> ApiError:
    """The error as sent, by :data:`ERRORS` (and ``rent_refused``'s reasons)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, RentRefusedError):
        return rent_refused(exc)
    if isinstance(exc, NotFoundError):
        return not_found(exc.resource, exc.key)
    if isinstance(exc, RiderSessionError):
        return unauthenticated(str(exc))
    if isinstance(exc, InvalidInputError):
        return invalid(exc.field, str(exc), reason=exc.reason)
    if isinstance(exc, UnavailableError):
        return unavailable(str(exc), retry_after_s=exc.retry_after_s)
    found = next((ERRORS[c] for c in type(exc).__mro__ if c in ERRORS), None)
    if found is None:
        log.error("event=api_unmapped_error error=%r", exc, exc_info=exc)
        return _internal()
    status, code = found
    headers: dict[str, str] | None = None
    if isinstance(exc, accounts.TooManyAttemptsError):
        headers = {"Retry-After": str(exc.retry_after_s)}
    data = exc.data if isinstance(exc, accounts.AccountError) else None
    reason = getattr(exc, "reason", None)
    return ApiError(
        status,
        code,
        str(exc),
        reason=reason if isinstance(reason, str) else None,
        data=data,
        headers=headers,
    )


def database_error(exc: BaseException, where: str = "") -> ApiError | None:
    """A failure of the database as sent, or None (a bug: 500).

    Transient (unreachable, starting up, failing over, out of connections: the SQLSTATE
    classes of ``cloud/transient.py``): 503 with Retry-After. A value the database cannot
    store (SQLSTATE class 22, a NUL character, a number out of range) that a schema let
    through: 422, logged so that the schema gets its bound.
    """
    if is_transient(exc):
        log.warning("event=api_database_unavailable route=%r error=%r", where, exc)
        return unavailable("the service cannot reach its database right now; please retry")
    state = sqlstate_of(exc)
    if isinstance(exc, DataError) or (state is not None and state.startswith("22")):
        log.warning("event=api_value_refused_by_database route=%r error=%r", where, exc)
        return invalid_fields(
            "a value of the request is out of range or contains characters that cannot be stored",
            [{"field": "body", "message": "value out of range or not storable"}],
        )
    return None


#: Raised by the database layers (SQLAlchemy, the asyncpg driver, the socket).
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
)


def install(app: FastAPI) -> None:
    async def on_cloud_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CloudError)
        return to_api_error(exc).response()

    async def on_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return validation_error(exc).response()

    async def on_http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            err = ApiError(404, ErrorCode.NOT_FOUND, "no such route; see /docs", reason="no-route")
        elif exc.status_code == 405:
            err = ApiError(405, ErrorCode.METHOD_NOT_ALLOWED, "method not allowed on this route")
        elif exc.status_code in (401, 403):
            err = unauthenticated(str(exc.detail))
        elif exc.status_code == 400:  # a body that is not JSON at all
            err = ApiError(
                400,
                ErrorCode.VALIDATION,
                f"the request cannot be read: {exc.detail}",
                reason="bad-request",
                errors=[{"field": "body", "message": str(exc.detail)}],
            )
        else:
            err = ApiError(exc.status_code, ErrorCode.INTERNAL, str(exc.detail))
        return err.response()

    async def on_database(request: Request, exc: Exception) -> JSONResponse:
        where = f"{request.method} {request.url.path}"
        err = database_error(exc, where)
        if err is None:
            log.error("event=api_database_error route=%r error=%r", where, exc, exc_info=exc)
            err = _internal()
        return err.response()

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        where = f"{request.method} {request.url.path}"
        log.exception("event=api_unhandled_error route=%r error=%r", where, exc)
        return (database_error(exc, where) or _internal()).response()

    app.add_exception_handler(CloudError, on_cloud_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    for error in DATABASE_ERRORS:
        app.add_exception_handler(error, on_database)
    app.add_exception_handler(Exception, on_unexpected)
