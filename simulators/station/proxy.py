"""A TCP proxy between an agent and the broker, so a scenario can cut the link.

    proxy = LinkProxy("127.0.0.1", broker_port); await proxy.start()
    agent connects to 127.0.0.1:proxy.port
    proxy.cut()      # every connection dropped, new ones refused
    proxy.restore()
    proxy.stall()    # the link goes quiet, no reset (a cellular link in a dead zone):
                     # bytes are dropped both ways, the broker sees silence until its
                     # keep-alive runs out; restore() then drops the connections
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger("kickstand.simulators.station.proxy")


class LinkProxy:
    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.target_host, self.target_port = target_host, target_port
        self.host, self.port = host, port
        self.is_cut = False
        self.is_stalled = False
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    def cut(self) -> None:
        self.is_cut = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        if self.is_stalled:
            # What was dropped broke the MQTT streams: start clean.
            self.is_stalled = False
            self.cut()
        self.is_cut = False

    def stall(self) -> None:
        self.is_stalled = True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    if self.is_stalled:
                        continue  # lost on the way
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._writers.discard(writer)
            self._writers.discard(up_writer)
