"""`InfluxV1Writer`: batched, asynchronous, spooling writes over InfluxDB's
v1-compatible HTTP API (`POST /write`, InfluxQL on `/query`).

InfluxDB 1.x serves that API natively, 2.x through its DBRP (v1) mapping, 3.x as
its compatibility API: one code path for the three. Auth is either `u`/`p` query
parameters (1.x users, 2.x v1 auth) or an `Authorization: Token ...` header.

How a point travels:

    write(point) ─ encode ─► memory buffer ─(batch_size or flush_interval)─► POST /write
                      │ buffer full                     │ refused/down/slow
                      ▼                                 ▼
                   spool (segments on disk) ◄───────────┘
                      │ drainer: oldest first, exponential back-off with jitter
                      └────────────────────────────────► POST /write

- `write()` never awaits: it encodes (raising `InvalidPointError` on a bad point)
  and appends to the buffer, or, when the buffer holds `max_buffer` points, to an
  overflow batch written to the spool.
- Transport errors, timeouts, 5xx, 429, 401/403/404 are "retry later": the batch
  goes to the spool and the drainer retries it with back-off; while InfluxDB is
  known to be down, new batches go straight to the spool (no request per batch).
- Other 4xx mean bad points: the batch is split in halves until the refused lines
  are isolated; they are quarantined (counter `quarantined`) and the good ones
  written. Points are idempotent per series and timestamp, so a batch re-sent
  after a timeout that InfluxDB had in fact stored does not duplicate anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Self

import httpx

from kickstand.cloud.telemetry.errors import (
    TelemetryQueryError,
    TelemetryUnavailableError,
    WriterClosedError,
)
from kickstand.cloud.telemetry.lineprotocol import Precision, encode
from kickstand.cloud.telemetry.points import TelemetryPoint
from kickstand.cloud.telemetry.spool import Spool
from kickstand.cloud.telemetry.store import WriterStats

log = logging.getLogger("kickstand.cloud.telemetry.writer")

# Statuses after which the same batch may succeed later (server or config state).
_RETRY_STATUSES = frozenset({401, 403, 404, 408, 425, 429})
_LINE_PROTOCOL = {"Content-Type": "text/plain; charset=utf-8"}


@dataclass(frozen=True, slots=True)
class _Outcome:
    ok: bool
    retryable: bool
    status: int | None
    reason: str


class InfluxV1Writer:
    """Write (and query) InfluxDB through its v1-compatible HTTP API.

    Use as `async with InfluxV1Writer(url, database, spool_dir=...) as writer:`;
    `write(point)` from the event loop's thread.
    """

    def __init__(
        self,
        url: str,
        database: str,
        *,
        spool_dir: str | os.PathLike[str],
        retention_policy: str | None = None,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        precision: Precision = "ns",
        batch_size: int = 5_000,
        flush_interval: float = 1.0,
        max_buffer: int = 100_000,
        timeout: float = 10.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        close_timeout: float = 10.0,
        create_database: bool = False,
        spool_fsync: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if batch_size < 1 or max_buffer < batch_size:
            raise ValueError("need 1 <= batch_size <= max_buffer")
        if precision not in ("ns", "u", "ms", "s"):
            raise ValueError(f"precision must be ns, u, ms or s, not {precision!r}")
        self.url = url.rstrip("/")
        self.database = database
        self.precision: Precision = precision
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_buffer = max_buffer
        self._timeout = timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._close_timeout = close_timeout
        self._create_database = create_database
        self._spool = Spool(spool_dir, fsync=spool_fsync)
        self._transport = transport

        self._write_params: dict[str, str] = {"db": database, "precision": precision}
        if retention_policy:
            self._write_params["rp"] = retention_policy
        self._auth_params: dict[str, str] = {}
        if username is not None:
            self._auth_params["u"] = username
            self._auth_params["p"] = password or ""
        self._headers: dict[str, str] = {}
        if token:
            self._headers["Authorization"] = f"Token {token}"

        self._stats = WriterStats()
        self._buffer: list[str] = []
        self._overflow: list[str] = []
        self._in_flight = 0
        self._healthy = True
        self._running = False
        self._closing = False
        self._client: httpx.AsyncClient | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._spool_ready = asyncio.Event()
        self._spool_empty = asyncio.Event()
        self._flush_lock = asyncio.Lock()

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        if self._running:
            return
        self._spool.open()
        if len(self._spool):
            self._spool_empty.clear()
        else:
            self._spool_empty.set()
        self._client = httpx.AsyncClient(
            base_url=self.url,
            timeout=self._timeout,
            headers=self._headers,
            transport=self._transport,
        )
        if self._create_database:
            try:
                await self.query(f'CREATE DATABASE "{_ident(self.database)}"', method="POST")
            except (TelemetryUnavailableError, TelemetryQueryError) as exc:
                # 2.x/3.x have no CREATE DATABASE over v1: the DBRP mapping must exist.
                # Writes are spooled until the database exists.
                log.warning("influx_create_database_failed db=%s error=%s", self.database, exc)
        self._running = True
        self._closing = False
        self._flush_task = asyncio.create_task(self._flush_loop(), name="influx-writer-flush")
        self._drain_task = asyncio.create_task(self._drain_loop(), name="influx-writer-drain")
        if len(self._spool):
            self._spool_ready.set()

    async def close(self) -> None:
        """Flush what is buffered (to InfluxDB, or to the spool), give the spool up
        to `close_timeout` seconds to empty, then stop every background task."""
        if not self._running:
            return
        self._running = False  # write() refuses from now on
        self._closing = True
        deadline = time.monotonic() + self._close_timeout
        self._wakeup.set()
        try:
            if self._flush_task is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._flush_task), self._close_timeout)
                except TimeoutError:
                    await _cancel(self._flush_task)
            # Whatever the loop did not take (it exits after one last pass).
            await self._final_flush(deadline)
            if self._healthy and len(self._spool):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                        await self._spool_empty.wait()
        finally:
            # Even when close() itself is cancelled: no task, socket or lock outlives it.
            for task in (self._flush_task, self._drain_task):
                if task is not None:
                    await _cancel(task)
            self._flush_task = self._drain_task = None
            if self._buffer or self._overflow:
                self._spool_lines(self._buffer + self._overflow)
                self._buffer, self._overflow = [], []
            if self._client is not None:
                await self._client.aclose()
                self._client = None
            self._spool.close()
        if len(self._spool):
            log.warning(
                "writer_closed_with_spool points=%d dir=%s", self._spool.points,
                self._spool.directory,
            )

    # ------------------------------------------------------------ writing

    def write(self, point: TelemetryPoint) -> None:
        """Queue a point. Never waits; raises `InvalidPointError` for a bad point and
        `WriterClosedError` when the writer is not running."""
        if not self._running:
            raise WriterClosedError("InfluxV1Writer")
        line = encode(point, self.precision)
        if len(self._buffer) + self._in_flight < self._max_buffer:
            self._buffer.append(line)
            if len(self._buffer) >= self._batch_size:
                self._wakeup.set()
        else:
            self._overflow.append(line)
            if len(self._overflow) >= self._batch_size:
                self._spool_lines(self._overflow)
                self._overflow = []

    async def flush(self) -> None:
        """Send (or spool) every point written so far; returns when done."""
        async with self._flush_lock:
            await self._flush_once()

    async def drain(self) -> None:
        """Flush, then wait until the spool is empty too: every point written so far
        is in InfluxDB (or quarantined). Waits as long as InfluxDB is down: bound it
        with `asyncio.timeout()`."""
        while True:
            await self.flush()
            if not (len(self._spool) or self._buffer or self._overflow or self._in_flight):
                return
            self._spool_ready.set()
            await self._spool_empty.wait()

    @property
    def stats(self) -> WriterStats:
        return replace(
            self._stats,
            buffered=len(self._buffer) + len(self._overflow) + self._in_flight,
            spool_pending=self._spool.points,
        )

    @property
    def healthy(self) -> bool:
        """False while InfluxDB is known to refuse or not answer writes."""
        return self._healthy

    @property
    def spool(self) -> Spool:
        return self._spool

    # ------------------------------------------------------------ querying

    async def query(
        self,
        influxql: str,
        *,
        params: Mapping[str, str] | None = None,
        method: str = "GET",
    ) -> list[dict[str, Any]]:
        """Run InfluxQL (statements separated by `;`); one result per statement.
        Raises `TelemetryQueryError` on a refused statement,
        `TelemetryUnavailableError` when InfluxDB cannot answer."""
        client = self._require_client()
        query_params: dict[str, str] = {"db": self.database, "q": influxql, "epoch": "ns"}
        query_params.update(self._auth_params)
        if params:
            query_params.update(params)
        try:
            if method == "POST":
                response = await client.post("/query", data=query_params)
            else:
                response = await client.get("/query", params=query_params)
        except httpx.HTTPError as exc:
            raise TelemetryUnavailableError(self.url, f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise TelemetryUnavailableError(self.url, f"HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:
            raise TelemetryQueryError(
                influxql, f"not JSON: {response.text[:200]}", response.status_code
            ) from exc
        if not isinstance(body, dict):
            raise TelemetryQueryError(influxql, f"unexpected answer {str(body)[:200]}",
                                      response.status_code)
        if response.status_code >= 400 or "error" in body:
            raise TelemetryQueryError(
                influxql, str(body.get("error", response.text[:200])), response.status_code
            )
        results: list[dict[str, Any]] = body.get("results", [])
        for result in results:
            if "error" in result:
                raise TelemetryQueryError(influxql, str(result["error"]), response.status_code)
        return results

    async def ping(self) -> bool:
        try:
            response = await self._require_client().get("/ping")
        except httpx.HTTPError:
            return False
        return response.status_code < 300

    # ------------------------------------------------------------ internals

    def _require_client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise WriterClosedError("InfluxV1Writer")
        return self._client

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._flush_interval)
            self._wakeup.clear()
            try:
                async with self._flush_lock:
                    await self._flush_once()
            except Exception:  # a bug must not stop telemetry: log, keep going
                log.exception("writer_flush_failed")
                await asyncio.sleep(self._flush_interval)
            if self._closing:
                return

    async def _final_flush(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        try:
            async with asyncio.timeout(max(0.0, remaining)):
                async with self._flush_lock:
                    await self._flush_once()
        except TimeoutError:
            pass
        # Nothing more gets sent: whatever is still in memory goes to disk.
        if self._buffer:
            self._spool_lines(self._buffer)
            self._buffer = []
        if self._overflow:
            self._spool_lines(self._overflow)
            self._overflow = []

    async def _flush_once(self) -> None:
        if self._overflow:
            self._spool_lines(self._overflow)
            self._overflow = []
        while self._buffer:
            batch = self._buffer[: self._batch_size]
            del self._buffer[: self._batch_size]
            self._in_flight = len(batch)
            try:
                if not self._healthy:
                    self._spool_lines(batch)
                    continue
                remaining = await self._deliver(batch)
                if remaining:
                    self._mark_unhealthy()
                    self._spool_lines(remaining)
            except asyncio.CancelledError:
                # Cancelled mid-request: InfluxDB may or may not have the batch;
                # sending it again later is harmless (idempotent points).
                self._spool_lines(batch)
                raise
            finally:
                self._in_flight = 0

    async def _drain_loop(self) -> None:
        attempt = 0
        while True:
            # Small segments (an outage spools one per flush) are sent together.
            segments = self._spool.oldest_segments(self._batch_size)
            if not segments:
                self._spool_empty.set()
                self._spool_ready.clear()
                await self._spool_ready.wait()
                continue
            lines: list[str] = []
            unreadable = False
            for segment in segments:
                try:
                    lines += self._spool.read(segment)
                except (OSError, UnicodeDecodeError) as exc:
                    log.error("spool_segment_unreadable path=%s error=%s", segment.path, exc)
                    self._spool.quarantine_segment(segment, f"unreadable: {exc}")
                    unreadable = True
            if unreadable:
                continue
            try:
                remaining = await self._deliver(lines) if lines else []
            except Exception:  # a bug must not stop the drainer: log, back off
                log.exception("spool_drain_failed segments=%d", len(segments))
                remaining = lines
            self._stats.retried += len(lines) - len(remaining)
            if not remaining:
                for segment in segments:
                    self._spool.remove(segment)
                if not len(self._spool):
                    self._spool_empty.set()
                if not self._healthy:
                    log.info("influx_recovered url=%s spool_points=%d", self.url,
                             self._spool.points)
                self._healthy = True
                attempt = 0
                continue
            if len(remaining) < len(lines):
                # Keep what is left in the first segment, then drop the others: a
                # crash in between only means some points are sent twice (harmless).
                self._spool.replace(segments[0], remaining)
                for segment in segments[1:]:
                    self._spool.remove(segment)
            self._mark_unhealthy()
            attempt += 1
            ceiling = min(self._backoff_max, self._backoff_initial * 2 ** min(attempt - 1, 30))
            # "Equal jitter": at least half the ceiling, so retries do spread out
            # but never hammer a server that is restarting.
            await asyncio.sleep(ceiling / 2 + random.uniform(0, ceiling / 2))

    def _mark_unhealthy(self) -> None:
        if self._healthy:
            log.warning("influx_unavailable url=%s spooling_to=%s", self.url,
                        self._spool.directory)
        self._healthy = False
        self._spool_ready.set()

    def _spool_lines(self, lines: list[str]) -> None:
        if not lines:
            return
        try:
            self._spool.append(lines)
        except OSError as exc:
            self._stats.dropped += len(lines)
            log.error("spool_write_failed points=%d dir=%s error=%s", len(lines),
                      self._spool.directory, exc)
            return
        self._stats.spooled += len(lines)
        self._spool_empty.clear()
        self._spool_ready.set()

    async def _deliver(self, lines: list[str]) -> list[str]:
        """POST lines; isolate and quarantine refused ones. Returns the lines not
        delivered because InfluxDB is down/slow (to be retried), in order."""
        outcome = await self._post(lines)
        if outcome.ok:
            self._stats.written += len(lines)
            return []
        if outcome.retryable:
            return lines
        if len(lines) == 1:
            self._quarantine(lines, outcome)
            return []
        middle = len(lines) // 2
        first, second = lines[:middle], lines[middle:]
        left = await self._deliver(first)
        if left:
            return left + second
        return await self._deliver(second)

    def _quarantine(self, lines: list[str], outcome: _Outcome) -> None:
        self._stats.quarantined += len(lines)
        reason = f"HTTP {outcome.status}: {outcome.reason}"
        try:
            path = self._spool.quarantine(lines, reason)
        except OSError as exc:
            log.error("quarantine_write_failed points=%d error=%s", len(lines), exc)
            return
        log.error("points_quarantined count=%d reason=%r file=%s line=%r", len(lines),
                  reason, path, lines[0][:200])

    async def _post(self, lines: list[str]) -> _Outcome:
        client = self._require_client()
        body = "".join(line + "\n" for line in lines).encode("utf-8")
        params = {**self._write_params, **self._auth_params}
        self._stats.requests += 1
        try:
            response = await client.post(
                "/write", params=params, content=body, headers=_LINE_PROTOCOL
            )
        except httpx.HTTPError as exc:
            self._stats.failed_requests += 1
            return _Outcome(False, True, None, f"{type(exc).__name__}: {exc}")
        status = response.status_code
        if status < 300:
            return _Outcome(True, False, status, "")
        self._stats.failed_requests += 1
        reason = _error_text(response)
        if status >= 500 or status in _RETRY_STATUSES:
            if status in (401, 403, 404):
                log.error("influx_write_refused status=%d reason=%r (retrying)", status, reason)
            return _Outcome(False, True, status, reason)
        return _Outcome(False, False, status, reason)


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict):
        return str(body.get("error") or body.get("message") or body)[:500]
    return str(body)[:500]


def _ident(name: str) -> str:
    """Body of a double-quoted InfluxQL identifier."""
    return name.replace("\\", "\\\\").replace('"', '\\"')


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


__all__ = ["InfluxV1Writer"]
