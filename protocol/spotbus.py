"""Spot bus: the serial link between a station mainboard and its spot lock boards.

RS-485 half duplex, 115200 baud 8N1, one master (the mainboard) polling up to
247 boards. Every frame, request or response:

    0xA5 | addr | cmd | len | payload (len <= 64) | crc16 (little endian)

The CRC is CRC-16/MODBUS over addr, cmd, len and payload. A response echoes
the address and sets bit 7 of the command (``cmd | 0x80``); an error response
sets bits 7 and 6 (``cmd | 0xC0``) with a one-byte error code. The same
framing carries the vehicle lock box (address 1). SPEC.md has the full table.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

from kickstand.protocol.errors import FrameError

SOF = 0xA5
MAX_PAYLOAD = 64
HEADER = 4  # SOF, addr, cmd, len
OVERHEAD = HEADER + 2
BROADCAST = 0
MAX_ADDRESS = 247
RESPONSE = 0x80
ERROR = 0xC0
BAUDRATE = 115200
RESPONSE_TIMEOUT_S = 0.05  # a board answers within 50 ms
RETRIES = 2  # then the board counts as not answering
# UNLOCK is acknowledged when the latch release *starts*; the lock sensor (GET_STATUS
# ``lock``) says when it is open. The master frees the bus between readings, so the
# other boards' latches move at the same time.
UNLOCK_POLL_S = 0.005  # GET_STATUS to an unlocking board this often
ACTUATION_TIMEOUT_S = 1.0  # a latch that does not read OPEN within this is faulty


class Cmd(IntEnum):
    GET_STATUS = 0x01
    UNLOCK = 0x02
    LOCK = 0x03
    GET_INFO = 0x04
    IDENTIFY = 0x05
    FW_BEGIN = 0x10
    FW_CHUNK = 0x11
    FW_COMMIT = 0x12
    # vehicle lock box extensions
    GET_CHAIN = 0x20


class BusError(IntEnum):
    UNKNOWN_COMMAND = 0x01
    BAD_PAYLOAD = 0x02
    BUSY = 0x03
    HARDWARE_FAULT = 0x04
    FIRMWARE_STATE = 0x05
    CHECKSUM_MISMATCH = 0x06


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS: poly 0x8005 reflected (0xA001), init 0xFFFF, no final xor."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc


@dataclass(frozen=True, slots=True)
class Frame:
    addr: int
    cmd: int  # request code, or code | 0x80 / | 0xC0 in responses
    payload: bytes = b""

    @property
    def is_response(self) -> bool:
        return bool(self.cmd & RESPONSE)

    @property
    def is_error(self) -> bool:
        return self.cmd & ERROR == ERROR

    @property
    def request_cmd(self) -> int:
        return self.cmd & 0x3F

    def encode(self) -> bytes:
        if not 0 <= self.addr <= MAX_ADDRESS:
            raise FrameError(f"address {self.addr} outside 0..{MAX_ADDRESS}")
        if not 0 <= self.cmd <= 0xFF:
            raise FrameError(f"command {self.cmd} is not a byte")
        if len(self.payload) > MAX_PAYLOAD:
            raise FrameError(f"payload of {len(self.payload)} bytes, at most {MAX_PAYLOAD}")
        body = bytes((self.addr, self.cmd, len(self.payload))) + self.payload
        return bytes((SOF,)) + body + struct.pack("<H", crc16(body))


def request(addr: int, cmd: Cmd, payload: bytes = b"") -> Frame:
    return Frame(addr, int(cmd), payload)


def response(req: Frame, payload: bytes = b"") -> Frame:
    return Frame(req.addr, req.request_cmd | RESPONSE, payload)


def error_response(req: Frame, error: BusError) -> Frame:
    return Frame(req.addr, req.request_cmd | ERROR, bytes((int(error),)))


@dataclass(slots=True)
class FrameParser:
    """Incremental parser: feed it whatever the UART gave, get whole frames back.

    Garbage and corrupt frames are skipped by resynchronising on the next SOF
    byte; they are counted, never raised, so a flooding board cannot stop the bus.
    The buffer never holds more than one maximal frame.
    """

    crc_errors: int = 0
    bytes_discarded: int = 0
    frames: int = 0
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf.extend(data)
        out: list[Frame] = []
        buf = self._buf
        while buf:
            start = buf.find(SOF)
            if start < 0:
                self.bytes_discarded += len(buf)
                buf.clear()
                break
            if start:
                self.bytes_discarded += start
                del buf[:start]
            if len(buf) < HEADER:
                break
            length = buf[3]
            if length > MAX_PAYLOAD or buf[1] > MAX_ADDRESS:
                self.bytes_discarded += 1
                del buf[:1]
                continue
            total = OVERHEAD + length
            if len(buf) < total:
                break
            body = bytes(buf[1 : HEADER + length])
            (crc,) = struct.unpack_from("<H", buf, HEADER + length)
            if crc != crc16(body):
                self.crc_errors += 1
                self.bytes_discarded += 1
                del buf[:1]  # the SOF may have been noise: rescan from the next byte
                continue
            out.append(Frame(body[0], body[1], body[3:]))
            self.frames += 1
            del buf[:total]
        return out

    def reset(self) -> None:
        self._buf.clear()


# ------------------------------------------------------------------ payloads


class BusLock(IntEnum):
    LOCKED = 0
    OPEN = 1
    JAMMED = 2


STATUS_FLAG_SERIAL_VALID = 0x01
STATUS_FLAG_LOCK_FAULT = 0x02
STATUS_FLAG_TAMPER = 0x04


@dataclass(frozen=True, slots=True)
class SpotReport:
    """GET_STATUS response: lock, presence, temperature and the docked vehicle's serial."""

    lock: BusLock
    vehicle_present: bool
    temperature_c: float
    serial_number: str | None = None  # None when present but unreadable
    lock_fault: bool = False
    tamper: bool = False

    def to_payload(self) -> bytes:
        serial = (self.serial_number or "").encode("ascii")
        flags = (
            (STATUS_FLAG_SERIAL_VALID if self.serial_number else 0)
            | (STATUS_FLAG_LOCK_FAULT if self.lock_fault else 0)
            | (STATUS_FLAG_TAMPER if self.tamper else 0)
        )
        temp = max(-32768, min(32767, round(self.temperature_c * 10)))
        return (
            struct.pack(
                "<BBhBB", int(self.lock), int(self.vehicle_present), temp, flags, len(serial)
            )
            + serial
        )

    @classmethod
    def from_payload(cls, payload: bytes) -> SpotReport:
        if len(payload) < 6:
            raise FrameError(f"status payload of {len(payload)} bytes, at least 6")
        lock, present, temp, flags, slen = struct.unpack_from("<BBhBB", payload)
        if lock > 2 or present > 1 or len(payload) != 6 + slen or slen > 16:
            raise FrameError(f"status payload inconsistent: {payload.hex()}")
        raw = payload[6:]
        serial = None
        if flags & STATUS_FLAG_SERIAL_VALID:
            if not raw.isascii() or not raw.isalnum():
                raise FrameError(f"serial number is not alphanumeric: {raw!r}")
            serial = raw.decode("ascii")
        return cls(
            BusLock(lock),
            bool(present),
            temp / 10,
            serial,
            bool(flags & STATUS_FLAG_LOCK_FAULT),
            bool(flags & STATUS_FLAG_TAMPER),
        )


