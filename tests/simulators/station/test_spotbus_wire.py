"""The simulated spot boards at the wire: exact bytes on the pty, both ways."""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
from collections.abc import AsyncIterator

import pytest

from kickstand.edge.transports.serial import FdSerialPort
from kickstand.edge.transports.spotbus import (
    BoardBusError,
    BoardNoAnswer,
    LatchDidNotOpen,
    SpotBusMaster,
)
from kickstand.protocol.spotbus import (
    BoardInfo,
    BusError,
    BusLock,
    Cmd,
    SpotReport,
    crc16,
    fw_begin_payload,
    fw_chunk_payload,
)
from kickstand.simulators.spotboard import (
    LATCH_OPENED,
    UNLOCK_RECEIVED,
    SpotBoard,
    SpotBusSim,
    firmware_image,
)


@pytest.fixture
async def bus() -> AsyncIterator[tuple[SpotBusSim, FdSerialPort]]:
    sim = SpotBusSim()
    for addr in (1, 2, 7):
        sim.add_board(SpotBoard(addr))
    await sim.start()
    port = FdSerialPort(sim.slave_path)
    await port.open()
    yield sim, port
    await port.close()
    await sim.stop()


async def exchange(port: FdSerialPort, raw: bytes, expect: int) -> bytes:
    port.discard_input()
    await port.write(raw)
    got = b""
    async with asyncio.timeout(2):
        while len(got) < expect:
            got += await port.read(0.5)
    return got


def test_crc_reference_value() -> None:
    # CRC-16/MODBUS check value over "123456789"
    assert crc16(b"123456789") == 0x4B37


async def test_get_status_bytes(bus: tuple[SpotBusSim, FdSerialPort]) -> None:
    sim, port = bus
    sim.boards[2].dock("AB12")
    sim.boards[2].temperature_c = 23.4
    request = bytes([0xA5, 0x02, 0x01, 0x00]) + struct.pack("<H", crc16(b"\x02\x01\x00"))
    payload = bytes([0x00, 0x01]) + struct.pack("<h", 234) + bytes([0x01, 0x04]) + b"AB12"
    body = bytes([0x02, 0x81, len(payload)]) + payload
    expected = b"\xa5" + body + struct.pack("<H", crc16(body))
    assert await exchange(port, request, len(expected)) == expected
    assert SpotReport.from_payload(payload) == SpotReport(BusLock.LOCKED, True, 23.4, "AB12")


async def test_unknown_command_error_bytes(bus: tuple[SpotBusSim, FdSerialPort]) -> None:
    _, port = bus
    body = bytes([0x07, 0x3F, 0x00])
    request = b"\xa5" + body + struct.pack("<H", crc16(body))
    answer_body = bytes([0x07, 0x3F | 0xC0, 0x01, BusError.UNKNOWN_COMMAND])
    expected = b"\xa5" + answer_body + struct.pack("<H", crc16(answer_body))
    assert await exchange(port, request, len(expected)) == expected


async def test_bad_crc_request_is_ignored(bus: tuple[SpotBusSim, FdSerialPort]) -> None:
    sim, port = bus
    body = bytes([0x01, 0x01, 0x00])
    bad = b"\xa5" + body + struct.pack("<H", crc16(body) ^ 0xFFFF)
    await port.write(bad)
    assert await port.read(0.2) == b""
    assert sim.parser.crc_errors == 1


async def test_master_retries_corrupt_answers_and_reports_silence(
    bus: tuple[SpotBusSim, FdSerialPort],
) -> None:
    sim, port = bus
    master = SpotBusMaster(port, response_timeout_s=0.2, retries=2)
    sim.boards[1].corrupt_next = 2
    frame = await master.transact(1, Cmd.GET_INFO)
    assert BoardInfo.from_payload(frame.payload) == BoardInfo("sb-1.4.2", "sb-r3")
    assert master.parser.crc_errors == 2 and master.counters.retries == 2
    sim.boards[2].silent = True
    with pytest.raises(BoardNoAnswer):
        await master.transact(2, Cmd.GET_STATUS)
    with pytest.raises(BoardNoAnswer):
        await master.transact(9, Cmd.GET_STATUS)  # nobody at that address
    sim.boards[1].lock_wont_close = True
    with pytest.raises(BoardBusError) as err:
        await master.transact(1, Cmd.LOCK)
    assert err.value.error is BusError.HARDWARE_FAULT


