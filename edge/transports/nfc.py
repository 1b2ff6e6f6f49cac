"""NFC badge reader through nfcpy's ContactlessFrontend (``usb:…``, ``tty:…``, ``udp:h:p``).

nfcpy blocks, so the reader runs in a daemon thread and hands each UID to asyncio
with ``call_soon_threadsafe``. The UID is taken at discovery (Type A ``sdd_res``,
Type F IDm) without activating the tag: a badge is an identifier, not a data
carrier, and skipping activation keeps a read under 10 ms on the udp driver. A
badge held on the reader is reported once per ``debounce_s``.

Liveness (:meth:`NfcpyBadgeReader.liveness`, in the agent's health snapshot): every polling
round of nfcpy's loop is counted (its ``terminate`` callback), so a technician can tell a
reader that polls and hears no card (a dead RF field, an antenna, a udp peer gone: at the
wire the same silence as no badge) from one that fails (errors: nfcpy catches a reader's
IOError, logs it on ``nfc.clf`` and returns False from ``connect``) or one stuck in a call
(no round for ``stall_s``). Failures are logged ``nfc_error`` once, then at most once per
``log_every_s`` with the count suppressed meanwhile, so a dead reader cannot fill the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from kickstand.edge.core.errors import TransportError
from kickstand.edge.transports import BadgeReader

log = logging.getLogger("kickstand.edge.transports.nfc")

#: The udp driver's round lasts ~1 s (its SENS_REQ timeout), a USB reader's less: a loop
#: that has not come round for this long is stuck in the driver.
STALL_S = 10.0
#: A failing reader logs its first error, then at most one line per this long.
LOG_EVERY_S = 60.0
#: The shortest polling round: nfcpy swallows a garbled answer (a CommunicationError, at
#: debug level) and polls again at once, so a confused reader would spin a core.
MIN_ROUND_S = 0.05


class _NfcpyErrors(logging.Filter):
    """The last error nfcpy logged from the reader's thread: ``connect`` catches a reader's
    IOError and only logs it, so that line is the only place that says why."""

    def __init__(self) -> None:
        super().__init__()
        self.thread: threading.Thread | None = None
        self.last: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and threading.current_thread() is self.thread:
            self.last = record.getMessage()
        return True


class _Throttle:
    """Once, then at most once per ``every_s``: ``due()`` gives the number of calls held
    back since the last one let through, or None to hold this one back."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._last: float | None = None
        self._held = 0

    def due(self, now: float) -> int | None:
        if self._last is not None and now - self._last < self.every_s:
            self._held += 1
            return None
        held, self._held, self._last = self._held, 0, now
        return held


