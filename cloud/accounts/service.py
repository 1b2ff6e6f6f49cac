"""The rules of rider accounts (seed 001 Auth and user operations).

Every function takes the caller's session and commits what it did (a mail it queued is
in the same transaction as the token it carries); the caller sends due mails after the
commit (``mail.send_due``). Emails are compared lowercased; passwords are 8–255
characters (seed 001) and hashed with argon2 in a thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import outbox
from kickstand.cloud.accounts import mail, templates, throttle
from kickstand.cloud.accounts.errors import (
    AccountDisabledError,
    EmailNotConfirmedError,
    EmailTakenError,
    InvalidAccountTokenError,
    InvalidCredentialsError,
    TermsNotAcceptedError,
    UnknownConsentError,
)
from kickstand.cloud.accounts.tokens import hash_token as _hash
from kickstand.cloud.accounts.tokens import (
    new_token,
    resend_token,
    resend_token_user,
    unsubscribe_token_user,
)
from kickstand.cloud.config import Settings
from kickstand.cloud.events import EventType
from kickstand.cloud.events.catalogue import CYCLIST_CONFIRMED, CYCLIST_CREATED, CYCLIST_UPDATED
from kickstand.cloud.events.payloads import CyclistEvent
from kickstand.cloud.models import (
    AccountToken,
    AccountTokenPurpose,
    RefreshToken,
    User,
    UserConsent,
    UserRole,
)
from kickstand.cloud.security import hash_password, verify_password

log = logging.getLogger("kickstand.cloud.accounts")

#: Seed 001's consent types, with their names per language (ISO 639-1; English fallback).
CONSENT_TYPES: Mapping[str, Mapping[str, str]] = {
    "emails.networkstatus": {
        "en": "Emails about the network's status (closures, works, incidents)",
        "fr": "E-mails sur l'état du réseau (fermetures, travaux, incidents)",
    },
    "emails.promotional": {
        "en": "Offers and news by email",
        "fr": "Offres et nouveautés par e-mail",
    },
}


@dataclass(frozen=True)
class Consent:
    type: str
    name: str
    value: bool


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def _hash_password(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)


def _issue(
    session: AsyncSession,
    user_id: int,
    purpose: AccountTokenPurpose,
    ttl_s: int,
    now: datetime,
    new_email: str | None = None,
) -> str:
    token, token_hash = new_token()
    session.add(
        AccountToken(
            user_id=user_id,
            purpose=purpose,
            token_hash=token_hash,
            new_email=new_email,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_s),
        )
    )
    return token


async def _retire(
    session: AsyncSession, user_id: int, purpose: AccountTokenPurpose, now: datetime
) -> None:
    """Earlier unused tokens of this purpose stop working: only the newest mail counts."""
    await session.execute(
        update(AccountToken)
        .where(
            AccountToken.user_id == user_id,
            AccountToken.purpose == purpose,
            AccountToken.used_at.is_(None),
        )
        .values(used_at=now)
    )


async def _find(
    session: AsyncSession, token: str, purpose: AccountTokenPurpose, now: datetime
) -> AccountToken:
    row = (
        await session.scalars(
            select(AccountToken).where(
                AccountToken.token_hash == _hash(token), AccountToken.purpose == purpose
            )
        )
    ).first()
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise InvalidAccountTokenError(
            "this code is unknown, already used or expired; ask for a new one"
        )
    return row


async def _take(
    session: AsyncSession, token: str, purpose: AccountTokenPurpose, now: datetime
) -> AccountToken:
    """Find a valid token and mark it used; of two concurrent uses, one wins."""
    row = await _find(session, token, purpose, now)
    won = await session.execute(
        update(AccountToken)
        .where(AccountToken.id == row.id, AccountToken.used_at.is_(None))
        .values(used_at=now)
    )
    if won.rowcount != 1:  # type: ignore[attr-defined]
        raise InvalidAccountTokenError("this code was just used; ask for a new one")
    return row


async def _count_mail(session: AsyncSession, settings: Settings, to: str, now: datetime) -> None:
    await throttle.count_mail(
        session, to, settings.MAIL_MAX_PER_ADDRESS, settings.MAIL_WINDOW_S, now
    )


def _emit(session: AsyncSession, event: EventType[CyclistEvent], user: User) -> None:
    """The rider's event, in the transaction of the change (seed 000 `cyclist.*`)."""
    outbox.emit(
        session,
        event,
        user.id,
        CyclistEvent(
            network_id=None,
            user_id=user.id,
            lang=user.lang,
            email_confirmed=user.email_confirmed_at is not None,
            created_at=user.created_at,
        ),
    )


