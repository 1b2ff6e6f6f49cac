"""The API's error envelope: ``{"code": <non-zero>, "message", "reason", "errors": [...]}``.

``code`` is stable and documented (:class:`ErrorCode`); ``message`` is for people;
``reason`` is a machine-readable detail; validation errors list each field.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kickstand.cloud.accounts import errors as accounts
from kickstand.cloud.errors import ConflictError, NotFoundError, RentRefusedError

log = logging.getLogger("kickstand.cloud.api.errors")


class ErrorCode(enum.IntEnum):
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
    # Rider accounts (kickstand.cloud.accounts): 30-39.
    TOO_MANY_ATTEMPTS = 30
    ACCOUNT_TOKEN_INVALID = 31
    EMAIL_TAKEN = 32
    TERMS_NOT_ACCEPTED = 33
    UNKNOWN_CONSENT = 34


class ApiError(Exception):
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


def unauthenticated(message: str = "log in first: missing or invalid access token") -> ApiError:
    return ApiError(401, ErrorCode.UNAUTHENTICATED, message, headers={"WWW-Authenticate": "Bearer"})


def not_found(resource: str, key: object) -> ApiError:
    return ApiError(
        404, ErrorCode.NOT_FOUND, f"{resource} {key} does not exist", reason="not-found"
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


def install(app: FastAPI) -> None:
    async def on_api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return exc.response()

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
        else:
            err = ApiError(exc.status_code, ErrorCode.INTERNAL, str(exc.detail))
        return err.response()

    async def on_not_found(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, NotFoundError)
        return not_found(exc.resource, exc.key).response()

    async def on_conflict(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ConflictError)
        return ApiError(409, ErrorCode.CONFLICT, str(exc), reason=exc.reason).response()

    async def on_refused(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RentRefusedError)
        return rent_refused(exc).response()

    async def on_account(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, accounts.AccountError)
        return account_error(exc).response()

    async def on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("event=api_unhandled_error error=%r", exc)
        return ApiError(
            500, ErrorCode.INTERNAL, "something went wrong on our side; please try again"
        ).response()

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(NotFoundError, on_not_found)
    app.add_exception_handler(ConflictError, on_conflict)
    app.add_exception_handler(RentRefusedError, on_refused)
    app.add_exception_handler(accounts.AccountError, on_account)
    app.add_exception_handler(Exception, on_unexpected)


def rent_refused(exc: RentRefusedError) -> ApiError:
    if exc.reason == "wallet-empty":
        return ApiError(402, ErrorCode.WALLET_EMPTY, str(exc), reason=exc.reason)
    status = 404 if exc.reason == "spot-empty" else 409
    return ApiError(status, ErrorCode.RENT_REFUSED, str(exc), reason=exc.reason)


#: Each account error's HTTP status and wire code (the class or its nearest listed base).
_ACCOUNT_ERRORS: dict[type[accounts.AccountError], tuple[int, ErrorCode]] = {
    accounts.InvalidCredentialsError: (401, ErrorCode.INVALID_CREDENTIALS),
    accounts.AccountDisabledError: (403, ErrorCode.FORBIDDEN),
    accounts.EmailNotConfirmedError: (403, ErrorCode.EMAIL_NOT_CONFIRMED),
    accounts.EmailTakenError: (409, ErrorCode.EMAIL_TAKEN),
    accounts.InvalidAccountTokenError: (400, ErrorCode.ACCOUNT_TOKEN_INVALID),
    accounts.TooManyAttemptsError: (429, ErrorCode.TOO_MANY_ATTEMPTS),
    accounts.TermsNotAcceptedError: (422, ErrorCode.TERMS_NOT_ACCEPTED),
    accounts.UnknownConsentError: (422, ErrorCode.UNKNOWN_CONSENT),
}


def account_error(exc: accounts.AccountError) -> ApiError:
    status, code = next(
        (_ACCOUNT_ERRORS[c] for c in type(exc).__mro__ if c in _ACCOUNT_ERRORS),
        (400, ErrorCode.VALIDATION),
    )
    headers: dict[str, str] | None = None
    if isinstance(exc, accounts.TooManyAttemptsError):
        headers = {"Retry-After": str(exc.retry_after_s)}
    return ApiError(status, code, str(exc), reason=exc.reason, data=exc.data, headers=headers)