async def test_garbage_flood_does_not_stop_the_bus(
    bus: tuple[SpotBusSim, FdSerialPort],
) -> None:
    sim, port = bus
    master = SpotBusMaster(port, response_timeout_s=0.2, retries=2)
    sim.flood(4000)
    frame = await master.transact(7, Cmd.GET_STATUS)
    assert SpotReport.from_payload(frame.payload).vehicle_present is False


async def test_firmware_staging_over_the_wire(bus: tuple[SpotBusSim, FdSerialPort]) -> None:
    sim, port = bus
    master = SpotBusMaster(port, response_timeout_s=0.2)
    image = firmware_image("sb-2.0.0", 500)
    sha = hashlib.sha256(image).digest()
    await master.transact(1, Cmd.FW_BEGIN, fw_begin_payload(len(image), sha))
    for offset in range(0, len(image), 60):
        await master.transact(1, Cmd.FW_CHUNK, fw_chunk_payload(offset, image[offset:offset + 60]))
    await master.transact(1, Cmd.FW_COMMIT)
    assert sim.boards[1].firmware == "sb-2.0.0"
    # a chunk out of order, then a commit with a wrong hash
    await master.transact(2, Cmd.FW_BEGIN, fw_begin_payload(len(image), bytes(32)))
    with pytest.raises(BoardBusError):
        await master.transact(2, Cmd.FW_CHUNK, fw_chunk_payload(60, image[60:120]))
    for offset in range(0, len(image), 60):
        await master.transact(2, Cmd.FW_CHUNK, fw_chunk_payload(offset, image[offset:offset + 60]))
    with pytest.raises(BoardBusError) as err:
        await master.transact(2, Cmd.FW_COMMIT)
    assert err.value.error is BusError.CHECKSUM_MISMATCH
    assert sim.boards[2].firmware == "sb-1.4.2"


async def test_a_chunk_whose_answer_was_lost_is_retried_and_stored_once(
    bus: tuple[SpotBusSim, FdSerialPort],
) -> None:
    """SPEC §9.5: the master's retry repeats the chunk; the board answers it again."""
    sim, port = bus
    master = SpotBusMaster(port, response_timeout_s=0.2)
    image = firmware_image("sb-2.1.0", 500)
    sha = hashlib.sha256(image).digest()
    await master.transact(1, Cmd.FW_BEGIN, fw_begin_payload(len(image), sha))
    for offset in range(0, len(image), 60):
        if offset == 120:
            sim.boards[1].corrupt_next = 1  # the board stores the chunk, its answer is lost
        await master.transact(1, Cmd.FW_CHUNK, fw_chunk_payload(offset, image[offset:offset + 60]))
    assert master.counters.retries == 1
    await master.transact(1, Cmd.FW_COMMIT)
    assert sim.boards[1].firmware == "sb-2.1.0"


async def test_pty_survives_agent_reopen(bus: tuple[SpotBusSim, FdSerialPort]) -> None:
    sim, port = bus
    await port.close()
    again = FdSerialPort(sim.slave_path)
    await again.open()
    master = SpotBusMaster(again, response_timeout_s=0.2)
    assert (await master.transact(7, Cmd.GET_STATUS)).addr == 7
    await again.close()
    assert os.path.exists(sim.slave_path)


def _events(board: SpotBoard) -> list[str]:
    return [event for _, event in board.latch_log]