async def _email_taken(session: AsyncSession, email: str) -> bool:
    return (await session.scalar(select(User.id).where(User.email == email))) is not None


# ── sign-up and confirmation ──────────────────────────────────────────────────────────


async def sign_up(
    session: AsyncSession,
    settings: Settings,
    *,
    email: str,
    password: str,
    accept_terms: bool,
    address: str,
    now: datetime,
    full_name: str | None = None,
    lang: str = "en",
    consents: Mapping[str, bool] | None = None,
) -> None:
    """Create a rider whose email is not confirmed yet and mail the confirmation code.

    An address that already has an account gets a mail saying so, and the caller the same
    answer as for a new one: sign-up does not reveal who has an account. One client
    ``address`` creates at most ``SIGNUP_MAX_PER_ADDRESS`` accounts per window.
    """
    if not accept_terms:
        raise TermsNotAcceptedError("accept the terms of use to create an account")
    _check_consent_types(consents or {})
    email = normalize_email(email)
    await throttle.count(
        session,
        "signup",
        throttle.signup_key(address),
        settings.SIGNUP_MAX_PER_ADDRESS,
        settings.SIGNUP_WINDOW_S,
        now,
    )
    await _count_mail(session, settings, email, now)
    # The counts stand even if what follows fails; and no transaction (on SQLite: the
    # write lock) stays open over the hash.
    await session.commit()
    password_hash = await _hash_password(password)  # also when taken: same timing
    existing = (await session.scalars(select(User).where(User.email == email))).first()
    if existing is not None:
        mail.queue(session, templates.already_registered(settings, email), existing.id)
        await session.commit()
        log.info("event=signup_existing_email user_id=%s", existing.id)
        return
    user = User(
        email=email,
        password_hash=password_hash,
        full_name=full_name,
        role=UserRole.RIDER,
        permissions=[],
        lang=lang.lower(),
        terms_accepted_at=now,
        created_at=now,
    )
    try:
        session.add(user)
        await session.flush()
        for kind, value in (consents or {}).items():
            session.add(UserConsent(user_id=user.id, type=kind, value=value, updated_at=now))
        token = _issue(
            session, user.id, AccountTokenPurpose.EMAIL_CONFIRM, settings.EMAIL_CONFIRM_TTL_S, now
        )
        mail.queue(session, templates.email_confirmation(settings, email, token), user.id)
        _emit(session, CYCLIST_CREATED, user)
        await session.commit()
    except IntegrityError:
        # The same address signed up at the same instant by another request: that one
        # holds the account; this one answers as for any known address.
        await session.rollback()
        log.info("event=signup_race email_taken=true")
        return
    log.info("event=signup user_id=%s", user.id)


async def resend_confirmation(
    session: AsyncSession, settings: Settings, code7_token: str, now: datetime
) -> None:
    """Seed 001: authorized by the token of the login's code 7 answer."""
    user_id = resend_token_user(settings, code7_token)
    user = await session.get(User, user_id) if user_id is not None else None
    if user is None:
        raise InvalidAccountTokenError("this token does not allow a resend; log in again")
    if user.email_confirmed_at is not None:
        await session.commit()  # end the read; nothing to confirm any more
        return
    await _count_mail(session, settings, user.email, now)
    await _retire(session, user.id, AccountTokenPurpose.EMAIL_CONFIRM, now)
    token = _issue(
        session, user.id, AccountTokenPurpose.EMAIL_CONFIRM, settings.EMAIL_CONFIRM_TTL_S, now
    )
    mail.queue(session, templates.email_confirmation(settings, user.email, token), user.id)
    await session.commit()


