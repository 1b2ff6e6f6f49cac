"""Hardware behind small interfaces; the backend is chosen by a path and imported lazily.

    port = open_serial("/dev/ttyUSB0")          # os-level fd, termios raw, 115200 8N1
    reader = open_badge_reader("udp:localhost:54321")   # nfcpy ContactlessFrontend path
    inputs = open_station_inputs("dir:/run/kickstand/inputs")

Paths: serial ``/dev/…`` (any tty or pty) or ``mem:`` (an in-process pair, tests);
badge readers ``usb:…``, ``tty:…``, ``udp:host:port`` (nfcpy) or ``none``; station
inputs ``dir:<directory>`` (sysfs-GPIO-like files) or ``none``.
"""

from __future__ import annotations

import abc
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from kickstand.edge.core.errors import TransportError

log = logging.getLogger("kickstand.edge.transports")


class SerialPort(abc.ABC):
    """A byte stream to a UART. ``read`` returns what arrived (b"" on timeout)."""

    path: str

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def read(self, wait_s: float) -> bytes:
        """Wait up to ``wait_s`` s for bytes; return all that are buffered (maybe b"")."""

    @abc.abstractmethod
    async def write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def discard_input(self) -> None:
        """Drop bytes received so far (before a new request on a half-duplex bus)."""

    @abc.abstractmethod
    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class BadgeIndication:
    """What a reader shows the rider for a badge (LED colour, buzzer, display line)."""

    uid: bytes
    outcome: str  # "unlocking", "linked", "refused"
    reason: str | None = None  # why refused: "unknown_badge", "rental_limit", …
    spot: int | None = None  # the spot that opens


class BadgeReader(abc.ABC):
    """An NFC reader: yields the UID of every badge presented (debounced)."""

    path: str
    _shown: deque[BadgeIndication] | None = None

    def indicate(self, indication: BadgeIndication) -> None:
        """Show the answer to a badge. This default logs it and keeps the last ones (a
        display's memory, read by tests and the health page); a reader with an LED, a
        buzzer or a display overrides it."""
        if self._shown is None:
            self._shown = deque(maxlen=32)
        self._shown.append(indication)
        log.info(
            "badge_indication path=%s uid=%s outcome=%s reason=%s spot=%s",
            self.path, indication.uid.hex(), indication.outcome, indication.reason,
            indication.spot,
        )

    @property
    def shown(self) -> list[BadgeIndication]:
        """What the reader was asked to show, oldest first (the last 32)."""
        return list(self._shown or ())

    def liveness(self) -> dict[str, Any]:
        """What the health snapshot shows of the reader (``state``: none, polling, stalled,
        unavailable, stopped; reads, errors, the last read and error and their ages in
        seconds). A reader without a polling loop of its own says only its path."""
        return {"path": self.path, "state": "none"}

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    def badges(self) -> AsyncIterator[bytes]: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class InputsReading:
    power_present: bool = True
    alarm: bool = False
    alarm_reason: str = ""
    energy_wh: int | None = None
    power_w: int | None = None
    temperature_c: float | None = None  # mainboard


class StationInputs(abc.ABC):
    """Power-present and alarm inputs, and the energy meter of a station."""

    path: str

    @abc.abstractmethod
    async def read(self) -> InputsReading: ...


class _NoInputs(StationInputs):
    path = "none"

    async def read(self) -> InputsReading:
        return InputsReading()


class _NoBadgeReader(BadgeReader):
    path = "none"

    async def start(self) -> None:
        return None

    async def badges(self) -> AsyncIterator[bytes]:
        import asyncio

        await asyncio.Event().wait()
        yield b""  # pragma: no cover - never reached

    async def close(self) -> None:
        return None


def open_serial(path: str, baudrate: int = 115200) -> SerialPort:
    if path.startswith("/"):
        from kickstand.edge.transports.serial import FdSerialPort

        return FdSerialPort(path, baudrate)
    raise TransportError(path, "unknown serial path (expected /dev/... or a pty path)")


def open_badge_reader(path: str) -> BadgeReader:
    if path in ("", "none"):
        return _NoBadgeReader()
    if path.split(":", 1)[0] in ("usb", "tty", "udp"):
        from kickstand.edge.transports.nfc import NfcpyBadgeReader

        return NfcpyBadgeReader(path)
    raise TransportError(path, "unknown NFC path (expected usb:..., tty:..., udp:host:port)")


def open_station_inputs(path: str) -> StationInputs:
    if path in ("", "none"):
        return _NoInputs()
    if path.startswith("dir:"):
        from kickstand.edge.transports.inputs import DirectoryInputs

        return DirectoryInputs(path[4:])
    raise TransportError(path, "unknown inputs path (expected dir:<directory> or none)")


__all__ = [
    "BadgeIndication",
    "BadgeReader",
    "InputsReading",
    "SerialPort",
    "StationInputs",
    "TransportError",
    "open_badge_reader",
    "open_serial",
    "open_station_inputs",
]
