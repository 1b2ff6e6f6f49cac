"""Webhook signatures: ``Kickstand-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``.

The HMAC key is the endpoint's secret (UTF-8), the message ``f"{t}.{body}"`` where
``body`` is the exact request body bytes. Receivers recompute it, compare in constant
time and refuse a timestamp too far from their clock (replays). docs/webhooks.md has a
self-contained verification snippet.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from kickstand.cloud.webhooks.errors import SignatureError

SIGNATURE_HEADER = "Kickstand-Signature"
EVENT_ID_HEADER = "Kickstand-Event-Id"
ATTEMPT_ID_HEADER = "Kickstand-Attempt-Id"
TOPIC_HEADER = "Kickstand-Event"
DEFAULT_TOLERANCE_S = 300


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def compute(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body``."""
    ts = int(time.time()) if timestamp is None else timestamp
    return f"t={ts},v1={compute(secret, ts, body)}"


def verify(
    secret: str,
    header: str | None,
    body: bytes,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Check a received signature; returns its timestamp or raises :class:`SignatureError`."""
    if not header:
        raise SignatureError("missing signature header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError as exc:
                raise SignatureError("malformed timestamp") from exc
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("malformed signature header")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise SignatureError("timestamp outside the tolerance")
    expected = compute(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise SignatureError("signature mismatch")
    return timestamp
