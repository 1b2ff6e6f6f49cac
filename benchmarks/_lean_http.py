"""A lean HTTP/1.1 keep-alive client on asyncio streams, for load drivers.

One `KeepAliveConnection` per virtual user (a rider = one phone): one request at a time
on one persistent TCP connection, JSON bodies, ``Content-Length`` framing. httpx's
connection pool costs O(n²) per request with many users in one process, and that CPU
showed up as server latency; this costs a few tens of microseconds per request.

Uvicorn frames every Starlette response with ``Content-Length`` (chunked only for
streaming responses), so chunked bodies are refused rather than parsed. A server that
sends ``Connection: close``, or closed an idle keep-alive connection (uvicorn's
``timeout_keep_alive``), gets a new connection; a request that finds its reused
connection closed before any answer byte is sent again once on a fresh one.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self


class HttpError(Exception):
    """Transport or framing failure; ``reason`` names it for failure tallies."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # names lower-cased; a repeated header keeps the last value
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class KeepAliveConnection:
    """One persistent HTTP/1.1 connection to ``host:port``; not for concurrent requests."""

    def __init__(self, host: str, port: int, *, timeout_s: float = 30.0) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.connects = 0  # TCP connections opened (1 + reconnects)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._served = 0  # responses read on the current connection

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass  # already reset by the peer: nothing left to release

    async def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None,
        json_body: Any = None,
    ) -> Response:
        body = b"" if json_body is None else json.dumps(json_body).encode()
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                f"Content-Length: {len(body)}"]
        if json_body is not None:
            head.append("Content-Type: application/json")
        head.extend(f"{name}: {value}" for name, value in (headers or {}).items())
        raw = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._exchange(raw)
        except TimeoutError:
            await self.close()  # the answer may still come: never read it as the next one's
            raise HttpError("timeout", f"{method} {path} after {self.timeout_s} s") from None

    async def _exchange(self, raw: bytes) -> Response:
        # A reused connection the server closed while idle gets one more try on a new one.
        attempts = 2 if self._writer is not None and self._served > 0 else 1
        for _ in range(attempts):
            try:
                return await self._send_and_read(raw)
            except _ClosedBeforeAnswer:
                pass
        raise HttpError("connection-closed", "before any answer byte")

    async def _send_and_read(self, raw: bytes) -> Response:
        if self._writer is None:
            await self._connect()
        reader, writer = self._reader, self._writer
        assert reader is not None and writer is not None
        try:
            writer.write(raw)
            await writer.drain()
            status_line = await reader.readline()
        except (ConnectionError, OSError):
            await self.close()
            raise _ClosedBeforeAnswer from None
        if not status_line:
            await self.close()
            raise _ClosedBeforeAnswer
        try:
            response, keep = await self._read_rest(status_line, reader)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            await self.close()
            raise HttpError("bad-response", repr(exc)) from exc
        self._served += 1
        if not keep:
            await self.close()
        return response

    async def _connect(self) -> None:
        try:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise HttpError("connect-failed", repr(exc)) from exc
        self.connects += 1
        self._served = 0

    @staticmethod
    async def _read_rest(
        status_line: bytes, reader: asyncio.StreamReader
    ) -> tuple[Response, bool]:
        version, status, *_ = status_line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n"):
            if not line:
                raise asyncio.IncompleteReadError(b"", None)
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise ValueError("chunked response body: not supported by this client")
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif keep:
            body = b""  # 204/304, or a framing this client does not read
        else:
            body = await reader.read()
        return Response(int(status), headers, body), keep


class _ClosedBeforeAnswer(Exception):
    """The connection ended before the first byte of an answer."""
