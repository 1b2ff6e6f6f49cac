"""Account tokens: the 10-character codes mailed to riders (seed 001: ``token``,
``email_token`` "= 10 characters"), and the short-lived JWT of login code 7.

Mailed tokens are single use and expiring; only their sha256 is stored, so a copy of the
database opens no account. 62^10 ≈ 8·10^17 values: with the login limits and the expiry,
guessing one is out of reach.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from datetime import UTC, datetime, timedelta

import jwt

from kickstand.cloud.config import Settings

TOKEN_LENGTH = 10
_ALPHABET = string.ascii_letters + string.digits
#: ``typ`` of the token the login's code 7 answer carries: it authorizes only a resend.
RESEND_TYP = "email-confirm-resend"
RESEND_TTL_S = 900
#: ``typ`` of the token a newsletter carries to change consents without logging in
#: (seed 001 "Update the user's consents from unsubscribe token").
UNSUBSCRIBE_TYP = "unsubscribe"
UNSUBSCRIBE_TTL_S = 365 * 24 * 3600


def new_token() -> tuple[str, str]:
    """(token for the mail, sha256 hex to store)."""
    token = "".join(secrets.choice(_ALPHABET) for _ in range(TOKEN_LENGTH))
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _signed(settings: Settings, user_id: int, typ: str, ttl_s: int, now: datetime | None) -> str:
    now = now or datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "typ": typ,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl_s)).timestamp()),
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


def _signed_user(settings: Settings, token: str, typ: str) -> int | None:
    """The user a token of kind ``typ`` was issued to; None if invalid, expired or of
    another kind (an access token is not a resend token, nor the reverse)."""
    try:
        claims = jwt.decode(
            token, settings.jwt_secret, algorithms=["HS256"], options={"require": ["exp", "sub"]}
        )
    except jwt.InvalidTokenError:
        return None
    if claims.get("typ") != typ:
        return None
    try:
        return int(claims["sub"])
    except (TypeError, ValueError):
        return None


def resend_token(settings: Settings, user_id: int, now: datetime | None = None) -> str:
    return _signed(settings, user_id, RESEND_TYP, RESEND_TTL_S, now)


def resend_token_user(settings: Settings, token: str) -> int | None:
    return _signed_user(settings, token, RESEND_TYP)


def unsubscribe_token(settings: Settings, user_id: int, now: datetime | None = None) -> str:
    """For the unsubscribe link of a mail that is not a transaction (news, offers)."""
    return _signed(settings, user_id, UNSUBSCRIBE_TYP, UNSUBSCRIBE_TTL_S, now)


def unsubscribe_token_user(settings: Settings, token: str) -> int | None:
    return _signed_user(settings, token, UNSUBSCRIBE_TYP)
