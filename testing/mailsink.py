"""An SMTP sink for development and tests: a real SMTP server (aiosmtpd) on loopback that
keeps every mail it receives, in memory and as ``.eml`` files in a folder.

    with MailSink(directory=Path("var/mail")) as sink:   # SMTP_HOST=sink.host, SMTP_PORT=sink.port
        ...
        mail = await sink.wait_for("rider@example.com")
        token = sink.token_in(mail)

The cloud talks to it with its ordinary SMTP client, so what a test reads is what a real
mail server would have been handed. It runs in aiosmtpd's own thread and loop.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiosmtpd.controller import Controller

from ._process import LOOPBACK, free_port

#: The 10-character code our mails carry on a line "... code in the app: XXXXXXXXXX".
_CODE = re.compile(r"code in the app: ([A-Za-z0-9]{10})\b")


class _Handler:
    def __init__(self, sink: MailSink) -> None:
        self._sink = sink

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() in self._sink.refused:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        data = raw if isinstance(raw, bytes) else str(raw).encode()
        message = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self._sink._received(message, data, list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


class MailSink:
    """``directory`` (optional): each mail is also written there as ``<n>-<to>.eml``.
    ``refused``: addresses answered ``550`` (no such mailbox), as a real server would."""

    def __init__(
        self,
        *,
        directory: Path | None = None,
        host: str = LOOPBACK,
        refused: frozenset[str] = frozenset(),
    ) -> None:
        self.host = host
        self.refused = frozenset(a.lower() for a in refused)
        self.port = free_port(host)
        self.directory = directory
        self._lock = threading.Lock()
        self._messages: list[EmailMessage] = []
        self._controller = Controller(_Handler(self), hostname=host, port=self.port)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what arrived -----------------------------------------------------------------------

    def _received(self, message: EmailMessage, raw: bytes, rcpt_tos: list[str]) -> None:
        with self._lock:
            self._messages.append(message)
            n = len(self._messages)
        if self.directory is not None:
            to = re.sub(r"[^A-Za-z0-9@._-]", "_", ",".join(rcpt_tos))[:80]
            (self.directory / f"{n:04d}-{to}.eml").write_bytes(raw)

    @property
    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return list(self._messages)

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address.lower() in str(m["To"]).lower()]

    async def wait_for(
        self, address: str, *, kind: str | None = None, count: int = 1, within: float = 10.0
    ) -> EmailMessage:
        """The ``count``-th mail to ``address`` (of ``kind``: its X-Kickstand-Mail header)."""
        deadline = time.monotonic() + within
        while True:
            found = [m for m in self.to(address) if kind is None or m["X-Kickstand-Mail"] == kind]
            if len(found) >= count:
                return found[count - 1]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no mail #{count} to {address} (kind {kind}) within {within} s; "
                    f"got {[(str(m['To']), str(m['Subject'])) for m in self.messages]}"
                )
            await asyncio.sleep(0.02)

    @staticmethod
    def token_in(message: EmailMessage) -> str:
        """The 10-character code a mail carries."""
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        match = _CODE.search(text)
        if match is None:
            raise AssertionError(f"no code in mail {message['Subject']!r}: {text!r}")
        return match.group(1)