async def confirm_email(session: AsyncSession, token: str, now: datetime) -> User:
    row = await _take(session, token, AccountTokenPurpose.EMAIL_CONFIRM, now)
    user = await session.get(User, row.user_id)
    assert user is not None  # tokens reference users
    if user.email_confirmed_at is None:
        user.email_confirmed_at = now
        _emit(session, CYCLIST_CONFIRMED, user)
    await session.commit()
    log.info("event=email_confirmed user_id=%s", user.id)
    return user


# ── login ─────────────────────────────────────────────────────────────────────────────


async def authenticate(
    session: AsyncSession,
    settings: Settings,
    *,
    email: str,
    password: str,
    address: str,
    now: datetime,
) -> User:
    """The user these credentials open, under the login limits (``throttle``).

    Refusals: 429 while the account or the address is locked; wrong email or password
    (the same for both, counted); disabled; email not confirmed (with a resend token).
    """
    policy = throttle.ThrottlePolicy.from_settings(settings)
    email = normalize_email(email)
    keys = {"account": throttle.account_key(email), "address": throttle.address_key(address)}
    await throttle.check(session, keys, now)
    user = (await session.scalars(select(User).where(User.email == email))).first()
    # No transaction stays open over the hash check (on SQLite it would hold the lock).
    await session.commit()
    # argon2 takes tens of milliseconds of CPU by design and releases the GIL: in a
    # thread, one login does not stall every other request of this process.
    password_hash = user.password_hash if user else None
    if not await asyncio.to_thread(verify_password, password, password_hash) or user is None:
        await throttle.record_failure(
            session, "account", keys["account"], policy.max_failures_account, policy, now
        )
        await throttle.record_failure(
            session, "address", keys["address"], policy.max_failures_address, policy, now
        )
        await session.commit()
        raise InvalidCredentialsError("wrong email or password")
    await throttle.clear(session, keys["account"])
    await session.commit()
    if not user.is_active:
        raise AccountDisabledError("this account is disabled; contact support")
    if user.email_confirmed_at is None:
        raise EmailNotConfirmedError(
            "confirm your email address first: follow the link we mailed you, "
            "or ask for a new one with the token given here",
            data={"token": resend_token(settings, user.id, now)},
        )
    return user


# ── password reset ────────────────────────────────────────────────────────────────────


async def request_password_reset(
    session: AsyncSession, settings: Settings, email: str, now: datetime
) -> None:
    """Mail a reset code if the address has an active account; answer the same otherwise."""
    email = normalize_email(email)
    await _count_mail(session, settings, email, now)
    user = (await session.scalars(select(User).where(User.email == email))).first()
    if user is None or not user.is_active:
        await session.commit()  # the count; and the mail sender runs before the session closes
        log.info("event=password_reset_unknown_email")
        return
    await _retire(session, user.id, AccountTokenPurpose.PASSWORD_RESET, now)
    token = _issue(
        session, user.id, AccountTokenPurpose.PASSWORD_RESET, settings.PASSWORD_RESET_TTL_S, now
    )
    mail.queue(session, templates.password_reset(settings, user.email, token), user.id)
    await session.commit()


async def reset_password(session: AsyncSession, token: str, password: str, now: datetime) -> None:
    """Set the new password; every session of the account ends (tokens and refresh tokens),
    its login lock is lifted, and the email counts as confirmed (the mail reached it)."""
    row = await _take(session, token, AccountTokenPurpose.PASSWORD_RESET, now)
    user = await session.get(User, row.user_id)
    assert user is not None
    user.password_hash = await _hash_password(password)
    user.token_generation += 1
    if user.email_confirmed_at is None:
        user.email_confirmed_at = now
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await throttle.clear(session, throttle.account_key(user.email))
    await session.commit()
    log.info("event=password_reset user_id=%s", user.id)


# ── email change ──────────────────────────────────────────────────────────────────────


