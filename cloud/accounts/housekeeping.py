"""What the account tables shed over time: throttle counters whose window and lock are
over, tokens long expired or used, mails long sent, rider API requests long made. Run by
the API's mail relay at each round (any process may; the deletes are idempotent)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, or_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.accounts.models import ApiRequest
from kickstand.cloud.config import Settings
from kickstand.cloud.models import AccountToken, LoginThrottle, MailMessage

log = logging.getLogger("kickstand.cloud.accounts.housekeeping")

#: Used or expired tokens stay this long (a support question about a mail can be answered).
TOKENS_KEPT = timedelta(days=7)
#: Sent mails stay this long (what was sent to whom, for support).
MAILS_KEPT = timedelta(days=30)
#: The rider API request log (seed 002 "Get user api requests") stays this long: it grows
#: with every rider request, so it is bounded by age.
API_REQUESTS_KEPT = timedelta(days=30)


async def sweep(maker: async_sessionmaker[AsyncSession], settings: Settings, now: datetime) -> int:
    """Delete what is over; returns how many rows went."""
    window = timedelta(seconds=max(settings.LOGIN_WINDOW_S, settings.MAIL_WINDOW_S))
    throttle_over = (LoginThrottle.window_started_at < now - window) & or_(
        LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until < now
    )
    token_over = (AccountToken.expires_at < now - TOKENS_KEPT) | (
        AccountToken.used_at < now - TOKENS_KEPT
    )
    gone = 0
    async with maker() as session, session.begin():
        for stmt in (
            delete(LoginThrottle).where(throttle_over),
            delete(AccountToken).where(token_over),
            delete(MailMessage).where(MailMessage.sent_at < now - MAILS_KEPT),
            delete(ApiRequest).where(ApiRequest.created_at < now - API_REQUESTS_KEPT),
        ):
            result = await session.execute(stmt)
            gone += result.rowcount  # type: ignore[attr-defined]
    if gone:
        log.info("event=accounts_swept rows=%s", gone)
    return gone
