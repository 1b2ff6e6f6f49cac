"""Mails to riders: queued with the change that needs them, sent over SMTP after the commit.

A mail is a row of ``mail_outbox`` written in the same transaction as the token it
carries: if the transaction rolls back there is no mail, if SMTP is down the mail is not
lost. After the commit the API sends what is due (:func:`send_due`, a background task of
the request); every API process also retries what failed every ``MAIL_RETRY_S``
(:func:`mail_relay`), with a growing delay per mail. A row is claimed before it is sent
(``claimed_until``), so two processes never send the same mail at once.

Sending uses the standard library's ``smtplib`` in a thread (plain, STARTTLS or TLS, with
optional login); failures are logged and counted (``kickstand_mails_total``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import smtplib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid

from prometheus_client import Counter
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud import metrics
from kickstand.cloud.accounts import housekeeping
from kickstand.cloud.config import Settings
from kickstand.cloud.models import MailMessage

log = logging.getLogger("kickstand.cloud.accounts.mail")

MAILS = Counter(
    "kickstand_mails",
    "Mails to riders by kind and result (sent / failed attempt / given-up)",
    ["kind", "result"],
    registry=metrics.REGISTRY,
)
#: How long a sender holds a claimed row (longer than one SMTP exchange can take).
CLAIM_S = 120
#: Retry delays after the 1st, 2nd, … failure (the last repeats).
BACKOFF_S = (30, 60, 300, 900, 3600)
BATCH = 50
#: After this many failed attempts (about two days with BACKOFF_S) a mail is given up:
#: kept with its last error, counted, no longer tried.
MAX_ATTEMPTS = 50


@dataclass(frozen=True)
class Mail:
    kind: str
    to: str
    subject: str
    body: str


def queue(session: AsyncSession, mail: Mail, user_id: int | None) -> None:
    """Add ``mail`` to the outbox in the caller's transaction."""
    session.add(
        MailMessage(
            kind=mail.kind,
            to_address=mail.to,
            subject=mail.subject,
            body=mail.body,
            user_id=user_id,
        )
    )


def _message(settings: Settings, row: MailMessage) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.MAIL_FROM
    msg["To"] = row.to_address
    msg["Subject"] = row.subject
    msg["Message-ID"] = make_msgid(idstring=f"mail-{row.id}")
    msg["X-Kickstand-Mail"] = row.kind
    msg.set_content(row.body)
    return msg


def _smtp_send(settings: Settings, msg: EmailMessage) -> None:
    assert settings.SMTP_HOST is not None
    host, port, timeout = settings.SMTP_HOST, settings.SMTP_PORT, settings.SMTP_TIMEOUT_S
    smtp: smtplib.SMTP
    if settings.SMTP_SECURITY == "ssl":
        smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        smtp = smtplib.SMTP(host, port, timeout=timeout)
    with smtp:
        if settings.SMTP_SECURITY == "starttls":
            smtp.starttls(context=ssl.create_default_context())
        if settings.SMTP_USERNAME:
            smtp.login(settings.SMTP_USERNAME, settings.SMTP_PASSWORD or "")
        smtp.send_message(msg)


async def _claim(maker: async_sessionmaker[AsyncSession], now: datetime) -> list[MailMessage]:
    due = or_(MailMessage.claimed_until.is_(None), MailMessage.claimed_until < now)
    async with maker() as session, session.begin():
        rows: list[MailMessage] = list(
            await session.scalars(
                select(MailMessage)
                .where(
                    MailMessage.sent_at.is_(None),
                    MailMessage.next_attempt_at <= now,
                    MailMessage.attempts < MAX_ATTEMPTS,
                    due,
                )
                .order_by(MailMessage.id)
                .limit(BATCH)
            )
        )
        claimed = []
        for row in rows:
            # Conditional update: of two processes that read the row, one wins it.
            won = await session.execute(
                update(MailMessage)
                .where(MailMessage.id == row.id, MailMessage.sent_at.is_(None), due)
                .values(claimed_until=now + timedelta(seconds=CLAIM_S))
            )
            if won.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(row)
    return claimed


