"""The BLE battery-management peer: internal battery and e-assist (VAE) battery.

As bleak does it: :class:`BatteryPeer` is the abstract interface, one backend
per kind, chosen by the address and imported lazily:

- ``AA:BB:CC:DD:EE:FF`` → :class:`BleakBatteryPeer` (bleak over BlueZ / D-Bus)
- ``sim:/path/to/socket`` → :class:`SocketBatteryPeer`, the same GATT exchange
  (read, subscribe, notify on characteristic handles) over a Unix socket that
  the vehicle simulator serves.

:class:`BatteryMonitor` owns a peer: it connects, subscribes, polls, and on a
disconnect reconnects with exponential back-off, forever, without raising.

GATT layout of the BMS peer (the simulator serves the same handles; values are
the GATT Battery Service encodings):

    handle  characteristic                        value
    0x0003  internal battery level (0x2A19)       uint8, %
    0x0005  internal battery voltage              uint16 LE, mV
    0x0007  VAE battery level (0x2A19)            uint8, %
    0x0009  VAE battery voltage                   uint16 LE, mV
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kickstand.protocol.v1.enums import BatteryKind

log = logging.getLogger("kickstand.edge.transports.ble")

H_INTERNAL_LEVEL = 0x0003
H_INTERNAL_MV = 0x0005
H_VAE_LEVEL = 0x0007
H_VAE_MV = 0x0009
HANDLES = (H_INTERNAL_LEVEL, H_INTERNAL_MV, H_VAE_LEVEL, H_VAE_MV)
LEVEL_HANDLE = {BatteryKind.INTERNAL: H_INTERNAL_LEVEL, BatteryKind.VAE: H_VAE_LEVEL}
MV_HANDLE = {BatteryKind.INTERNAL: H_INTERNAL_MV, BatteryKind.VAE: H_VAE_MV}

# Characteristic UUIDs on a real BMS (bleak backend): the standard Battery Level
# in two Battery Service instances, and a vendor voltage characteristic.
BLE_UUIDS = {
    H_INTERNAL_LEVEL: "00002a19-0000-1000-8000-00805f9b34fb",
    H_INTERNAL_MV: "6b5f0005-4b53-4b53-8000-00805f9b34fb",
    H_VAE_LEVEL: "6b5f0007-4b53-4b53-8000-00805f9b34fb",
    H_VAE_MV: "6b5f0009-4b53-4b53-8000-00805f9b34fb",
}

MAX_LINE = 256


class BleError(Exception):
    """Root of the BLE transport errors; ``address`` says which peer."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"{address}: {reason}")
        self.address = address
        self.reason = reason


class BleDisconnected(BleError):
    """The peer went away (or could not be reached)."""


class BleProtocolError(BleError):
    """The peer answered something that is not a valid value."""


@dataclass(frozen=True, slots=True)
class BatteryReading:
    kind: BatteryKind
    level_pct: int | None = None
    voltage_mv: int | None = None


def decode_value(handle: int, value: bytes) -> tuple[BatteryKind, str, int]:
    """(battery, "level" | "mv", value) of one characteristic value; BleProtocolError if wrong."""
    if handle in (H_INTERNAL_LEVEL, H_VAE_LEVEL):
        if len(value) != 1 or value[0] > 100:
            raise BleProtocolError("bms", f"level value {value.hex()} on {handle:#06x}")
        kind = BatteryKind.INTERNAL if handle == H_INTERNAL_LEVEL else BatteryKind.VAE
        return kind, "level", value[0]
    if handle in (H_INTERNAL_MV, H_VAE_MV):
        if len(value) != 2:
            raise BleProtocolError("bms", f"voltage value {value.hex()} on {handle:#06x}")
        kind = BatteryKind.INTERNAL if handle == H_INTERNAL_MV else BatteryKind.VAE
        return kind, "mv", struct.unpack("<H", value)[0]
    raise BleProtocolError("bms", f"unknown handle {handle:#06x}")


def encode_level(pct: int) -> bytes:
    return bytes((max(0, min(100, pct)),))


def encode_mv(mv: int) -> bytes:
    return struct.pack("<H", max(0, min(0xFFFF, mv)))


Notify = Callable[[int, bytes], None]


class BatteryPeer(abc.ABC):
    """A connection to the BMS peer. Methods raise BleError subclasses only."""

    address: str

    @abc.abstractmethod
    async def connect(self, on_notify: Notify) -> None:
        """Connect and subscribe to every handle; ``on_notify(handle, value)`` on changes."""

    @abc.abstractmethod
    async def read(self, handle: int) -> bytes:
        """Read one characteristic."""

    @abc.abstractmethod
    async def disconnect(self) -> None: ...

    @abc.abstractmethod
    async def wait_disconnected(self) -> None:
        """Return when the link is lost (or was closed)."""

    @property
    @abc.abstractmethod
    def connected(self) -> bool: ...


