"""Coverage loss, at the wire: a TCP proxy between an agent and the broker.

    proxy = CoverageProxy("127.0.0.1", broker.port); await proxy.start()
    agent connects to 127.0.0.1:proxy.port
    proxy.cut()       # every connection drops, new ones are refused (closed at once)
    await proxy.restore()   # connections go through again
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger("kickstand.simulators.vehicle.coverage")


class CoverageProxy:
    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.port = 0
        self.covered = True
        self.connections = 0
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> CoverageProxy:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        # The cut aborted every transport, so the handlers end by themselves (cancelling
        # a stream server's handler task makes asyncio log an error).
        if self._links:
            await asyncio.wait(list(self._links), timeout=2.0)

    async def __aenter__(self) -> CoverageProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def cut(self) -> None:
        """No network: live connections drop, new ones are refused (nobody listens)."""
        self.covered = False
        if self._server is not None:
            self._server.close()  # the port stays ours: restore() listens on it again
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()
        log.info("coverage_cut port=%s", self.port)

    async def restore(self) -> None:
        self.covered = True
        if self._server is not None and not self._server.is_serving():
            self._server = await asyncio.start_server(self._accept, self.host, self.port)
        log.info("coverage_restored port=%s", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.covered:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host,
                                                                 self.target_port)
        except OSError:
            self.refused += 1
            writer.transport.abort()
            return
        self.connections += 1
        self._writers.update((writer, up_writer))
        task = asyncio.current_task()
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        if task is not None:
            self._links.add(task)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()
            if task is not None:
                self._links.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while self.covered:
                data = await reader.read(65536)
                if not data or not self.covered:
                    return
                writer.write(data)
                await writer.drain()