def _docked(
    bus: tuple[SpotBusSim, FdSerialPort], addr: int, response_timeout_s: float = 0.2
) -> tuple[SpotBusMaster, SpotBoard]:
    """A master on the bus and board ``addr`` holding a vehicle (latch closed)."""
    sim, port = bus
    board = sim.boards[addr]
    board.dock(f"AB{addr:04d}")
    return SpotBusMaster(port, response_timeout_s=response_timeout_s), board


async def _lock_reads(master: SpotBusMaster, addr: int) -> BusLock:
    frame = await master.transact(addr, Cmd.GET_STATUS)
    return SpotReport.from_payload(frame.payload).lock


async def test_unlock_is_acknowledged_before_the_latch_releases(
    bus: tuple[SpotBusSim, FdSerialPort],
) -> None:
    master, board = _docked(bus, 1)
    board.actuation_s = 3600.0  # releases only when the test says so
    assert await master.unlock(1) is False  # acknowledged at once: only started
    assert master.counters.unlock_polls == 0  # the bus was freed without a reading
    assert await _lock_reads(master, 1) is BusLock.LOCKED
    assert _events(board) == [UNLOCK_RECEIVED]
    await master.transact(1, Cmd.UNLOCK)  # a repeated UNLOCK does not restart anything
    board.open_latch()
    assert await _lock_reads(master, 1) is BusLock.OPEN
    assert _events(board) == [UNLOCK_RECEIVED, UNLOCK_RECEIVED, LATCH_OPENED]
    # a latch with a real actuation time: the master reads until it says OPEN
    _, board2 = _docked(bus, 2)
    board2.actuation_s = 0.03
    await master.transact(2, Cmd.UNLOCK)
    report = await master.wait_open(2, poll_s=0.005, timeout_s=5.0)
    assert report.lock is BusLock.OPEN and report.serial_number == "AB0002"
    assert _events(board2) == [UNLOCK_RECEIVED, LATCH_OPENED]
    assert master.counters.latch_timeouts == 0


async def test_a_latch_that_never_opens_times_out_and_lock_stops_it(
    bus: tuple[SpotBusSim, FdSerialPort],
) -> None:
    master, board = _docked(bus, 1)
    board.lock_wont_open = True
    await master.transact(1, Cmd.UNLOCK)
    with pytest.raises(LatchDidNotOpen) as err:
        await master.wait_open(1, poll_s=0.005, timeout_s=0.05)
    assert err.value.last is BusLock.LOCKED and "lock did not open" in str(err.value)
    assert master.counters.latch_timeouts == 1 and master.counters.unlock_polls >= 2
    # LOCK during a release stops it: the latch stays closed past its release time
    board.lock_wont_open = False
    board.actuation_s = 0.5
    await master.transact(1, Cmd.UNLOCK)
    await master.transact(1, Cmd.LOCK)
    await asyncio.sleep(0.7)  # past the time the release would have come
    assert await _lock_reads(master, 1) is BusLock.LOCKED
    assert LATCH_OPENED not in _events(board)


async def test_old_firmware_answers_unlock_after_actuating(
    bus: tuple[SpotBusSim, FdSerialPort],
) -> None:
    master, board = _docked(bus, 7, response_timeout_s=0.5)
    board.acks_after_actuation = True
    board.actuation_s = 0.05
    # the answer took longer than a poll interval: read before the bus is freed
    assert await master.unlock(7, poll_s=0.005) is True
    assert _events(board) == [UNLOCK_RECEIVED, LATCH_OPENED]  # open before the answer
    assert master.counters.unlock_polls == 1  # that first reading said OPEN
    # and when the master waits anyway, its first reading says OPEN
    board.lock = BusLock.LOCKED
    await master.transact(7, Cmd.UNLOCK)
    report = await master.wait_open(7, poll_s=0.005, timeout_s=1.0)
    assert report.lock is BusLock.OPEN and master.counters.unlock_polls == 2
