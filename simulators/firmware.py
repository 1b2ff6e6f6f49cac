"""Firmware on the simulated installation: a TEST-ONLY firmware signing key, signed
FirmwareUpdate commands for it, and an image server with the faults of the field.

The simulated cloud peers (``CloudPeer``, the rigs' bench) sign manifests with
:data:`TEST_FIRMWARE_SEED`; a simulated device trusts :func:`public_hex` in its
``firmware_public_keys``. Never provision this key on a real device.

:class:`ImageServer` serves images over real HTTP on loopback the way the cloud API does
(``GET /v1/firmware/images/{sha256_hex}``, ``Range`` → 206 with ``Content-Range``, 416 out
of range, ETag = the digest) and can misbehave on purpose: ``cut_after`` closes the
connection after that many bytes of a response (a bad mobile link), ``flip_byte`` serves one
byte wrong (a corrupt download). It counts the bytes it sent per image, so a test sees what
a resume cost. :class:`CuttingRelay` puts the same cut fault in front of another server
(the cloud API itself), counting what that server sent.

:func:`refuse_images` turns a simulated spot board into one that refuses new images; the
simulated mainboard or controller with A/B slots (a self-check that fails, a power cut
mid-install) is :mod:`kickstand.simulators.firmware_device`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kickstand.protocol import firmware
from kickstand.protocol.signing import public_key_bytes
from kickstand.protocol.spotbus import BusError, Cmd, Frame, error_response
from kickstand.protocol.v1.messages import FirmwareUpdate
from kickstand.simulators.spotboard import SpotBoard, SpotBusSim

TEST_FIRMWARE_SEED = bytes(range(100, 132))  # TEST ONLY: the simulated installation's key
IMAGE_PATH = "/v1/firmware/images/"


def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(TEST_FIRMWARE_SEED)


def public_hex() -> str:
    """The simulated installation's firmware public key, for ``firmware_public_keys``."""
    return public_key_bytes(signing_key()).hex()


def manifest_for(
    image: bytes, version: str, url: str, target: str, **fields: str | int
) -> firmware.Manifest:
    return firmware.Manifest(
        target=target,
        version=version,
        size=len(image),
        sha256=hashlib.sha256(image).digest(),
        url=url,
        issued_at=int(time.time()),
        **fields,  # type: ignore[arg-type]
    )


def signed_update(
    image: bytes,
    version: str,
    url: str,
    target: str,
    *,
    spot: int = 0,
    key: Ed25519PrivateKey | None = None,
    **fields: str | int,
) -> FirmwareUpdate:
    """A FirmwareUpdate whose manifest describes ``image`` (served at ``url``), signed with
    the test key or ``key``. ``fields`` override the manifest's (a wrong ``sha256`` or
    ``size`` for a fault)."""
    manifest = manifest_for(image, version, url, target)
    if fields:
        manifest = dataclasses.replace(manifest, **fields)  # type: ignore[arg-type]
    return FirmwareUpdate(firmware.sign_manifest(key or signing_key(), manifest), spot)


# ------------------------------------------------------------------ an image server with faults


@dataclass
class Faults:
    """What the server does wrong. ``cut_after``: close each connection after this many
    body bytes (None: never), for ``cuts`` responses (then serve normally); ``flip_byte``:
    the offset of a byte served inverted (None: none)."""

    cut_after: int | None = None
    cuts: int = 1
    flip_byte: int | None = None


@dataclass
class ImageServer:
    """Content-addressed images over HTTP on loopback (the cloud API's image route)."""

    images: dict[str, bytes] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    bytes_sent: Counter[str] = field(default_factory=Counter)
    requests: list[str] = field(default_factory=list)  # "GET <range or ->" per request
    _server: ThreadingHTTPServer | None = None

    def add(self, image: bytes) -> str:
        """The URL ``image`` is served at."""
        digest = hashlib.sha256(image).hexdigest()
        self.images[digest] = image
        return self.url_of(digest)

    def url_of(self, digest: str) -> str:
        assert self._server is not None, "start the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{IMAGE_PATH}{digest}"

    @contextmanager
    def running(self) -> Iterator[ImageServer]:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()


_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