async def send_due(maker: async_sessionmaker[AsyncSession], settings: Settings) -> int:
    """Send every due mail once; returns how many were sent. Never raises for SMTP."""
    if settings.SMTP_HOST is None:
        log.debug("event=mail_not_sent reason=no-smtp-host (queued in mail_outbox)")
        return 0
    sent = 0
    for row in await _claim(maker, datetime.now(UTC)):
        try:
            await asyncio.to_thread(_smtp_send, settings, _message(settings, row))
        except (OSError, smtplib.SMTPException) as exc:
            await _failed(maker, row, exc)
            continue
        async with maker() as session, session.begin():
            await session.execute(
                update(MailMessage)
                .where(MailMessage.id == row.id)
                .values(sent_at=datetime.now(UTC), attempts=row.attempts + 1, claimed_until=None)
            )
        MAILS.labels(row.kind, "sent").inc()
        log.info("event=mail_sent id=%s kind=%s", row.id, row.kind)
        sent += 1
    return sent


async def send_after_commit(maker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    """:func:`send_due` as a request's background task: a failure here (the database away)
    is logged, and the mail relay tries again later."""
    try:
        await send_due(maker, settings)
    except Exception:
        log.exception("event=mail_send_after_commit_failed")


def _permanent(exc: BaseException) -> bool:
    """The server refused for good (5xx: no such recipient, sender refused): retrying cannot
    help. Connection failures and 4xx answers are worth another try."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    code = getattr(exc, "smtp_code", None)
    return isinstance(code, int) and code >= 500


async def _failed(
    maker: async_sessionmaker[AsyncSession], row: MailMessage, exc: BaseException
) -> None:
    attempts = MAX_ATTEMPTS if _permanent(exc) else row.attempts + 1
    delay = BACKOFF_S[min(attempts, len(BACKOFF_S)) - 1]
    async with maker() as session, session.begin():
        await session.execute(
            update(MailMessage)
            .where(MailMessage.id == row.id)
            .values(
                attempts=attempts,
                claimed_until=None,
                next_attempt_at=datetime.now(UTC) + timedelta(seconds=delay),
                last_error=f"{type(exc).__name__}: {exc}"[:1000],
            )
        )
    if attempts >= MAX_ATTEMPTS:
        MAILS.labels(row.kind, "given-up").inc()
        log.error(
            "event=mail_given_up id=%s kind=%s attempts=%s error=%r",
            row.id,
            row.kind,
            attempts,
            exc,
        )
        return
    MAILS.labels(row.kind, "failed").inc()
    log.warning(
        "event=mail_failed id=%s kind=%s attempts=%s retry_in_s=%s error=%r",
        row.id,
        row.kind,
        attempts,
        delay,
        exc,
    )


#: How long closing the relay waits for a round under way (a mail being sent is marked
#: sent, not cut off between the SMTP answer and the commit: that would send it twice).
STOP_WAIT_S = 15.0


@contextlib.asynccontextmanager
async def mail_relay(
    maker: async_sessionmaker[AsyncSession], settings: Settings
) -> AsyncIterator[asyncio.Task[None]]:
    """Retry due mails every ``MAIL_RETRY_S`` while the context is open (and sweep what the
    account tables shed, ``housekeeping``). Closing lets a round under way finish."""
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.MAIL_RETRY_S)
            if stop.is_set():
                return
            try:
                await send_due(maker, settings)
                await housekeeping.sweep(maker, settings, datetime.now(UTC))
            except Exception:  # the database may be away; the next round tries again
                log.exception("event=mail_relay_round_failed")

    task = asyncio.create_task(loop(), name="mail-relay")
    try:
        yield task
    finally:
        stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_WAIT_S)
        except TimeoutError:
            log.error("event=mail_relay_stop_timeout wait_s=%s", STOP_WAIT_S)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
