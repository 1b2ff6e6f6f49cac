"""The dashboard's access log (seed 002 AccessLogs): every operator request, written after
its answer and in batches, so logging neither slows a request much nor can fail it.

``AccessLogMiddleware`` (pure ASGI) notes who (the id the access check saw), route, method,
status, the envelope's error code, networks, time, address and user agent of every request
under the operator prefixes, and hands the record to ``AccessLogWriter``: a bounded queue
drained by one task that inserts up to ``BATCH`` rows per transaction. A full queue or a
failed insert drops records (logged and counted in the log line), never the request.

The same middleware keeps the rider API's requests (seed 002 "Get user api requests"):
every request under ``/v1/`` outside the operator prefixes whose bearer token named a user
(``request.state.token_user_id``, set by ``api.deps``) goes, with the same fields but the
networks, to a second writer of ``user_api_requests`` (kept ``API_REQUESTS_KEPT``, pruned
by the accounts' housekeeping).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kickstand.cloud.access.models import AccessLog
from kickstand.cloud.models import Base, table_of

log = logging.getLogger(__name__)

OPERATOR_PREFIXES = ("/v1/dashboard",)
RIDER_PREFIX = "/v1/"
BATCH = 200
#: How long a record may wait for others before its batch is written.
DELAY_S = 0.2
QUEUE_SIZE = 10_000
#: Error bodies are small; a larger one is not parsed for its code.
MAX_ERROR_BODY = 16_384


class AccessLogWriter:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], model: type[Base] = AccessLog
    ) -> None:
        self._maker = sessionmaker
        self._table = table_of(model)
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.delay_s = DELAY_S

    def put(self, record: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("event=access_log_dropped reason=queue-full dropped=%d", self.dropped)
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        # Gather what arrives meanwhile: one insert per batch, not one per request.
        await asyncio.sleep(self.delay_s)
        while not self._queue.empty():
            batch = [self._queue.get_nowait() for _ in range(min(BATCH, self._queue.qsize()))]
            try:
                async with self._maker() as session:
                    await session.execute(insert(self._table), batch)
                    await session.commit()
            except Exception:  # the log must never take the API down
                self.dropped += len(batch)
                log.exception("event=access_log_write_failed rows=%d", len(batch))
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def flush(self) -> None:
        """Wait until every record handed over so far is written (tests, shutdown)."""
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        if not self._queue.empty():
            await self._drain()


def _knot_code(body: bytes) -> int | None:
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        code = json.loads(body).get("code")
        return code if isinstance(code, int) else None
    return None


class AccessLogMiddleware:
    def __init__(
        self, app: ASGIApp, writer: AccessLogWriter, rider_writer: AccessLogWriter | None = None
    ) -> None:
        self.app = app
        self.writer = writer
        self.rider_writer = rider_writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        operator = path.startswith(OPERATOR_PREFIXES)
        rider = not operator and self.rider_writer is not None and path.startswith(RIDER_PREFIX)
        if scope["type"] != "http" or not (operator or rider):
            await self.app(scope, receive, send)
            return
        status = 500
        body = bytearray()

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and status >= 400:
                if len(body) < MAX_ERROR_BODY:
                    body.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            record = self._record(scope, path, status, bytes(body))
            if operator:
                self.writer.put(record)
            elif self.rider_writer is not None:
                user_id = (scope.get("state") or {}).get("token_user_id")
                if user_id is not None:  # anonymous requests name nobody: not kept
                    del record["network_ids"]
                    self.rider_writer.put({**record, "user_id": user_id})

    @staticmethod
    def _record(scope: Scope, path: str, status: int, body: bytes) -> dict[str, Any]:
        state: dict[str, Any] = scope.get("state") or {}
        headers = dict(scope.get("headers") or [])
        agent = headers.get(b"user-agent", b"").decode("latin-1")[:2048] or None
        client = scope.get("client")
        query = scope.get("query_string", b"").decode("latin-1")
        networks = state.get("networks")
        return {
            "user_id": state.get("access_user_id"),
            "target_path": (f"{path}?{query}" if query else path)[:2048],
            "verb": str(scope.get("method", ""))[:10],
            "user_agent": agent,
            "ip": client[0][:128] if client else None,
            "http_code": status,
            "knot_code": _knot_code(body) if status >= 400 else 0,
            "network_ids": sorted(set(networks)) if networks else None,
            "created_at": datetime.now(UTC),
        }
