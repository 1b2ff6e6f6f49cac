"""PIN pad on the vehicle's handlebar: one ASCII line per entered code.

Wire (serial, 9600 8N1 on hardware; a pseudo terminal with the simulator)::

    PIN <4..8 digits>\\n      the rider typed a code and pressed OK

Anything else is counted in ``bad_lines`` and dropped. The pad does not know
the right code: the agent checks it (``PinChecker``) against the one it was
configured with and counts wrong attempts.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from kickstand.edge.transports.gps import ByteSource, LineFramer

log = logging.getLogger("kickstand.edge.transports.pinpad")

MIN_DIGITS = 4
MAX_DIGITS = 8


@dataclass(frozen=True, slots=True)
class PinEntry:
    code: str


def pin_line(code: str) -> bytes:
    """The bytes a pad sends for ``code`` (used by the simulator)."""
    return f"PIN {code}\n".encode("ascii")


@dataclass(slots=True)
class PinPad:
    """Bytes in, :class:`PinEntry` out; ``run(source)`` calls ``on_entry`` for each."""

    on_entry: Callable[[PinEntry], None] | None = None
    framer: LineFramer = field(default_factory=lambda: LineFramer(max_line=32))
    entries: int = 0
    bad_lines: int = 0

    def feed(self, data: bytes) -> list[PinEntry]:
        out: list[PinEntry] = []
        for line in self.framer.feed(data):
            parts = line.strip().split(" ")
            code = parts[1] if len(parts) == 2 and parts[0] == "PIN" else ""
            if not (code.isascii() and code.isdigit() and MIN_DIGITS <= len(code) <= MAX_DIGITS):
                self.bad_lines += 1
                log.debug("pinpad_bad_line line=%r", line[:32])
                continue
            self.entries += 1
            entry = PinEntry(code)
            out.append(entry)
            if self.on_entry is not None:
                self.on_entry(entry)
        return out

    async def run(self, source: ByteSource) -> None:
        while True:
            data = await source.read(64)
            if not data:
                log.warning("pinpad_stream_closed")
                return
            self.feed(data)


class PinChecker:
    """Compares entries with the configured code (kept as a SHA-256 digest), counts failures."""

    def __init__(self, code: str | None = None) -> None:
        self._digest: bytes | None = None
        self.attempts = 0  # wrong entries since the last right one
        if code:
            self.set_code(code)

    def set_code(self, code: str | None) -> None:
        self._digest = hashlib.sha256(code.encode()).digest() if code else None
        self.attempts = 0

    @property
    def configured(self) -> bool:
        return self._digest is not None

    def check(self, entry: PinEntry) -> bool:
        ok = self._digest is not None and hmac.compare_digest(
            hashlib.sha256(entry.code.encode()).digest(), self._digest
        )
        self.attempts = 0 if ok else self.attempts + 1
        return ok
