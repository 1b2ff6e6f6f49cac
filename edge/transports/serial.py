"""Serial port on an os-level file descriptor: a real UART tty or a pseudo terminal.

The fd is put in raw mode (termios) at the bus's baud rate, non-blocking, and read
through the event loop's reader callback, so an idle bus costs no CPU. (pyserial's
``loop://`` does not work with asyncio; ``os.openpty()`` pairs do, and so does this.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
import tty

from kickstand.edge.core.errors import TransportError
from kickstand.edge.transports import SerialPort

_BAUD = {
    9600: termios.B9600,
    19200: termios.B19200,
    38400: termios.B38400,
    57600: termios.B57600,
    115200: termios.B115200,
}
MAX_BUFFER = 4096  # a flooding peer cannot make us hold more than this


class FdSerialPort(SerialPort):
    def __init__(self, path: str, baudrate: int = 115200) -> None:
        if baudrate not in _BAUD:
            raise TransportError(path, f"unsupported baud rate {baudrate}")
        self.path = path
        self.baudrate = baudrate
        self._fd: int | None = None
        self._buf = bytearray()
        self._event = asyncio.Event()
        self.overflowed = 0  # bytes dropped because nobody read them in time

    async def open(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as exc:
            raise TransportError(self.path, f"cannot open: {exc}") from exc
        try:
            if os.isatty(fd):
                tty.setraw(fd)
                attrs = termios.tcgetattr(fd)
                attrs[4] = attrs[5] = _BAUD[self.baudrate]
                termios.tcsetattr(fd, termios.TCSANOW, attrs)
        except termios.error as exc:
            os.close(fd)
            raise TransportError(self.path, f"cannot configure: {exc}") from exc
        self._fd = fd
        asyncio.get_running_loop().add_reader(fd, self._on_readable)

    def _on_readable(self) -> None:
        if self._fd is None:
            return
        try:
            data = os.read(self._fd, 1024)
        except BlockingIOError:
            return
        except OSError:
            # The peer closed (pty master gone): stop watching, reads time out.
            self._detach()
            return
        if not data:
            self._detach()
            return
        self._buf.extend(data)
        if len(self._buf) > MAX_BUFFER:
            drop = len(self._buf) - MAX_BUFFER
            self.overflowed += drop
            del self._buf[:drop]
        self._event.set()

    def _detach(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._fd)

    async def read(self, wait_s: float) -> bytes:
        if self._fd is None:
            raise TransportError(self.path, "not open")
        if not self._buf:
            self._event.clear()
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._event.wait()
        data = bytes(self._buf)
        self._buf.clear()
        return data

    async def write(self, data: bytes) -> None:
        if self._fd is None:
            raise TransportError(self.path, "not open")
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._fd, view)
            except BlockingIOError:
                await asyncio.sleep(0.001)
                continue
            except OSError as exc:
                raise TransportError(self.path, f"write failed: {exc}") from exc
            view = view[n:]

    def discard_input(self) -> None:
        self._buf.clear()
        self._event.clear()

    async def close(self) -> None:
        if self._fd is not None:
            self._detach()
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
