"""The simulator's end of a serial line: the master side of a pseudo terminal.

The agent opens ``slave_path`` as it would open ``/dev/ttyUSB0``. The simulator
keeps the slave open too, so the line survives the agent closing and reopening
it, and writes without blocking: with nobody reading, output is dropped as a
UART's would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tty

log = logging.getLogger("kickstand.simulators.vehicle.wire")


class PtyLine:
    def __init__(self, name: str) -> None:
        self.name = name
        self.master_fd, self._slave_fd = os.openpty()
        tty.setraw(self._slave_fd)
        tty.setraw(self.master_fd)
        os.set_blocking(self.master_fd, False)
        self.slave_path = os.ttyname(self._slave_fd)
        self.bytes_written = 0
        self.bytes_dropped = 0
        self._incoming: asyncio.Queue[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            n = os.write(self.master_fd, data)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            log.debug("pty_write_failed name=%s error=%s", self.name, exc)
            n = 0
        self.bytes_written += n
        self.bytes_dropped += len(data) - n

    def start_reading(self) -> asyncio.Queue[bytes]:
        """Bytes the agent writes arrive on the returned queue."""
        if self._incoming is None:
            self._incoming = asyncio.Queue()
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self.master_fd, self._on_readable)
        return self._incoming

    def _on_readable(self) -> None:
        try:
            data = os.read(self.master_fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data and self._incoming is not None:
            self._incoming.put_nowait(data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.master_fd)
        for fd in (self.master_fd, self._slave_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
