"""Rider accounts through the API (seed 001): sign-up, confirmation (code 7, resend),
password reset, email change, consents; each operation's refusals and their codes. Mails
go through the real SMTP client to an in-process SMTP sink."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from kickstand.cloud.config import Settings
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.models import (
    AccountToken,
    Base,
    MailMessage,
    OutboxEvent,
    User,
    UserRole,
)
from kickstand.testing.mailsink import MailSink
from tests.cloud.accounts.conftest import Accounts
from tests.cloud.api.support import BOTH_DATABASES

PASSWORD = "rider-pass-1"


@BOTH_DATABASES
async def test_sign_up_confirm_then_log_in(accounts: Accounts) -> None:
    r = await accounts.client.post(
        "/v1/auth/signup",
        json={
            "email": "New.Rider@Example.com",
            "password": PASSWORD,
            "full_name": "New Rider",
            "accept_terms": True,
            "consents": {"emails.promotional": True},
        },
    )
    assert r.status_code == 201, r.text
    assert r.json() == {
        "code": 0,
        "data": {"email": "new.rider@example.com", "email_confirmation_required": True},
    }
    mail = await accounts.sink.wait_for("new.rider@example.com", kind="email-confirm")
    token = accounts.sink.token_in(mail)
    assert token in str(mail.get_body()), "the link carries the code too"

    # Not confirmed yet: seed 001's code 7, with a token that authorizes a resend only.
    refused = await accounts.login("new.rider@example.com", PASSWORD)
    assert refused.status_code == 403
    assert refused.json()["code"] == 7 and refused.json()["reason"] == "email-not-confirmed"
    resend = refused.json()["data"]["token"]
    as_access = await accounts.client.get(
        "/v1/auth/check", headers={"Authorization": f"Bearer {resend}"}
    )
    assert as_access.status_code == 401, "the code-7 token is not an access token"

    r = await accounts.client.post("/v1/auth/email/confirm", json={"token": token})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["email"] == "new.rider@example.com"
    again = await accounts.client.post("/v1/auth/email/confirm", json={"token": token})
    assert again.status_code == 400 and again.json()["code"] == 31, "single use"

    ok = await accounts.login("new.rider@example.com", PASSWORD)
    assert ok.status_code == 200, ok.text
    headers = {"Authorization": f"Bearer {ok.json()['data']['token']}"}
    consents = await accounts.client.get("/v1/consents?lang=en", headers=headers)
    assert {c["type"]: c["value"] for c in consents.json()["data"]} == {
        "emails.networkstatus": False,
        "emails.promotional": True,
    }
    async with accounts.sessionmaker() as s:
        user = (await s.scalars(select(User).where(User.email == "new.rider@example.com"))).one()
        assert user.role == UserRole.RIDER and user.terms_accepted_at is not None
        stored = list(await s.scalars(select(AccountToken.token_hash)))
        events = (
            await s.execute(
                select(OutboxEvent.topic, OutboxEvent.payload)
                .where(OutboxEvent.resource_id == str(user.id), OutboxEvent.resource_type == "user")
                .order_by(OutboxEvent.id)
            )
        ).all()
    assert token not in stored, "only the token's hash is stored"
    # Seed 000's cyclist.* topics, written with the changes (no network: unscoped).
    assert [(t, d["email_confirmed"], d["network_id"]) for t, d in events] == [
        ("cyclist.created", False, None),
        ("cyclist.confirmed", True, None),
    ]
    assert "email" not in events[0][1], "no personal data beyond the id in webhooks"


async def test_resend_replaces_the_code(accounts: Accounts) -> None:
    first = await accounts.sign_up("resend@example.com")
    code7 = (await accounts.login("resend@example.com", PASSWORD)).json()["data"]["token"]
    r = await accounts.client.post(
        "/v1/auth/email/confirm/resend", headers={"Authorization": f"Bearer {code7}"}
    )
    assert r.status_code == 200, r.text
    second = accounts.sink.token_in(
        await accounts.sink.wait_for("resend@example.com", kind="email-confirm", count=2)
    )
    assert second != first
    old = await accounts.client.post("/v1/auth/email/confirm", json={"token": first})
    assert old.status_code == 400 and old.json()["code"] == 31, "an earlier code stops working"
    assert (await accounts.client.post("/v1/auth/email/confirm", json={"token": second})).is_success
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        bad = await accounts.client.post("/v1/auth/email/confirm/resend", headers=headers)
        assert bad.status_code == 400 and bad.json()["code"] == 31


async def test_sign_up_refusals(accounts: Accounts) -> None:
    base = {"email": "x@example.com", "password": PASSWORD, "accept_terms": True}
    cases = [
        ({**base, "accept_terms": False}, 422, 33),
        ({**base, "consents": {"emails.spam": True}}, 422, 34),
        ({**base, "password": "short"}, 422, 2),
        ({**base, "email": "not-an-email"}, 422, 2),
        ({**base, "full_name": "nul\x00char"}, 422, 2),
        ({**base, "password": "pass\x00word"}, 422, 2),
    ]
    for body, status, code in cases:
        r = await accounts.client.post("/v1/auth/signup", json=body)
        assert (r.status_code, r.json()["code"]) == (status, code), (body, r.text)
    async with accounts.sessionmaker() as s:
        assert await s.scalar(select(func.count()).where(User.email == "x@example.com")) == 0
    bad = await accounts.client.post("/v1/auth/email/confirm", json={"token": "short"})
    assert bad.status_code == 422 and bad.json()["code"] == 2


async def test_sign_up_with_a_known_address_answers_the_same_and_mails_the_owner(
    accounts: Accounts,
) -> None:
    body = {"email": "alice@example.com", "password": "another-pass", "accept_terms": True}
    r = await accounts.client.post("/v1/auth/signup", json=body)
    assert r.status_code == 201 and r.json()["data"]["email"] == "alice@example.com"
    mail = await accounts.sink.wait_for("alice@example.com")
    assert mail["X-Kickstand-Mail"] == "already-registered"
    ok = await accounts.login("alice@example.com", accounts.demo.passwords["alice@example.com"])
    assert ok.status_code == 200, "the account is untouched"


async def test_expired_confirmation_code_is_refused(accounts: Accounts) -> None:
    token = await accounts.sign_up("late@example.com")
    async with accounts.sessionmaker() as s, s.begin():
        await s.execute(
            update(AccountToken).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    r = await accounts.client.post("/v1/auth/email/confirm", json={"token": token})
    assert r.status_code == 400 and r.json()["code"] == 31


@BOTH_DATABASES
async def test_password_reset(accounts: Accounts) -> None:
    email, old_password = "bob@example.com", accounts.demo.passwords["bob@example.com"]
    before = await accounts.login(email, old_password)
    old_access = {"Authorization": f"Bearer {before.json()['data']['token']}"}

    unknown = await accounts.client.post(
        "/v1/auth/password/reset", json={"email": "nobody@example.com"}
    )
    assert unknown.status_code == 200, "no account revealed"
    r = await accounts.client.post("/v1/auth/password/reset", json={"email": "BOB@example.com"})
    assert r.status_code == 200
    token = accounts.sink.token_in(await accounts.sink.wait_for(email, kind="password-reset"))
    assert accounts.sink.to("nobody@example.com") == []

    short = await accounts.client.post(
        "/v1/auth/password/reset/confirm", json={"token": token, "password": "short"}
    )
    assert short.status_code == 422
    done = await accounts.client.post(
        "/v1/auth/password/reset/confirm", json={"token": token, "password": "bob-new-pass-2"}
    )
    assert done.status_code == 200, done.text
    reused = await accounts.client.post(
        "/v1/auth/password/reset/confirm", json={"token": token, "password": "bob-new-pass-3"}
    )
    assert reused.status_code == 400 and reused.json()["code"] == 31

    assert (await accounts.client.get("/v1/auth/check", headers=old_access)).status_code == 401
    assert (await accounts.login(email, old_password)).status_code == 401
    assert (await accounts.login(email, "bob-new-pass-2")).status_code == 200


@BOTH_DATABASES
async def test_email_change(accounts: Accounts) -> None:
    alice = await accounts.login("alice@example.com", accounts.demo.passwords["alice@example.com"])
    headers = {"Authorization": f"Bearer {alice.json()['data']['token']}"}
    taken = await accounts.client.post(
        "/v1/users/me/email", json={"email": "bob@example.com"}, headers=headers
    )
    assert taken.status_code == 409 and taken.json()["code"] == 32
    anonymous = await accounts.client.post("/v1/users/me/email", json={"email": "a@example.org"})
    assert anonymous.status_code == 401

    r = await accounts.client.post(
        "/v1/users/me/email", json={"email": "alice@example.org"}, headers=headers
    )
    assert r.status_code == 200, r.text
    token = accounts.sink.token_in(
        await accounts.sink.wait_for("alice@example.org", kind="email-change")
    )
    notice = await accounts.sink.wait_for("alice@example.com", kind="email-change-notice")
    assert "alice@example.org" in str(notice.get_body())

    check = await accounts.client.get(f"/v1/auth/email/change?token={token}")
    assert check.json()["data"] == {"email": "alice@example.com", "new_email": "alice@example.org"}
    wrong = await accounts.client.post(
        "/v1/auth/email/change", json={"email_token": token, "email": "eve@example.org"}
    )
    assert wrong.status_code == 400 and wrong.json()["code"] == 31
    done = await accounts.client.post(
        "/v1/auth/email/change", json={"email_token": token, "email": "alice@example.org"}
    )
    assert done.status_code == 200, done.text
    again = await accounts.client.get(f"/v1/auth/email/change?token={token}")
    assert again.status_code == 400 and again.json()["code"] == 31

    password = accounts.demo.passwords["alice@example.com"]
    assert (await accounts.login("alice@example.org", password)).status_code == 200
    assert (await accounts.login("alice@example.com", password)).status_code == 401
    async with accounts.sessionmaker() as s:
        topics = list(
            await s.scalars(
                select(OutboxEvent.topic).where(
                    OutboxEvent.resource_id == str(accounts.demo.user_ids["alice@example.com"]),
                    OutboxEvent.resource_type == "user",
                )
            )
        )
    assert topics == ["cyclist.updated"]


async def test_consents(accounts: Accounts) -> None:
    alice = await accounts.login("alice@example.com", accounts.demo.passwords["alice@example.com"])
    headers = {"Authorization": f"Bearer {alice.json()['data']['token']}"}
    assert (await accounts.client.get("/v1/consents")).status_code == 401
    r = await accounts.client.put(
        "/v1/users/me/consents",
        json={"consents": {"emails.networkstatus": True, "emails.promotional": False}},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    fr = await accounts.client.get("/v1/consents?lang=fr", headers=headers)
    by_type = {c["type"]: c for c in fr.json()["data"]}
    assert by_type["emails.networkstatus"]["value"] is True
    assert by_type["emails.promotional"]["value"] is False
    assert by_type["emails.networkstatus"]["name"].startswith("E-mails")
    unknown = await accounts.client.put(
        "/v1/users/me/consents", json={"consents": {"sms.spam": True}}, headers=headers
    )
    assert unknown.status_code == 422 and unknown.json()["code"] == 34


async def test_a_mail_not_sent_is_kept_and_retried(accounts: Accounts) -> None:
    from kickstand.cloud.accounts import mail

    failed = mail.MAILS.labels("email-confirm", "failed")
    failed_before = failed._value.get()
    down = accounts.settings.model_copy(update={"SMTP_PORT": 1})  # nothing listens there
    accounts.app.state.settings = down
    r = await accounts.client.post(
        "/v1/auth/signup",
        json={"email": "patient@example.com", "password": PASSWORD, "accept_terms": True},
    )
    assert r.status_code == 201, "the sign-up does not depend on the mail server"
    async with accounts.sessionmaker() as s:
        row = (await s.scalars(select(MailMessage))).one()
    assert row.sent_at is None and row.attempts == 1 and row.last_error
    assert row.next_attempt_at > datetime.now(UTC), "retried later, not in a loop"
    assert failed._value.get() == failed_before + 1, "counted (kickstand_mails_total)"
    assert accounts.sink.messages == []

    assert await mail.send_due(accounts.sessionmaker, accounts.settings) == 0, "not due yet"
    async with accounts.sessionmaker() as s, s.begin():
        await s.execute(update(MailMessage).values(next_attempt_at=datetime.now(UTC)))
    assert await mail.send_due(accounts.sessionmaker, accounts.settings) == 1
    received = await accounts.sink.wait_for("patient@example.com", kind="email-confirm")
    assert accounts.sink.token_in(received)
    assert await mail.send_due(accounts.sessionmaker, accounts.settings) == 0, "sent once"


@pytest.mark.parametrize("overrides", [{"MAIL_MAX_PER_ADDRESS": 2}], indirect=True)
async def test_nobody_can_flood_a_mailbox_with_codes(accounts: Accounts) -> None:
    for email in ("bob@example.com", "nobody@example.com"):  # the same for both: no reveal
        for _ in range(2):
            r = await accounts.client.post("/v1/auth/password/reset", json={"email": email})
            assert r.status_code == 200, r.text
        refused = await accounts.client.post("/v1/auth/password/reset", json={"email": email})
        assert refused.status_code == 429 and refused.json()["code"] == 30
        assert 3500 < int(refused.headers["Retry-After"]) <= 3600
    assert len(accounts.sink.to("bob@example.com")) == 2
    # Sign-up mails count too (here: a third sign-up mail to one address).
    body = {"email": "twice@example.com", "password": PASSWORD, "accept_terms": True}
    for _ in range(2):
        assert (await accounts.client.post("/v1/auth/signup", json=body)).status_code == 201
    third = await accounts.client.post("/v1/auth/signup", json=body)
    assert third.status_code == 429


async def test_the_relay_of_every_api_process_sends_what_is_due(accounts: Accounts) -> None:
    from kickstand.cloud.accounts import mail

    async with accounts.sessionmaker() as s, s.begin():
        mail.queue(s, mail.Mail("email-confirm", "queued@example.com", "Hi", "code"), None)
    fast = accounts.settings.model_copy(update={"MAIL_RETRY_S": 0.05})
    async with mail.mail_relay(accounts.sessionmaker, fast):
        received = await accounts.sink.wait_for("queued@example.com", within=5)
    assert received["Subject"] == "Hi"
    async with accounts.sessionmaker() as s:
        assert (await s.scalars(select(MailMessage.sent_at))).one() is not None


@pytest.mark.parametrize("overrides", [{"SIGNUP_MAX_PER_ADDRESS": 2}], indirect=True)
async def test_one_address_creates_a_bounded_number_of_accounts(accounts: Accounts) -> None:
    def body(n: int) -> dict[str, object]:
        return {"email": f"bot{n}@example.com", "password": PASSWORD, "accept_terms": True}

    async with (
        accounts.client_from("203.0.113.5") as bot,
        accounts.client_from("198.51.100.6") as person,
    ):
        for n in range(2):
            assert (await bot.post("/v1/auth/signup", json=body(n))).status_code == 201
        refused = await bot.post("/v1/auth/signup", json=body(2))
        assert refused.status_code == 429 and refused.json()["code"] == 30
        assert "sign-ups" in refused.json()["message"] and refused.headers["Retry-After"]
        assert (await person.post("/v1/auth/signup", json=body(3))).status_code == 201
    async with accounts.sessionmaker() as s:
        created = set(await s.scalars(select(User.email).where(User.email.like("bot%"))))
    assert created == {"bot0@example.com", "bot1@example.com", "bot3@example.com"}


async def test_consents_from_an_unsubscribe_link(accounts: Accounts) -> None:
    from kickstand.cloud.accounts.tokens import resend_token, unsubscribe_token

    alice = accounts.demo.user_ids["alice@example.com"]
    link = unsubscribe_token(accounts.settings, alice)
    r = await accounts.client.put(
        "/v1/consents/unsubscribe",
        json={
            "consents": {"emails.promotional": False, "emails.networkstatus": True},
            "token": link,
        },
    )
    assert r.status_code == 200, r.text
    login = await accounts.login("alice@example.com", accounts.demo.passwords["alice@example.com"])
    headers = {"Authorization": f"Bearer {login.json()['data']['token']}"}
    values = (await accounts.client.get("/v1/consents", headers=headers)).json()["data"]
    assert {c["type"]: c["value"] for c in values} == {
        "emails.networkstatus": True,
        "emails.promotional": False,
    }
    for token in ("not-a-token", resend_token(accounts.settings, alice)):
        bad = await accounts.client.put(
            "/v1/consents/unsubscribe",
            json={"consents": {"emails.promotional": True}, "token": token},
        )
        assert bad.status_code == 400 and bad.json()["code"] == 31


@BOTH_DATABASES
async def test_the_same_address_signed_up_at_once_makes_one_account(accounts: Accounts) -> None:
    import asyncio

    body = {"email": "eager@example.com", "password": PASSWORD, "accept_terms": True}
    answers = await asyncio.gather(
        *(accounts.client.post("/v1/auth/signup", json=body) for _ in range(5))
    )
    assert [r.status_code for r in answers] == [201] * 5, [r.text for r in answers]
    async with accounts.sessionmaker() as s:
        count = await s.scalar(select(func.count()).where(User.email == "eager@example.com"))
    assert count == 1
    assert accounts.sink.to("eager@example.com"), "the account's owner got a mail"


async def test_a_mail_the_server_refuses_for_good_is_given_up(tmp_path: Path) -> None:
    from kickstand.cloud.accounts import mail

    with MailSink(refused=frozenset({"ghost@example.com"})) as strict:
        settings = Settings(
            DATABASE_URL="sqlite+aiosqlite:///" + str(tmp_path / "m.sqlite3"),
            VAR_DIR=tmp_path / "var",
            SMTP_HOST=strict.host,
            SMTP_PORT=strict.port,
        )
        engine = create_engine(settings)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            maker = create_sessionmaker(engine)
            async with maker() as s, s.begin():
                mail.queue(s, mail.Mail("email-confirm", "ghost@example.com", "Hi", "b"), None)
                mail.queue(s, mail.Mail("email-confirm", "real@example.com", "Hi", "b"), None)
            given_up = mail.MAILS.labels("email-confirm", "given-up")
            before = given_up._value.get()
            assert await mail.send_due(maker, settings) == 1
            assert [str(m["To"]) for m in strict.messages] == ["real@example.com"]
            async with maker() as s:
                ghost = (
                    await s.scalars(
                        select(MailMessage).where(MailMessage.to_address == "ghost@example.com")
                    )
                ).one()
            assert ghost.sent_at is None and ghost.attempts == mail.MAX_ATTEMPTS
            assert ghost.last_error and "550" in ghost.last_error
            assert given_up._value.get() == before + 1
            async with maker() as s, s.begin():
                await s.execute(update(MailMessage).values(next_attempt_at=datetime.now(UTC)))
            assert await mail.send_due(maker, settings) == 0, "not tried again"
        finally:
            await engine.dispose()