async def request_email_change(
    session: AsyncSession, settings: Settings, user: User, new_email: str, now: datetime
) -> None:
    """Mail a code to the new address (and a notice to the current one)."""
    new_email = normalize_email(new_email)
    if new_email == user.email or await _email_taken(session, new_email):
        raise EmailTakenError("this email address is already used by an account")
    await _count_mail(session, settings, new_email, now)
    await _retire(session, user.id, AccountTokenPurpose.EMAIL_CHANGE, now)
    token = _issue(
        session,
        user.id,
        AccountTokenPurpose.EMAIL_CHANGE,
        settings.EMAIL_CHANGE_TTL_S,
        now,
        new_email=new_email,
    )
    mail.queue(session, templates.email_change(settings, new_email, token), user.id)
    mail.queue(session, templates.email_change_notice(settings, user.email, new_email), user.id)
    await session.commit()


async def check_email_change(session: AsyncSession, token: str, now: datetime) -> tuple[str, str]:
    """(current email, new email) of a pending change; the token stays valid."""
    row = await _find(session, token, AccountTokenPurpose.EMAIL_CHANGE, now)
    user = await session.get(User, row.user_id)
    assert user is not None and row.new_email is not None
    return user.email, row.new_email


async def confirm_email_change(
    session: AsyncSession, token: str, email: str, now: datetime
) -> User:
    """Seed 001: ``email_token`` and the new ``email``, which must be the one it was sent to."""
    email = normalize_email(email)
    row = await _find(session, token, AccountTokenPurpose.EMAIL_CHANGE, now)
    if row.new_email != email:
        raise InvalidAccountTokenError("this code was sent for another address")
    if await _email_taken(session, email):
        raise EmailTakenError("this email address is already used by an account")
    await _take(session, token, AccountTokenPurpose.EMAIL_CHANGE, now)
    user = await session.get(User, row.user_id)
    assert user is not None
    old = user.email
    user.email = email
    user.email_confirmed_at = now  # the code reached the new address
    await throttle.clear(session, throttle.account_key(old))
    _emit(session, CYCLIST_UPDATED, user)
    try:
        await session.commit()
    except IntegrityError as exc:  # the address was taken in between (a sign-up, a change)
        await session.rollback()
        raise EmailTakenError("this email address is already used by an account") from exc
    log.info("event=email_changed user_id=%s", user.id)
    return user


# ── consents ──────────────────────────────────────────────────────────────────────────


def _check_consent_types(values: Mapping[str, bool]) -> None:
    unknown = sorted(set(values) - set(CONSENT_TYPES))
    if unknown:
        raise UnknownConsentError(
            f"unknown consent type(s) {', '.join(unknown)}; known: {', '.join(CONSENT_TYPES)}"
        )


async def consents_of(session: AsyncSession, user_id: int, lang: str) -> list[Consent]:
    """Every consent type with the rider's value (not given yet: false)."""
    rows = await session.execute(
        select(UserConsent.type, UserConsent.value).where(UserConsent.user_id == user_id)
    )
    values = {str(kind): bool(value) for kind, value in rows.all()}
    return [
        Consent(kind, names.get(lang.lower(), names["en"]), values.get(kind, False))
        for kind, names in CONSENT_TYPES.items()
    ]


async def set_consents(
    session: AsyncSession, user_id: int, values: Mapping[str, bool], now: datetime
) -> None:
    _check_consent_types(values)
    for kind, value in values.items():
        row = await session.get(UserConsent, (user_id, kind))
        if row is None:
            session.add(UserConsent(user_id=user_id, type=kind, value=value, updated_at=now))
        elif row.value != value:
            row.value, row.updated_at = value, now
    await session.commit()


async def set_consents_by_token(
    session: AsyncSession,
    settings: Settings,
    token: str,
    values: Mapping[str, bool],
    now: datetime,
) -> None:
    """Seed 001: consents changed from a mail's unsubscribe link, without logging in."""
    user_id = unsubscribe_token_user(settings, token)
    if user_id is None or await session.get(User, user_id) is None:
        raise InvalidAccountTokenError("this unsubscribe link is invalid or too old")
    await set_consents(session, user_id, values, now)
