"""NFC badge reader through nfcpy's ContactlessFrontend (``usb:…``, ``tty:…``, ``udp:h:p``).

nfcpy blocks, so the reader runs in a daemon thread and hands each UID to asyncio
with ``call_soon_threadsafe``. The UID is taken at discovery (Type A ``sdd_res``,
Type F IDm) without activating the tag: a badge is an identifier, not a data
carrier, and skipping activation keeps a read under 10 ms on the udp driver. A
badge held on the reader is reported once per ``debounce_s``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from kickstand.edge.core.errors import TransportError
from kickstand.edge.transports import BadgeReader

log = logging.getLogger("kickstand.edge.transports.nfc")


class NfcpyBadgeReader(BadgeReader):
    def __init__(
        self, path: str, *, targets: tuple[str, ...] = ("106A",), debounce_s: float = 2.0
    ) -> None:
        self.path = path
        self.targets = targets
        self.debounce_s = debounce_s
        self.reads = 0
        self.errors = 0
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
        self._thread.start()
        await ready

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
        except TransportError as exc:
            self._resolve(ready, exc)
            return
        except Exception as exc:
            self._resolve(ready, TransportError(self.path, f"cannot open reader: {exc}"))
            return
        self._resolve(ready, None)
        try:
            while not self._stop.is_set():
                try:
                    clf.connect(
                        rdwr={
                            "targets": list(self.targets),
                            "iterations": 1,
                            "interval": 0.1,
                            "on-discover": self._on_discover,
                        },
                        terminate=self._stop.is_set,
                    )
                except Exception as exc:  # a confused reader must not end the thread
                    self.errors += 1
                    log.warning("nfc_error path=%s error=%s", self.path, exc)
                    self._stop.wait(1.0)
        finally:
            clf.close()

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
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 3.0)
            self._thread = None