class NfcpyBadgeReader(BadgeReader):
    def __init__(
        self,
        path: str,
        *,
        targets: tuple[str, ...] = ("106A",),
        debounce_s: float = 2.0,
        stall_s: float = STALL_S,
        log_every_s: float = LOG_EVERY_S,
    ) -> None:
        self.path = path
        self.targets = targets
        self.debounce_s = debounce_s
        self.stall_s = stall_s
        self.reads = 0
        self.errors = 0
        self.polls = 0  # rounds of nfcpy's polling loop
        self.state = "closed"  # polling, unavailable (not opened), stopped (its thread ended)
        self.last_error: str | None = None
        # time.monotonic() of each; None: never
        self._last_read: float | None = None
        self._last_error: float | None = None
        self._last_poll: float | None = None
        self._error_log = _Throttle(log_every_s)
        self._nfcpy_errors = _NfcpyErrors()
        self._stalled = False
        self._watch: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last: tuple[bytes, float] = (b"", 0.0)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"nfc-{self.path}", daemon=True
        )
        self._nfcpy_errors.thread = self._thread
        logging.getLogger("nfc.clf").addFilter(self._nfcpy_errors)
        self._thread.start()
        await ready
        self._watch = asyncio.create_task(self._watch_stall(), name=f"nfc-watch-{self.path}")

    def _polled(self) -> bool:
        """nfcpy's ``terminate``, asked once per polling round: the reader's heartbeat."""
        now = time.monotonic()
        if self._last_poll is not None and now - self._last_poll < MIN_ROUND_S:
            self._stop.wait(MIN_ROUND_S - (now - self._last_poll))
            now = time.monotonic()
        self.polls += 1
        self._last_poll = now
        return self._stop.is_set()

    def _failed(self, error: str) -> None:
        self.errors += 1
        self.last_error = error[:200]
        now = self._last_error = time.monotonic()
        held = self._error_log.due(now)
        if held is not None:
            log.warning("nfc_error path=%s errors=%d held_back=%d error=%s",
                        self.path, self.errors, held, self.last_error)

    def _is_stalled(self, now: float) -> bool:
        return (self.state == "polling" and self._last_poll is not None
                and now - self._last_poll > self.stall_s)

    async def _watch_stall(self) -> None:
        # A reader stuck in a driver call cannot say so itself: watched from the loop.
        while True:
            await asyncio.sleep(self.stall_s / 2)
            now = time.monotonic()
            stalled = self._is_stalled(now)
            if stalled and not self._stalled:
                assert self._last_poll is not None
                log.warning("nfc_stalled path=%s since_s=%.0f polls=%d",
                            self.path, now - self._last_poll, self.polls)
            elif self._stalled and not stalled:
                log.warning("nfc_polling_again path=%s polls=%d", self.path, self.polls)
            self._stalled = stalled

    def liveness(self) -> dict[str, Any]:
        now = time.monotonic()

        def age(at: float | None) -> float | None:
            return None if at is None else round(now - at, 1)

        return {
            "path": self.path,
            "state": "stalled" if self._is_stalled(now) else self.state,
            "polls": self.polls,
            "reads": self.reads,
            "errors": self.errors,
            "last_poll_age_s": age(self._last_poll),
            "last_read_age_s": age(self._last_read),
            "last_error_age_s": age(self._last_error),
            "last_error": self.last_error,
        }

    def _resolve(self, fut: asyncio.Future[None], exc: BaseException | None) -> None:
        assert self._loop is not None

        def done() -> None:
            if not fut.done():
                if exc is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(exc)

        self._loop.call_soon_threadsafe(done)

    def _run(self, ready: asyncio.Future[None]) -> None:
        try:
            import nfc
            import nfc.clf

            clf = nfc.ContactlessFrontend()
            if not clf.open(self.path):
                raise TransportError(self.path, "no NFC reader at this path")
        except Exception as exc:
            error = exc if isinstance(exc, TransportError) else TransportError(
                self.path, f"cannot open reader: {exc}")
            # The agent logs it (badge_reader_unavailable); the snapshot keeps it.
            self.state, self.last_error = "unavailable", str(error)[:200]
            self._last_error = time.monotonic()
            self._resolve(ready, error)
            return
        self.state, self._last_poll = "polling", time.monotonic()
        self._resolve(ready, None)
        try:
            while not self._stop.is_set():
                self._nfcpy_errors.last = None
                try:
                    connected = clf.connect(
                        rdwr={
                            "targets": list(self.targets),
                            "iterations": 1,
                            "interval": 0.1,
                            "on-discover": self._on_discover,
                        },
                        terminate=self._polled,
                    )
                except Exception as exc:  # a confused reader must not end the thread
                    self._failed(str(exc) or type(exc).__name__)
                    self._stop.wait(1.0)
                    continue
                if connected is False and not self._stop.is_set():
                    # nfcpy caught the reader's IOError, logged it and gave up: without a
                    # pause this loop would spin on a reader that is gone.
                    self._failed(self._nfcpy_errors.last or "the reader failed (nfcpy)")
                    self._stop.wait(1.0)
        finally:
            clf.close()
            if not self._stop.is_set():
                self.state = "stopped"
                log.error("nfc_reader_stopped path=%s polls=%d errors=%d",
                          self.path, self.polls, self.errors)

    def _on_discover(self, target: Any) -> bool:
        uid: bytes | None = None
        if getattr(target, "sdd_res", None):
            uid = bytes(target.sdd_res)
        elif getattr(target, "sensf_res", None):
            uid = bytes(target.sensf_res[1:9])
        if uid and 4 <= len(uid) <= 10:
            now = time.monotonic()
            last_uid, last_t = self._last
            if uid != last_uid or now - last_t > self.debounce_s:
                self.reads += 1
                self._last_read = now
                if self._loop is not None:
                    self._loop.call_soon_threadsafe(self._deliver, uid)
            self._last = (uid, now)
        return False  # do not activate: the UID is all we need

    def _deliver(self, uid: bytes) -> None:
        try:
            self._queue.put_nowait(uid)
        except asyncio.QueueFull:
            log.warning("nfc_queue_full dropped=%s", uid.hex())

    async def badges(self) -> AsyncIterator[bytes]:
        while True:
            yield await self._queue.get()

    async def close(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 3.0)
            self._thread = None
        logging.getLogger("nfc.clf").removeFilter(self._nfcpy_errors)
        if self.state == "polling":
            self.state = "closed"
