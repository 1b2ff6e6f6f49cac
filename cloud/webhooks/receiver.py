"""A small webhook receiver on loopback: verifies signatures and records what it got.

Used by the tests and ``benchmarks/webhook_fanout.py``, and a working example of the
receiving side (docs/webhooks.md). Standard library only: a threading HTTP server.
``behaviour(n, envelope) -> (status, delay_s)`` decides each answer (n counts from 0).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from kickstand.cloud.webhooks import signing
from kickstand.cloud.webhooks.errors import SignatureError

Behaviour = Callable[[int, dict[str, Any]], tuple[int, float]]


def always_ok(_n: int, _envelope: dict[str, Any]) -> tuple[int, float]:
    return 200, 0.0


@dataclass(frozen=True)
class Received:
    envelope: dict[str, Any]
    headers: dict[str, str]
    body: bytes
    status: int
    signature_ok: bool
    at: float


class Receiver:
    """``with Receiver(secret) as r: ... r.url ... r.received``."""

    def __init__(self, secret: str | None = None, behaviour: Behaviour = always_ok) -> None:
        self.secret = secret
        self.behaviour = behaviour
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._count = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the receiver first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real receivers

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver._handle(self, body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        try:
            envelope = json.loads(body)
        except ValueError:
            envelope = {}
        with self._lock:
            n = self._count
            self._count += 1
        status, delay = self.behaviour(n, envelope)
        signature_ok = False
        if self.secret is not None:
            try:
                signing.verify(self.secret, handler.headers.get(signing.SIGNATURE_HEADER), body)
                signature_ok = True
            except SignatureError:
                status = 400
        if delay > 0:
            time.sleep(delay)
        record = Received(
            envelope=envelope,
            headers={k: v for k, v in handler.headers.items()},
            body=body,
            status=status,
            signature_ok=signature_ok,
            at=time.monotonic(),
        )
        with self._lock:
            self.received.append(record)
        answer = b'{"ok":true}' if status < 300 else b'{"ok":false}'
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(answer)))
        handler.end_headers()
        handler.wfile.write(answer)

    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if 200 <= r.status < 300]

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)
