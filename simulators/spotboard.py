"""Spot-board firmware emulated at the wire: a pseudo terminal speaking the spot bus.

One :class:`SpotBusSim` = one RS-485 bus = one pty; the agent opens ``slave_path``
as it would open ``/dev/ttyS1``. Boards answer at their addresses, byte for byte
as ``kickstand.protocol.spotbus`` frames them. Faults are injected per board:

    bus = SpotBusSim(); bus.add_board(SpotBoard(addr=3)); await bus.start()
    bus.boards[3].dock("AB1234")     # a vehicle pushed in: latch closes
    bus.boards[3].take()             # rider takes it (only if the lock is open)
    bus.boards[3].silent = True      # board stops answering
    bus.boards[3].corrupt_next = 4   # next 4 responses with a broken CRC
    bus.boards[3].actuation_s = 0.02 # UNLOCK acked at once, latch open 20 ms later
    bus.boards[3].lock_wont_open = True  # UNLOCK acked, the latch never releases
    bus.boards[3].open_latch()       # ... until it is freed (a test decides when)
    bus.boards[3].acks_after_actuation = True  # old firmware: UNLOCK answered once open
    bus.flood(500)                   # garbage on the bus

Each board keeps a short log of what its latch saw, stamped with ``time.monotonic()``
in the order it happened ("unlock received", "latch opened"): a test reads the order
of events across boards from it instead of measuring durations.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import struct
import time
import tty
from collections import deque
from dataclasses import dataclass, field

from kickstand.protocol.spotbus import (
    BoardInfo,
    BusError,
    BusLock,
    Cmd,
    Frame,
    FrameParser,
    SpotReport,
    error_response,
    response,
)

log = logging.getLogger("kickstand.simulators.spotboard")

UNLOCK_RECEIVED = "unlock received"
LATCH_OPENED = "latch opened"
LATCH_LOG_SIZE = 256  # a long demo run keeps the recent events only


class SimError(Exception):
    """A scenario step that the physical world would not allow (take a locked vehicle)."""


@dataclass(slots=True)
class SpotBoard:
    """The state of one lock board and its spot, as its firmware sees it."""

    addr: int
    lock: BusLock = BusLock.OPEN  # empty spot: latch open, ready for a vehicle
    vehicle_present: bool = False
    serial_number: str | None = None
    temperature_c: float = 21.0
    firmware: str = "sb-1.4.2"
    hardware: str = "sb-r3"
    # fault injection
    silent: bool = False  # answers nothing
    corrupt_next: int = 0  # responses sent with a broken CRC
    lock_wont_close: bool = False  # LOCK fails with HARDWARE_FAULT, latch stays open
    serial_unreadable: bool = False  # vehicle present, serial not readable
    tamper: bool = False
    delay_s: float = 0.0  # answer late (every command; old firmware answers UNLOCK so)
    bad_payload: bool = False  # well-framed answers whose payload is nonsense
    # the latch: UNLOCK is acknowledged at once and the lock reads OPEN after actuation_s
    actuation_s: float = 0.0
    lock_wont_open: bool = False  # UNLOCK acknowledged, the latch never releases
    acks_after_actuation: bool = False  # old firmware: the UNLOCK answer waits for the latch
    # counters
    requests: int = 0
    latch_log: deque[tuple[float, str]] = field(
        default_factory=lambda: deque(maxlen=LATCH_LOG_SIZE)
    )
    _releasing: asyncio.TimerHandle | None = None
    # firmware staging
    _fw_size: int = 0
    _fw_sha: bytes = b""
    _fw_buf: bytearray = field(default_factory=bytearray)
    _fw_open: bool = False

    # ---------------------------------------------------------------- the world

    def dock(self, serial_number: str) -> None:
        if self.vehicle_present:
            raise SimError(f"spot {self.addr} already holds {self.serial_number}")
        self.vehicle_present = True
        self.serial_number = serial_number
        self.stop_actuating()
        if not self.lock_wont_close:
            self.lock = BusLock.LOCKED  # the latch closes on the vehicle

    def take(self) -> str | None:
        if not self.vehicle_present:
            raise SimError(f"spot {self.addr} is empty")
        if self.lock is BusLock.LOCKED:
            raise SimError(f"spot {self.addr} is locked")
        serial = self.serial_number
        self.vehicle_present = False
        self.serial_number = None
        return serial

    def force_take(self) -> str | None:
        """Vehicle ripped out of a locked spot (vandalism): the tamper switch trips."""
        serial = self.serial_number
        self.vehicle_present = False
        self.serial_number = None
        self.tamper = True
        return serial

    # ---------------------------------------------------------------- the latch

    def _unlock(self) -> None:
        self.latch_log.append((time.monotonic(), UNLOCK_RECEIVED))
        if self.lock is BusLock.OPEN or self._releasing is not None or self.lock_wont_open:
            return  # already open, already moving (a repeated UNLOCK), or stuck
        if self.actuation_s <= 0:
            self._latch_opened()
            return
        self._releasing = asyncio.get_running_loop().call_later(
            self.actuation_s, self._latch_opened
        )

    def _latch_opened(self) -> None:
        self._releasing = None
        self.lock = BusLock.OPEN
        self.latch_log.append((time.monotonic(), LATCH_OPENED))

    def open_latch(self) -> None:
        """The latch releases now: a stuck one freed, or a release finishing early."""
        self.stop_actuating()
        if self.lock is not BusLock.OPEN:
            self._latch_opened()

    def answer_delay_s(self, req: Frame) -> float:
        """How late the answer to ``req`` goes out (after :meth:`handle`)."""
        if self.acks_after_actuation and req.request_cmd == Cmd.UNLOCK:
            return self.delay_s + self.actuation_s
        return self.delay_s

    def stop_actuating(self) -> None:
        """A latch release in progress stops (LOCK, a docking vehicle, the bus shut down)."""
        if self._releasing is not None:
            self._releasing.cancel()
            self._releasing = None

    # ---------------------------------------------------------------- firmware

    def handle(self, req: Frame) -> Frame:
        self.requests += 1
        cmd = req.request_cmd
        if cmd == Cmd.GET_STATUS and self.bad_payload:
            return response(req, b"\x07\x09\xff")
        if cmd == Cmd.GET_STATUS:
            report = SpotReport(
                self.lock,
                self.vehicle_present,
                self.temperature_c,
                None if self.serial_unreadable else self.serial_number,
                self.lock_wont_close and self.lock is not BusLock.LOCKED,
                self.tamper,
            )
            return response(req, report.to_payload())
        if cmd == Cmd.UNLOCK:
            self._unlock()
            return response(req)
        if cmd == Cmd.LOCK:
            self.stop_actuating()
            if self.lock_wont_close:
                self.lock = BusLock.JAMMED if self.vehicle_present else BusLock.OPEN
                return error_response(req, BusError.HARDWARE_FAULT)
            self.lock = BusLock.LOCKED
            return response(req)
        if cmd == Cmd.GET_INFO:
            return response(req, BoardInfo(self.firmware, self.hardware).to_payload())
        if cmd == Cmd.IDENTIFY:
            return response(req)
        if cmd == Cmd.FW_BEGIN:
            if len(req.payload) != 36:
                return error_response(req, BusError.BAD_PAYLOAD)
            (self._fw_size,) = struct.unpack_from("<I", req.payload)
            self._fw_sha = req.payload[4:36]
            self._fw_buf = bytearray()
            self._fw_open = True
            return response(req)
        if cmd == Cmd.FW_CHUNK:
            if not self._fw_open:
                return error_response(req, BusError.FIRMWARE_STATE)
            if len(req.payload) < 5:
                return error_response(req, BusError.BAD_PAYLOAD)
            (offset,) = struct.unpack_from("<I", req.payload)
            data = req.payload[4:]
            if offset + len(data) == len(self._fw_buf) and self._fw_buf[offset:] == data:
                return response(req)  # the master's retry after a lost answer (SPEC §9.5)
            if offset != len(self._fw_buf) or offset + len(data) > self._fw_size:
                return error_response(req, BusError.BAD_PAYLOAD)
            self._fw_buf.extend(data)
            return response(req)
        if cmd == Cmd.FW_COMMIT:
            if not self._fw_open:
                return error_response(req, BusError.FIRMWARE_STATE)
            self._fw_open = False
            image = bytes(self._fw_buf)
            if len(image) != self._fw_size or hashlib.sha256(image).digest() != self._fw_sha:
                return error_response(req, BusError.CHECKSUM_MISMATCH)
            self.firmware = firmware_version_of(image)
            return response(req)
        return error_response(req, BusError.UNKNOWN_COMMAND)


def firmware_version_of(image: bytes) -> str:
    """Simulated images start with ``SBFW:<version>\\n``; others get a hash-derived name."""
    if image.startswith(b"SBFW:"):
        head = image[5:].split(b"\n", 1)[0]
        with contextlib.suppress(UnicodeDecodeError):
            return head.decode("ascii")[:16]
    return "sb-" + hashlib.sha256(image).hexdigest()[:6]


def firmware_image(version: str, size: int = 2000) -> bytes:
    """A simulated firmware image the boards accept and report as ``version``."""
    head = f"SBFW:{version}\n".encode()
    rng = random.Random(version)
    return head + bytes(rng.getrandbits(8) for _ in range(max(0, size - len(head))))


class SpotBusSim:
    """One pty pair; the simulator holds the master end, the agent opens ``slave_path``."""

    def __init__(self) -> None:
        self.boards: dict[int, SpotBoard] = {}
        self.parser = FrameParser()
        self.responses = 0
        self._master: int | None = None
        self._slave: int | None = None
        self.slave_path = ""
        self._tasks: set[asyncio.Task[None]] = set()

    def add_board(self, board: SpotBoard) -> SpotBoard:
        self.boards[board.addr] = board
        return board

    async def start(self) -> None:
        master, slave = os.openpty()
        # Raw on both ends: no echo of our answers back to us, no line editing.
        tty.setraw(slave)
        tty.setraw(master)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.slave_path = os.ttyname(slave)
        asyncio.get_running_loop().add_reader(master, self._on_readable)

    async def stop(self) -> None:
        if self._master is not None:
            asyncio.get_running_loop().remove_reader(self._master)
            for task in list(self._tasks):
                task.cancel()
            for board in self.boards.values():
                board.stop_actuating()
            os.close(self._master)
            self._master = None
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None

    def _on_readable(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO while no one holds the slave open
        for frame in self.parser.feed(data):
            if frame.is_response:
                continue
            board = self.boards.get(frame.addr)
            if board is None or board.silent:
                continue
            answer = board.handle(frame).encode()
            if board.corrupt_next > 0:
                board.corrupt_next -= 1
                answer = answer[:-1] + bytes(((answer[-1] ^ 0x5A) or 1,))
            delay = board.answer_delay_s(frame)
            if delay > 0:
                task = asyncio.get_running_loop().create_task(
                    self._later(delay, answer, board, frame)
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                self.write(answer)

    async def _later(self, delay: float, data: bytes, board: SpotBoard, req: Frame) -> None:
        await asyncio.sleep(delay)
        if board.acks_after_actuation and req.request_cmd == Cmd.UNLOCK \
                and not board.lock_wont_open:
            board.open_latch()  # old firmware answers once its latch is open
        self.write(data)

    def write(self, data: bytes) -> None:
        if self._master is None:
            return
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._master, data)
        self.responses += 1

    def flood(self, nbytes: int = 512, *, with_sof: bool = True) -> None:
        """Garbage on the bus (a board gone mad), SOF bytes and false headers included."""
        rng = random.Random()
        junk = bytearray(rng.getrandbits(8) for _ in range(nbytes))
        if with_sof:
            for i in range(0, nbytes, 37):
                junk[i] = 0xA5
        self.write(bytes(junk))
