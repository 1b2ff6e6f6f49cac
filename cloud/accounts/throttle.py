"""Login throttling: failed logins per account and per client address.

Counters live in the database (``login_throttle``), so every API process counts into the
same rows: a fixed window of ``LOGIN_WINDOW_S``; at the limit the key is locked for
``LOGIN_LOCK_S`` and every login on it — the right password included — answers 429 with
Retry-After until then. A success clears the account's counter, never the address's (one
valid account must not reset an address that is guessing others).

The increment is one upsert (``INSERT … ON CONFLICT DO UPDATE … RETURNING``), atomic on
PostgreSQL and SQLite alike: 60 concurrent wrong passwords count 60.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from prometheus_client import Counter
from sqlalchemy import case, delete, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import metrics
from kickstand.cloud.accounts.errors import TooManyAttemptsError
from kickstand.cloud.config import Settings
from kickstand.cloud.models import LoginThrottle, table_of

log = logging.getLogger("kickstand.cloud.accounts.throttle")

THROTTLED = Counter(
    "kickstand_accounts_throttled",
    "Requests refused by an account limit (429), by the limit hit: account, address "
    "(logins), mail (codes mailed to one address), signup (accounts from one address)",
    ["scope"],
    registry=metrics.REGISTRY,
)
LOCKS = Counter(
    "kickstand_login_locks",
    "Keys locked after too many failed logins",
    ["scope"],
    registry=metrics.REGISTRY,
)

_T = table_of(LoginThrottle)


@dataclass(frozen=True)
class ThrottlePolicy:
    window_s: int = 900
    max_failures_account: int = 10
    max_failures_address: int = 50
    lock_s: int = 900

    @classmethod
    def from_settings(cls, settings: Settings) -> ThrottlePolicy:
        return cls(
            window_s=settings.LOGIN_WINDOW_S,
            max_failures_account=settings.LOGIN_MAX_FAILURES_ACCOUNT,
            max_failures_address=settings.LOGIN_MAX_FAILURES_ADDRESS,
            lock_s=settings.LOGIN_LOCK_S,
        )


def account_key(email: str) -> str:
    return f"account:{email.lower()}"


def address_key(address: str) -> str:
    return f"address:{address}"


async def check(session: AsyncSession, keys: dict[str, str], now: datetime) -> None:
    """Refuse (429) while any of ``keys`` ({scope: key}) is locked."""
    found = (
        await session.execute(
            select(LoginThrottle.key, LoginThrottle.locked_until).where(
                LoginThrottle.key.in_(list(keys.values())), LoginThrottle.locked_until > now
            )
        )
    ).all()
    rows = [(str(k), cast(datetime, t)) for k, t in found if t is not None]
    if not rows:
        return
    scope_of = {key: scope for scope, key in keys.items()}
    key, until = max(rows, key=lambda r: r[1])
    scope = scope_of[key]
    THROTTLED.labels(scope).inc()
    retry = math.ceil((until - now).total_seconds())
    log.info("event=login_throttled scope=%s retry_after_s=%s", scope, retry)
    what = "this account" if scope == "account" else "your network address"
    raise TooManyAttemptsError(
        f"too many failed logins for {what}; try again in {retry} s or reset your password",
        retry_after_s=retry,
        scope=scope,
    )


async def _count(
    session: AsyncSession, key: str, window_s: int, now: datetime
) -> tuple[int, datetime]:
    """Add one to ``key``'s count in its window (a new window once it is over): the count
    and the window's start, in one atomic upsert."""
    window_over = _T.c.window_started_at <= now - timedelta(seconds=window_s)
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(_T)
        .values(key=key, window_started_at=now, failures=1, locked_until=None)
        .on_conflict_do_update(
            index_elements=[_T.c.key],
            set_={
                "failures": case((window_over, 1), else_=_T.c.failures + 1),
                "window_started_at": case(
                    (window_over, literal(now, _T.c.window_started_at.type)),
                    else_=_T.c.window_started_at,
                ),
            },
        )
        .returning(_T.c.failures, _T.c.window_started_at)
    )
    count, started = (await session.execute(stmt)).one()
    return cast(int, count), cast(datetime, started)


async def record_failure(
    session: AsyncSession, scope: str, key: str, limit: int, policy: ThrottlePolicy, now: datetime
) -> bool:
    """Count one failure on ``key``; lock it at ``limit``. True when this failure locked it."""
    failures, _ = await _count(session, key, policy.window_s, now)
    if failures < limit:
        return False
    # Locked: the count starts again when the lock ends.
    await session.execute(
        update(_T)
        .where(_T.c.key == key)
        .values(
            locked_until=now + timedelta(seconds=policy.lock_s), failures=0, window_started_at=now
        )
    )
    LOCKS.labels(scope).inc()
    log.warning("event=login_locked scope=%s failures=%s lock_s=%s", scope, failures, policy.lock_s)
    return True


async def clear(session: AsyncSession, key: str) -> None:
    await session.execute(delete(_T).where(_T.c.key == key))


def mail_key(email: str) -> str:
    return f"mail:{email.lower()}"


def signup_key(address: str) -> str:
    return f"signup:{address}"


async def count(
    session: AsyncSession, scope: str, key: str, limit: int, window_s: int, now: datetime
) -> None:
    """Count one more on ``key``; past ``limit`` in the window, refuse (429, ``scope`` says
    which limit). The count is in the caller's transaction: a refusal rolls back only
    itself."""
    done, started = await _count(session, key, window_s, now)
    if done <= limit:
        return
    THROTTLED.labels(scope).inc()
    retry = math.ceil((started + timedelta(seconds=window_s) - now).total_seconds())
    what = {"mail": "mails asked for this address", "signup": "sign-ups from your address"}
    raise TooManyAttemptsError(
        f"too many {what.get(scope, 'attempts')}; try again in {retry} s",
        retry_after_s=retry,
        scope=scope,
    )


async def count_mail(
    session: AsyncSession, to: str, limit: int, window_s: int, now: datetime
) -> None:
    """Count one mail asked for ``to``: nobody can make the cloud flood a mailbox with
    codes. Counted whether or not ``to`` has an account, so a refusal reveals nothing."""
    await count(session, "mail", mail_key(to), limit, window_s, now)