class SocketBatteryPeer(BatteryPeer):
    """The GATT exchange as ASCII lines over a Unix socket (the simulator's BLE transport).

    central → peer: ``READ <handle>`` | ``SUB <handle>``
    peer → central: ``VAL <handle> <hex>`` | ``NTF <handle> <hex>`` | ``ERR <handle> <code>``
    Handles are 4 hex digits. One request is outstanding at a time.
    """

    def __init__(self, path: str, timeout_s: float = 2.0) -> None:
        self.address = f"sim:{path}"
        self.path = path
        self.timeout_s = timeout_s
        self.bad_lines = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: asyncio.Future[bytes] | None = None
        self._pending_handle = -1
        self._lock = asyncio.Lock()
        self._closed = asyncio.Event()
        self._on_notify: Notify | None = None

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._closed.is_set()

    async def connect(self, on_notify: Notify) -> None:
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
            # that races with the connect completing.
            async with asyncio.timeout(self.timeout_s):
                self._reader, self._writer = await asyncio.open_unix_connection(
                    self.path, limit=MAX_LINE * 4
                )
        except (OSError, TimeoutError) as exc:
            raise BleDisconnected(self.address, f"connect: {exc}") from None
        self._closed.clear()
        self._on_notify = on_notify
        self._task = asyncio.create_task(self._read_loop(), name=f"ble-read {self.path}")
        for handle in HANDLES:
            await self._send(f"SUB {handle:04x}")
        try:
            await self.read(H_INTERNAL_LEVEL)  # a peer that answers, not just a socket
        except BleError:
            await self.disconnect()
            raise

    async def _send(self, line: str) -> None:
        if self._writer is None or self._closed.is_set():
            raise BleDisconnected(self.address, "not connected")
        try:
            self._writer.write(line.encode("ascii") + b"\n")
            await self._writer.drain()
        except (OSError, RuntimeError) as exc:
            self._closed.set()
            raise BleDisconnected(self.address, f"write: {exc}") from None

    async def read(self, handle: int) -> bytes:
        async with self._lock:
            loop = asyncio.get_running_loop()
            self._pending = loop.create_future()
            self._pending_handle = handle
            try:
                await self._send(f"READ {handle:04x}")
                pending: asyncio.Future[Any] = self._pending
                closed: asyncio.Future[Any] = asyncio.ensure_future(self._closed.wait())
                try:
                    done, _ = await asyncio.wait(
                        {pending, closed}, timeout=self.timeout_s,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    closed.cancel()
                if pending in done:
                    result: bytes = pending.result()
                    return result
                if self._closed.is_set():
                    raise BleDisconnected(self.address, "link lost during read")
                raise BleDisconnected(self.address, f"read {handle:#06x} timed out")
            finally:
                if self._pending is not None and not self._pending.done():
                    self._pending.cancel()
                self._pending = None

    def _parse(self, line: str) -> tuple[str, int, str] | None:
        parts = line.split()
        if len(parts) != 3 or parts[0] not in ("VAL", "NTF", "ERR") or len(parts[1]) != 4:
            return None
        try:
            return parts[0], int(parts[1], 16), parts[2]
        except ValueError:
            return None

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while True:
                try:
                    raw = await self._reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    self.bad_lines += 1
                    continue
                if not raw:
                    break
                parsed = self._parse(raw.decode("ascii", "replace").strip())
                if parsed is None:
                    self.bad_lines += 1
                    log.debug("ble_bad_line line=%r", raw[:40])
                    continue
                op, handle, arg = parsed
                if op == "ERR":
                    if self._pending is not None and handle == self._pending_handle:
                        if not self._pending.done():
                            self._pending.set_exception(
                                BleProtocolError(self.address, f"error {arg} on {handle:#06x}")
                            )
                    continue
                try:
                    value = bytes.fromhex(arg)
                except ValueError:
                    self.bad_lines += 1
                    continue
                if op == "VAL":
                    if self._pending is not None and handle == self._pending_handle:
                        if not self._pending.done():
                            self._pending.set_result(value)
                elif self._on_notify is not None:
                    self._on_notify(handle, value)
        except (OSError, ConnectionError) as exc:
            log.info("ble_link_error address=%s reason=%s", self.address, exc)
        finally:
            self._closed.set()

    async def wait_disconnected(self) -> None:
        await self._closed.wait()

    async def disconnect(self) -> None:
        self._closed.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
            self._writer = None


class BleakBatteryPeer(BatteryPeer):  # pragma: no cover - needs BlueZ over D-Bus
    """A real BMS over BLE through bleak (imported only when this backend is used)."""

    def __init__(self, address: str, timeout_s: float = 10.0) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._client: Any = None
        self._lost = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._client is not None and bool(self._client.is_connected)

    async def connect(self, on_notify: Notify) -> None:
        try:
            from bleak import BleakClient
            from bleak.exc import BleakError
        except ImportError as exc:
            raise BleDisconnected(self.address, f"bleak not available: {exc}") from None
        self._lost.clear()
        client = BleakClient(
            self.address, disconnected_callback=lambda _c: self._lost.set(),
            timeout=self.timeout_s,
        )
        try:
            await client.connect()
            for handle, uuid in BLE_UUIDS.items():

                def forward(_char: Any, data: bytearray, h: int = handle) -> None:
                    on_notify(h, bytes(data))

                await client.start_notify(uuid, forward)
        except (BleakError, OSError, TimeoutError) as exc:
            self._lost.set()
            raise BleDisconnected(self.address, f"connect: {exc}") from None
        self._client = client

    async def read(self, handle: int) -> bytes:
        from bleak.exc import BleakError

        if self._client is None:
            raise BleDisconnected(self.address, "not connected")
        try:
            return bytes(await self._client.read_gatt_char(BLE_UUIDS[handle]))
        except (BleakError, OSError, TimeoutError) as exc:
            raise BleDisconnected(self.address, f"read: {exc}") from None

    async def wait_disconnected(self) -> None:
        await self._lost.wait()

    async def disconnect(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.disconnect()
            self._client = None
        self._lost.set()


def open_battery_peer(address: str) -> BatteryPeer:
    """``sim:/path`` → the simulator's socket transport; anything else → bleak."""
    if address.startswith("sim:"):
        return SocketBatteryPeer(address[4:])
    return BleakBatteryPeer(address)


@dataclass(slots=True)
class BatteryState:
    level_pct: int | None = None
    voltage_mv: int | None = None


class BatteryMonitor:
    """Keeps a BMS peer connected and the latest readings at hand.

    ``on_reading(BatteryReading)`` is called for every value read or notified.
    After a lost link it waits ``backoff_s`` (doubling up to ``max_backoff_s``,
    with jitter) before each new attempt; a successful connect resets it.
    """

    def __init__(
        self,
        peer: BatteryPeer,
        on_reading: Callable[[BatteryReading], None] | None = None,
        *,
        poll_s: float = 60.0,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.peer = peer
        self.on_reading = on_reading
        self.poll_s = poll_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.batteries = {kind: BatteryState() for kind in BatteryKind}
        self.connects = 0
        self.disconnects = 0
        self.bad_values = 0
        self.connected = asyncio.Event()

    def _value(self, handle: int, value: bytes) -> None:
        try:
            kind, what, number = decode_value(handle, value)
        except BleProtocolError as exc:
            self.bad_values += 1
            log.warning("ble_bad_value address=%s reason=%s", self.peer.address, exc.reason)
            return
        state = self.batteries[kind]
        if what == "level":
            state.level_pct = number
            reading = BatteryReading(kind, level_pct=number, voltage_mv=state.voltage_mv)
        else:
            state.voltage_mv = number
            reading = BatteryReading(kind, level_pct=state.level_pct, voltage_mv=number)
        if self.on_reading is not None:
            self.on_reading(reading)

    async def poll_once(self) -> None:
        for handle in HANDLES:
            try:
                value = await self.peer.read(handle)
            except BleProtocolError as exc:
                self.bad_values += 1
                log.warning("ble_read_error address=%s reason=%s", self.peer.address, exc.reason)
                continue
            self._value(handle, value)

    async def _poll_loop(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self.poll_s)

    async def run(self) -> None:
        delay = self.backoff_s
        while True:
            try:
                await self.peer.connect(self._value)
            except BleDisconnected as exc:
                log.info("ble_connect_failed address=%s reason=%s retry_s=%.1f",
                         self.peer.address, exc.reason, delay)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self.max_backoff_s)
                continue
            self.connects += 1
            delay = self.backoff_s
            self.connected.set()
            log.info("ble_connected address=%s", self.peer.address)
            poller = asyncio.create_task(self._poll_loop())
            lost = asyncio.create_task(self.peer.wait_disconnected())
            try:
                await asyncio.wait({poller, lost}, return_when=asyncio.FIRST_COMPLETED)
                if poller.done() and not poller.cancelled():
                    exc2 = poller.exception()
                    if exc2 is not None and not isinstance(exc2, BleError):
                        log.error("ble_poll_crashed address=%s error=%r", self.peer.address, exc2)
            finally:
                poller.cancel()
                lost.cancel()
                with contextlib.suppress(asyncio.CancelledError, BleError):
                    await poller
                self.connected.clear()
                await self.peer.disconnect()
            self.disconnects += 1
            log.warning("ble_disconnected address=%s retry_s=%.1f", self.peer.address, delay)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
