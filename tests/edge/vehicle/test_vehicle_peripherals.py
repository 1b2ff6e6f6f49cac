"""The agent's peripheral drivers against the simulator's firmware, at the wire."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from kickstand.edge.transports import open_serial
from kickstand.edge.transports.ble import (
    H_VAE_LEVEL,
    BatteryMonitor,
    BatteryReading,
    BleProtocolError,
    SocketBatteryPeer,
    decode_value,
)
from kickstand.edge.transports.motion import MotionSensor, Sensed
from kickstand.edge.transports.pinpad import PinChecker, PinEntry, PinPad
from kickstand.edge.vehicle.errors import LockBoxRefused, LockBoxTimeout
from kickstand.edge.vehicle.lockbox import LockBox
from kickstand.protocol.spotbus import BusError, BusLock, Cmd
from kickstand.protocol.v1.enums import BatteryKind, ChainType
from kickstand.simulators.vehicle.bms import BmsPeer
from kickstand.simulators.vehicle.lockbox import LockBoxFirmware
from kickstand.simulators.vehicle.wire import PtyLine

Eventually = Callable[..., Awaitable[None]]


async def test_lockbox_over_a_pty() -> None:
    line = PtyLine("lb")
    firmware = LockBoxFirmware(line, "BK123456")
    firmware.start()
    port = open_serial(line.slave_path)
    await port.open()
    box = LockBox(port, timeout_s=0.3)
    try:
        info = await box.info()
        assert info.firmware == "lb-2.4.1"
        status = await box.status()
        assert status.lock is BusLock.LOCKED and status.serial_number == "BK123456"
        await box.unlock()
        assert (await box.status()).lock is BusLock.OPEN
        firmware.state.chain_inserted = False
        chain = await box.chain()
        assert not chain.inserted and chain.chain_type == ChainType.NONE
        firmware.state.chain_inserted, firmware.state.chain_type = True, ChainType.LONG
        assert (await box.chain()).chain_type == ChainType.LONG
        firmware.state.jammed = True
        with pytest.raises(LockBoxRefused) as refused:
            await box.lock()
        assert refused.value.error is BusError.HARDWARE_FAULT
        firmware.state.jammed = False
        # noise on the line before an answer does not lose it
        line.write(b"\xa5\x01\xff garbage \x00")
        await box.lock()
        assert firmware.state.lock is BusLock.LOCKED
        firmware.state.mute = True
        with pytest.raises(LockBoxTimeout):
            await box.request(Cmd.GET_STATUS)
        assert box.counters.retries >= 2 and box.counters.no_answer == 1
    finally:
        await port.close()
        await firmware.stop()
        line.close()


async def test_bms_peer_reads_notifies_and_survives_disconnects(
    tmp_path: Path, eventually: Eventually
) -> None:
    peer = BmsPeer(str(tmp_path / "bms.sock"))
    await peer.start()
    readings: list[BatteryReading] = []
    monitor = BatteryMonitor(
        SocketBatteryPeer(peer.socket_path), readings.append, poll_s=0.2, backoff_s=0.05,
        max_backoff_s=0.2,
    )
    task = asyncio.create_task(monitor.run())
    try:
        await asyncio.wait_for(monitor.connected.wait(), 5)
        await eventually(lambda: monitor.batteries[BatteryKind.VAE].level_pct == 76)
        assert monitor.batteries[BatteryKind.INTERNAL].level_pct == 88
        assert monitor.batteries[BatteryKind.VAE].voltage_mv == 30000 + 12000 * 76 // 100
        # notification on change
        peer.batteries[BatteryKind.VAE].level = 42
        peer.notify_changes()
        await eventually(lambda: monitor.batteries[BatteryKind.VAE].level_pct == 42)
        # out of range for a while: link lost, connects refused, then back
        peer.set_available(False)
        await eventually(lambda: monitor.disconnects >= 1)
        assert not monitor.connected.is_set()
        peer.batteries[BatteryKind.VAE].level = 41
        await asyncio.sleep(0.3)
        peer.set_available(True)
        await asyncio.wait_for(monitor.connected.wait(), 5)
        await eventually(lambda: monitor.batteries[BatteryKind.VAE].level_pct == 41)
        assert monitor.connects >= 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await peer.stop()


def test_bms_values_are_checked() -> None:
    assert decode_value(H_VAE_LEVEL, b"\x2a") == (BatteryKind.VAE, "level", 42)
    for handle, value in ((H_VAE_LEVEL, b"\x65"), (H_VAE_LEVEL, b""), (0x0042, b"\x01")):
        with pytest.raises(BleProtocolError):
            decode_value(handle, value)


async def test_hostile_bms_peer_lines_are_counted(tmp_path: Path, eventually: Eventually) -> None:
    path = str(tmp_path / "evil.sock")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            if line.startswith(b"READ"):
                handle = line.split()[1].decode()
                writer.write(b"VAL zz 00\nNTF 0007 ff\nhello\n" + b"x" * 2000 + b"\n")
                writer.write(f"VAL {handle} 99\n".encode())  # 153 %: out of range

    server = await asyncio.start_unix_server(serve, path=path)
    monitor = BatteryMonitor(SocketBatteryPeer(path), poll_s=10)
    task = asyncio.create_task(monitor.run())
    try:
        await eventually(lambda: monitor.bad_values >= 3)
        assert monitor.batteries[BatteryKind.VAE].level_pct is None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        server.close()


def test_pinpad_and_checker() -> None:
    entries: list[PinEntry] = []
    pad = PinPad(on_entry=entries.append)
    pad.feed(b"PIN 1234\nPIN 12\nPIN abcd\nPIN 123456789\n\xff\xfe\nPIN 4321\n")
    assert [e.code for e in entries] == ["1234", "4321"]
    assert pad.bad_lines == 3 and pad.framer.bytes_discarded == 2  # non-ASCII: the framer
    checker = PinChecker("4321")
    assert not checker.check(entries[0]) and checker.attempts == 1
    assert not checker.check(entries[0]) and checker.attempts == 2
    assert checker.check(entries[1]) and checker.attempts == 0
    assert not PinChecker().check(entries[1])


def test_motion_sensor_lines() -> None:
    seen: list[Sensed] = []
    sensor = MotionSensor(on_motion=seen.append)
    sensor.feed(b"MOT MOVING\nMOT SIDEWAYS\nMOT\ngarbage\nMOT FALLEN\nMOT STILL\n")
    assert seen == [Sensed.MOVING, Sensed.FALLEN, Sensed.STILL]
    assert sensor.bad_lines == 3 and not sensor.moving
