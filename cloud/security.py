"""Passwords (argon2) and tokens (JWT access, opaque rotating refresh)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from kickstand.cloud.config import Settings
from kickstand.cloud.dbtypes import MAX_ID

ALGORITHM = "HS256"
_hasher = PasswordHasher()  # argon2id, library defaults (RFC 9106 low-memory profile)
#: For the demo accounts only, whose passwords are printed by the seed anyway.
_demo_hasher = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Verified against when the email is unknown, so timing does not reveal accounts."""
    return _hasher.hash("not-a-real-password-0")


def hash_password(password: str, *, demo: bool = False) -> str:
    return (_demo_hasher if demo else _hasher).hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    """Parameters come from the hash itself, so strong and demo hashes both verify."""
    try:
        ok = _hasher.verify(password_hash or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False
    return ok and password_hash is not None


class TokenError(Exception):
    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True)
class AccessClaims:
    user_id: int
    generation: int
    permissions: list[dict[str, Any]]
    expires_at: datetime


def create_access_token(
    settings: Settings,
    user_id: int,
    permissions: list[dict[str, Any]],
    generation: int,
    now: datetime | None = None,
) -> str:
    now = now or datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "typ": "access",
        "gen": generation,
        "permissions": permissions,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=settings.JWT_ACCESS_TTL_S)).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm=ALGORITHM)


def decode_access_token(settings: Settings, token: str) -> AccessClaims:
    """Verify an access token; a token verified before is not verified again (its
    signature cannot change), only its expiry is checked at every use."""
    claims = _verified(settings.jwt_secret, token)
    if datetime.now(UTC) >= claims.expires_at:
        raise TokenError("the access token has expired", expired=True)
    return claims


@lru_cache(maxsize=8192)
def _verified(secret: str, token: str) -> AccessClaims:
    # A rider's app sends the same token with every request until it refreshes it; the
    # HMAC check and PyJWT's parsing cost more than the rest of a light request. Only
    # successes are cached (an exception is not): bad tokens cannot crowd the cache out
    # of good ones for longer than one round of LRU eviction.
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "sub", "typ"], "verify_exp": False},
        )
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"invalid access token: {exc}") from exc
    if claims.get("typ") != "access":
        raise TokenError("not an access token")
    try:
        parsed = AccessClaims(
            user_id=int(claims["sub"]),
            generation=int(claims.get("gen", 0)),
            permissions=list(claims.get("permissions", [])),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        # OverflowError / OSError: an expiry beyond what a datetime holds (year > 9999).
        raise TokenError("malformed access token claims") from exc
    # Ids are PostgreSQL integers: anything else is no user of ours (and not a query).
    if not 1 <= parsed.user_id <= MAX_ID or not 0 <= parsed.generation <= MAX_ID:
        raise TokenError("malformed access token claims")
    return parsed


def new_refresh_token() -> tuple[str, str]:
    """(token for the client, sha256 hex stored in the database)."""
    token = secrets.token_urlsafe(48)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
