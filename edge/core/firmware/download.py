"""Firmware downloads that survive bad links (SPEC §13.3).

The image streams into a file (the inactive slot's ``image.part``) in chunks, never whole in
memory, hashed as it is written and capped at the manifest's size. After a cut the next
attempt sends ``Range: bytes=<held>-`` and appends; a server that answers 200 instead of
206 (no range support) is read from the start again. Attempts are spaced by decorrelated
jitter, so a fleet cut off at once does not come back at once. The digest is checked when
the last byte is in; a mismatch removes the file (a corrupt part must not be resumed).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from kickstand.edge.core.firmware.errors import FirmwareError
from kickstand.edge.core.link import ReconnectBackoff
from kickstand.protocol.v1.enums import FirmwareState, RejectReason

log = logging.getLogger("kickstand.edge.core.firmware.download")

CHUNK = 64 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)$")


class _Retry(Exception):
    """This attempt ended early (cut, 5xx, a range the server did not honour): try again."""


def _failed(reason: str, reject: RejectReason = RejectReason.HARDWARE_FAULT) -> FirmwareError:
    return FirmwareError(reason, FirmwareState.DOWNLOAD_FAILED, reject)


def backoff(base_s: float = 1.0, cap_s: float = 60.0) -> ReconnectBackoff:
    """The link's decorrelated jitter (``min(cap, uniform(base, previous * 3))``), used here
    between download attempts; a download has no "stable connection" to reset it."""
    return ReconnectBackoff(base_s, cap_s, stable_s=float("inf"))


@dataclass(slots=True)
class DownloadStats:
    attempts: int = 0
    fetched: int = 0  # bytes received over the network by this call
    resumed_from: int = 0  # bytes already held when the call started


@dataclass
class Downloader:
    """One image to one file. ``progress(bytes_held)`` is called every ``progress_every``
    bytes (the DOWNLOADING statuses' ``bytes_done``)."""

    url: str
    dest: Path
    size: int
    sha256: bytes
    attempts: int = 6
    backoff: ReconnectBackoff | None = None
    timeout_s: float = 30.0
    progress: Callable[[int], None] | None = None
    progress_every: int = 256 * 1024
    chunk: int = CHUNK

    def __post_init__(self) -> None:
        self.stats = DownloadStats()
        self._digest = hashlib.sha256()
        self._held = 0
        self._reported = 0

    async def run(self) -> DownloadStats:
        """Download until ``size`` bytes are in ``dest`` (then :meth:`verify`); FirmwareError
        DOWNLOAD_FAILED when the attempts are spent, on a permanent HTTP error or an image
        longer than the manifest says."""
        # httpx is imported only when a download runs: an idle station agent would pay
        # several MB of its 60 MB budget for it (and, where installed, for the rich and
        # pygments of httpx's command line); an agent installs then restarts anyway.
        import httpx

        scheme = urlsplit(self.url).scheme
        if scheme not in ("http", "https", "file"):
            raise _failed(f"unsupported url scheme {scheme!r}", RejectReason.NOT_SUPPORTED)
        await asyncio.to_thread(self._load_held)
        self.stats.resumed_from = self._held
        waits = self.backoff or backoff()
        last = ""
        for attempt in range(self.attempts):
            if self._held >= self.size:
                break
            self.stats.attempts = attempt + 1
            try:
                if scheme == "file":
                    await asyncio.to_thread(self._copy_file)
                else:
                    await self._fetch_http()
                if self._held < self.size:
                    raise _Retry(f"connection ended at {self._held} of {self.size} bytes")
            except (_Retry, httpx.TransportError) as exc:
                last = str(exc) or type(exc).__name__
                wait = waits.delay()
                log.info("firmware_download_retry held=%d wait_s=%.2f reason=%s",
                         self._held, wait, last)
                await asyncio.sleep(wait)
        if self._held < self.size:
            raise _failed(f"{self.attempts} attempts, last: {last}")
        return self.stats

    async def verify(self) -> None:
        """VERIFY_FAILED, and the file removed, unless the bytes streamed hash to ``sha256``
        (a corrupt part must not be resumed by the next attempt)."""
        if self._held != self.size or self._digest.digest() != self.sha256:
            await asyncio.to_thread(self.dest.unlink, True)
            raise FirmwareError(
                "sha256 mismatch", FirmwareState.VERIFY_FAILED, RejectReason.MALFORMED
            )

    # ---------------------------------------------------------------- what is held

    def _load_held(self) -> None:
        """Hash the part already on disk (a resume), cut to ``size`` at most."""
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            held = self.dest.stat().st_size
        except FileNotFoundError:
            self.dest.touch()
            return
        if held > self.size:
            os.truncate(self.dest, 0)
            return
        with open(self.dest, "rb") as handle:
            while block := handle.read(self.chunk):
                self._digest.update(block)
        self._held = self._reported = held

    def _restart(self) -> None:
        os.truncate(self.dest, 0)
        self._digest, self._held, self._reported = hashlib.sha256(), 0, 0

    def _take(self, handle: object, block: bytes) -> None:
        if self._held + len(block) > self.size:
            raise _failed(f"{self.url} is longer than the manifest's {self.size} bytes",
                          RejectReason.MALFORMED)
        handle.write(block)  # type: ignore[attr-defined]
        self._digest.update(block)
        self._held += len(block)
        self.stats.fetched += len(block)
        if self.progress and self._held - self._reported >= self.progress_every:
            self._reported = self._held
            self.progress(self._held)

    # ---------------------------------------------------------------- transports

    def _copy_file(self) -> None:
        path = Path(unquote(urlsplit(self.url).path))
        try:
            with open(path, "rb") as src, open(self.dest, "r+b") as out:
                src.seek(self._held)
                out.seek(self._held)
                while block := src.read(self.chunk):
                    self._take(out, block)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise _failed(f"cannot read {path}: {exc}") from None

    async def _fetch_http(self) -> None:
        import httpx  # see run()

        headers = {"Range": f"bytes={self._held}-"} if self._held else {}
        timeout = httpx.Timeout(self.timeout_s)
        async with (
            httpx.AsyncClient(timeout=timeout, follow_redirects=True) as client,
            client.stream("GET", self.url, headers=headers) as resp,
        ):
            status = resp.status_code
            if status == 416:  # what we hold is not a prefix the server knows: start over
                await asyncio.to_thread(self._restart)
                raise _Retry("416: range not satisfiable")
            if status >= 500 or status in (408, 429):
                raise _Retry(f"HTTP {status}")
            if status == 200 and self._held:
                await asyncio.to_thread(self._restart)  # no range support: whole body again
            elif status == 206:
                self._check_range(resp.headers.get("content-range", ""))
            elif status != 200:
                raise _failed(f"GET {self.url}: HTTP {status}")
            # Chunk writes go to the page cache (microseconds); the fsync runs off the loop.
            out = await asyncio.to_thread(open, self.dest, "r+b")
            try:
                out.seek(self._held)
                async for block in resp.aiter_bytes(self.chunk):
                    self._take(out, block)
            finally:
                out.flush()
                await asyncio.to_thread(os.fsync, out.fileno())
                out.close()

    def _check_range(self, header: str) -> None:
        match = _CONTENT_RANGE.match(header.strip())
        if match is None or int(match.group(1)) != self._held:
            self._restart()  # a part the server does not continue: from the first byte
            raise _Retry(f"206 with Content-Range {header!r} for bytes={self._held}-")
        total = match.group(3)
        if total != "*" and int(total) != self.size:
            raise _failed(f"{self.url} is {total} bytes, the manifest says {self.size}",
                          RejectReason.MALFORMED)