def _handler(server: ImageServer) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # the test reads server.requests instead of stderr

        def handle(self) -> None:
            try:
                super().handle()
            except ConnectionError:
                pass  # the device went away mid-transfer (killed, power cut): its business

        def do_GET(self) -> None:
            digest = self.path.removeprefix(IMAGE_PATH)
            image = server.images.get(digest) if self.path.startswith(IMAGE_PATH) else None
            server.requests.append(f"GET {self.headers.get('Range', '-')}")
            if image is None:
                self._reply(404, b"")
                return
            start, end = 0, len(image) - 1
            status = 200
            wanted = self.headers.get("Range")
            if wanted:
                match = _RANGE.match(wanted.strip())
                if match is None or int(match.group(1)) >= len(image):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(image)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = int(match.group(1))
                if match.group(2):
                    end = min(end, int(match.group(2)))
                status = 206
            length = end + 1 - start
            self.send_response(status)
            self.send_header("Content-Length", str(length))
            self.send_header("ETag", f'"{digest}"')
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(image)}")
            self.end_headers()
            with lock:
                cut = server.faults.cut_after if server.faults.cuts > 0 else None
                if cut is not None:
                    server.faults.cuts -= 1
            stop = start + min(length, cut) if cut is not None else end + 1
            view = memoryview(image)
            # In chunks, as the cloud streams from its store: no copy of the image here.
            for offset in range(start, stop, 64 * 1024):
                chunk = view[offset : min(offset + 64 * 1024, stop)]
                flip = server.faults.flip_byte
                if flip is not None and offset <= flip < offset + len(chunk):
                    changed = bytearray(chunk)
                    changed[flip - offset] ^= 0xFF
                    chunk = memoryview(changed)
                self.wfile.write(chunk)
                server.bytes_sent[digest] += len(chunk)
            if cut is not None and cut < length:
                self.wfile.flush()
                self.close_connection = True
                # An abrupt cut as a dropped link gives it: no more bytes, socket closed.
                self.connection.shutdown(2)

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@dataclass
class CuttingRelay:
    """A TCP relay on loopback to an HTTP server (the cloud API's image route) with the cut
    fault of :class:`Faults`: the first ``faults.cuts`` connections are closed after
    ``faults.cut_after`` bytes from the server (headers included). Counts the bytes read
    from the server (what it served) and the connections.

        async with CuttingRelay(("127.0.0.1", api_port), Faults(cut_after=400_000, cuts=50)) as r:
            url = r.base_url + "/v1/firmware/images/..."
    """

    upstream: tuple[str, int]
    faults: Faults = field(default_factory=Faults)
    bytes_from_server: int = 0
    bytes_to_clients: int = 0
    connections: int = 0
    cut: int = 0  # connections cut so far
    _server: asyncio.Server | None = None
    _open: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        assert self._server is not None, "enter the relay first"
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def __aenter__(self) -> CuttingRelay:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._open):  # kept-alive connections: Server.close leaves them
                task.cancel()
            await asyncio.gather(*self._open, return_exceptions=True)
            await self._server.wait_closed()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._open.add(task)
        task.add_done_callback(self._open.discard)
        self.connections += 1
        budget: int | None = None
        if self.faults.cut_after is not None and self.faults.cuts > 0:
            self.faults.cuts -= 1
            budget = self.faults.cut_after
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        requests = asyncio.create_task(_pump(client_r, server_w))
        try:
            while data := await server_r.read(64 * 1024):
                self.bytes_from_server += len(data)
                if budget is not None and len(data) >= budget:
                    # An abrupt cut as a dropped link gives it: no more bytes, socket closed.
                    client_w.write(data[:budget])
                    self.bytes_to_clients += budget
                    self.cut += 1
                    break
                if budget is not None:
                    budget -= len(data)
                client_w.write(data)
                self.bytes_to_clients += len(data)
                await client_w.drain()
        except ConnectionError:
            pass  # the device went away: its business
        finally:
            requests.cancel()
            for writer in (client_w, server_w):
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(64 * 1024):
            writer.write(data)
            await writer.drain()


def write_image(path: Path, image: bytes) -> str:
    """``image`` written at ``path``; its ``file://`` URL (the rig's images)."""
    path.write_bytes(image)
    return path.resolve().as_uri()


# ------------------------------------------------------------------ a spot board that refuses


@dataclass(slots=True)
class RefusingBoard(SpotBoard):
    """A spot board whose firmware refuses new images: it answers ``refuse_at`` (FW_BEGIN
    or FW_COMMIT) with ``error`` and keeps running its image, as a board with a full flash
    or a bootloader that rejects the image does."""

    refuse_at: int = Cmd.FW_COMMIT
    error: int = BusError.CHECKSUM_MISMATCH
    refused: int = 0  # requests refused so far

    def handle(self, req: Frame) -> Frame:
        if req.request_cmd == self.refuse_at:
            self.requests += 1
            self.refused += 1
            return error_response(req, BusError(self.error))
        return SpotBoard.handle(self, req)


def refuse_images(
    bus: SpotBusSim, addr: int, *, at: int = Cmd.FW_COMMIT,
    error: int = BusError.CHECKSUM_MISMATCH,
) -> RefusingBoard:
    """Replace the board at ``addr`` by one in the same state that refuses images."""
    old = bus.boards[addr]
    values = {f.name: getattr(old, f.name) for f in dataclasses.fields(old) if f.init}
    board = RefusingBoard(**values, refuse_at=at, error=error)
    bus.boards[addr] = board
    return board
