"""The simulated spot boards at the wire: exact bytes on the pty, both ways."""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
from collections.abc import AsyncIterator

import pytest

from kickstand.edge.station.bus import BoardBusError, BoardNoAnswer, SpotBusMaster
from kickstand.edge.transports.serial import FdSerialPort
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
from kickstand.simulators.spotboard import SpotBoard, SpotBusSim, firmware_image


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


async def test_pty_survives_agent_reopen(bus: tuple[SpotBusSim, FdSerialPort]) -> None:
    sim, port = bus
    await port.close()
    again = FdSerialPort(sim.slave_path)
    await again.open()
    master = SpotBusMaster(again, response_timeout_s=0.2)
    assert (await master.transact(7, Cmd.GET_STATUS)).addr == 7
    await again.close()
    assert os.path.exists(sim.slave_path)