@dataclass(frozen=True, slots=True)
class BoardInfo:
    """GET_INFO response: firmware and hardware versions of the board."""

    firmware: str
    hardware: str

    def to_payload(self) -> bytes:
        fw, hw = self.firmware.encode("ascii"), self.hardware.encode("ascii")
        return bytes((len(fw),)) + fw + bytes((len(hw),)) + hw

    @classmethod
    def from_payload(cls, payload: bytes) -> BoardInfo:
        try:
            n = payload[0]
            fw = payload[1 : 1 + n]
            m = payload[1 + n]
            hw = payload[2 + n : 2 + n + m]
            if len(fw) != n or len(hw) != m or len(payload) != 2 + n + m:
                raise IndexError
            return cls(fw.decode("ascii"), hw.decode("ascii"))
        except (IndexError, UnicodeDecodeError):
            raise FrameError(f"info payload malformed: {payload.hex()}") from None


@dataclass(frozen=True, slots=True)
class ChainReport:
    """GET_CHAIN response of a vehicle lock box: chain inserted and its type code."""

    inserted: bool
    chain_type: int

    def to_payload(self) -> bytes:
        return bytes((int(self.inserted), self.chain_type))

    @classmethod
    def from_payload(cls, payload: bytes) -> ChainReport:
        if len(payload) != 2 or payload[0] > 1:
            raise FrameError(f"chain payload malformed: {payload.hex()}")
        return cls(bool(payload[0]), payload[1])


FW_CHUNK_DATA = MAX_PAYLOAD - 4  # offset (u32) + data


def fw_begin_payload(size: int, sha256: bytes) -> bytes:
    return struct.pack("<I", size) + sha256


def fw_chunk_payload(offset: int, data: bytes) -> bytes:
    if len(data) > FW_CHUNK_DATA:
        raise FrameError(f"firmware chunk of {len(data)} bytes, at most {FW_CHUNK_DATA}")
    return struct.pack("<I", offset) + data


_READERS: dict[int, type[SpotReport] | type[BoardInfo] | type[ChainReport]] = {
    Cmd.GET_STATUS: SpotReport,
    Cmd.GET_INFO: BoardInfo,
    Cmd.GET_CHAIN: ChainReport,
}


def read_answer(frame: Frame) -> SpotReport | BoardInfo | ChainReport | None:
    """What a response to GET_STATUS, GET_INFO or GET_CHAIN says; None for a request, an
    error response or an answer that carries nothing. FrameError when it cannot be read."""
    if frame.is_error or not frame.is_response:
        return None
    reader = _READERS.get(frame.request_cmd)
    return reader.from_payload(frame.payload) if reader else None
