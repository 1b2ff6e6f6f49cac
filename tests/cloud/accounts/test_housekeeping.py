"""The account tables shed what is over, and keep what still counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from kickstand.cloud.accounts.housekeeping import sweep
from kickstand.cloud.models import (
    AccountToken,
    AccountTokenPurpose,
    LoginThrottle,
    MailMessage,
)
from tests.cloud.accounts.conftest import Accounts


async def test_sweep_deletes_what_is_over_only(accounts: Accounts) -> None:
    now = datetime.now(UTC)
    day = timedelta(days=1)
    alice = accounts.demo.user_ids["alice@example.com"]
    async with accounts.sessionmaker() as s, s.begin():
        s.add_all(
            [
                LoginThrottle(key="old", window_started_at=now - day, failures=3),
                LoginThrottle(
                    key="old-locked",
                    window_started_at=now - day,
                    failures=0,
                    locked_until=now + timedelta(minutes=5),
                ),
                LoginThrottle(key="fresh", window_started_at=now, failures=1),
            ]
        )
        for name, expires in (("expired", now - 8 * day), ("valid", now + day)):
            s.add(
                AccountToken(
                    user_id=alice,
                    purpose=AccountTokenPurpose.PASSWORD_RESET,
                    token_hash=name.ljust(64, "0"),
                    expires_at=expires,
                )
            )
        for kind, sent in (("old-sent", now - 31 * day), ("unsent", None)):
            s.add(
                MailMessage(
                    kind=kind,
                    to_address="a@example.com",
                    subject="s",
                    body="b",
                    created_at=now - 40 * day,
                    sent_at=sent,
                )
            )
    assert await sweep(accounts.sessionmaker, accounts.settings, now) == 3
    async with accounts.sessionmaker() as s:
        assert set(await s.scalars(select(LoginThrottle.key))) == {"old-locked", "fresh"}
        assert [t[:5] for t in await s.scalars(select(AccountToken.token_hash))] == ["valid"]
        assert list(await s.scalars(select(MailMessage.kind))) == ["unsent"]
    assert await sweep(accounts.sessionmaker, accounts.settings, now) == 0
