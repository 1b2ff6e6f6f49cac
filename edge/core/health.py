"""A tiny local status endpoint (asyncio, no framework) and the status CLI.

    server = HealthServer(snapshot_fn, host="127.0.0.1", port=8081); await server.start()
    GET /status  -> the agent's snapshot as JSON (queue depth, link, spots, counters)

    python -m kickstand.edge.core.health http://127.0.0.1:8081   # readable text
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import urllib.request
from collections.abc import Callable
from typing import Any

log = logging.getLogger("kickstand.edge.core.health")


class HealthServer:
    def __init__(
        self, snapshot: Callable[[], dict[str, Any]], *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._snapshot = snapshot
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("health_listening host=%s port=%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
            parts = request.decode("latin-1").split()
            if len(parts) < 2 or parts[0] != "GET":
                status, body = "405 Method Not Allowed", {"error": "GET only"}
            elif parts[1] in ("/", "/status", "/health"):
                status, body = "200 OK", self._snapshot()
            else:
                status, body = "404 Not Found", {"error": "try /status"}
            data = json.dumps(body, default=str).encode()
            writer.write(
                f"HTTP/1.0 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (TimeoutError, OSError, UnicodeDecodeError, ValueError) as exc:
            log.debug("health_request_failed error=%s", exc)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def fetch_status(url: str, timeout: float = 3.0) -> dict[str, Any]:
    if not url.rstrip("/").endswith("/status"):
        url = url.rstrip("/") + "/status"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        data: dict[str, Any] = json.loads(response.read())
    return data


def render(status: dict[str, Any], indent: int = 0) -> str:
    """The snapshot as aligned ``key: value`` lines a technician can read."""
    lines: list[str] = []
    pad = "  " * indent
    for key, value in status.items():
        if isinstance(value, dict):
            lines.append(f"{pad}{key}:")
            lines.append(render(value, indent + 1))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{pad}{key}:")
            for item in value:
                lines.append(f"{pad}  - " + ", ".join(f"{k}={v}" for k, v in item.items()))
        else:
            lines.append(f"{pad}{key}: {value}")
    return "\n".join(line for line in lines if line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Show an edge agent's local status")
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:8081")
    parser.add_argument("--json", action="store_true", help="raw JSON")
    args = parser.parse_args(argv)
    try:
        status = fetch_status(args.url)
    except OSError as exc:
        print(f"agent not reachable at {args.url}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(status, indent=2) if args.json else render(status))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
