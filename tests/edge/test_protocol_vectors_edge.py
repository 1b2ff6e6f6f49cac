"""The protocol's test vectors on the device side: boot and time replies decode; every
signed command verifies through the agent's own verifier (its settings, device clock and
on-disk replay guard) — and is refused as a replay after a restart; every negative command
is refused with its vector's RejectReason; the station's spot-bus master reads the
spot-bus vectors."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from kickstand.edge.core.clock import DeviceClock
from kickstand.edge.core.config import EdgeSettings
from kickstand.edge.core.replay import SqliteReplayGuard
from kickstand.edge.transports import SerialPort
from kickstand.edge.transports.spotbus import BoardBusError, BoardNoAnswer, SpotBusMaster
from kickstand.protocol.errors import CommandRejected, FrameError
from kickstand.protocol.jsonform import (
    load_vector_file,
    load_vector_keys,
    load_vectors,
    to_jsonable,
)
from kickstand.protocol.spotbus import RESPONSE, BusError, Cmd, read_answer
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1.enums import RejectReason

VECTORS = load_vectors()
KEYS = load_vector_keys()


@pytest.mark.parametrize(
    "vec", [v for v in VECTORS if v["channel"] in ("boot", "time", "ack")], ids=lambda v: v["name"]
)
def test_down_vectors(vec: dict[str, Any]) -> None:
    data = bytes.fromhex(vec["hex"])
    if vec["valid"]:
        assert to_jsonable(codec.decode_down(Channel(vec["channel"]), data)) == vec["decoded"]
    else:
        with pytest.raises(Exception) as info:
            codec.decode_down(Channel(vec["channel"]), data)
        assert getattr(info.value, "code", None) == vec["error"]


@pytest.mark.parametrize(
    "vec", [v for v in VECTORS if v["channel"] == "cmd" and v["valid"]], ids=lambda v: v["name"]
)
def test_command_vectors_verify_on_the_device_and_never_replay(
    vec: dict[str, Any], tmp_path: Path
) -> None:
    settings = EdgeSettings(
        device_id=KEYS["device_id"], state_dir=tmp_path, command_keys=[KEYS["public_hex"]]
    )
    at = int(vec["verify_at_ms"])
    clock = DeviceClock(offset_ms=at - time.time_ns() // 1_000_000)
    guard_path = tmp_path / "replay.sqlite3"
    envelope = settings.verifier(clock, SqliteReplayGuard(guard_path, clock=clock.now_ms)).verify(
        bytes.fromhex(vec["hex"])
    )
    assert to_jsonable(envelope) == vec["decoded"]
    # A reboot: a new guard on the same file still knows the command id.
    again = settings.verifier(clock, SqliteReplayGuard(guard_path, clock=clock.now_ms))
    with pytest.raises(CommandRejected) as info:
        again.verify(bytes.fromhex(vec["hex"]))
    assert info.value.reject_reason == RejectReason.REPLAYED


@pytest.mark.parametrize(
    "vec", [v for v in VECTORS if v["channel"] == "cmd" and not v["valid"]], ids=lambda v: v["name"]
)
def test_negative_command_vectors_get_their_reason_from_the_device(
    vec: dict[str, Any], tmp_path: Path
) -> None:
    """Each fails one check of SPEC §7.2 (payload, algorithm, key, signature, device, time):
    the agent's verifier, with its settings, clock and on-disk replay guard, refuses it
    with the vector's RejectReason before anything moves; the command id of the result is
    the payload's when it can be read."""
    settings = EdgeSettings(
        device_id=KEYS["device_id"], state_dir=tmp_path, command_keys=[KEYS["public_hex"]]
    )
    clock = DeviceClock(offset_ms=int(vec["verify_at_ms"]) - time.time_ns() // 1_000_000)
    guard = SqliteReplayGuard(tmp_path / "replay.sqlite3", clock=clock.now_ms)
    verifier = settings.verifier(clock, guard)
    with pytest.raises(CommandRejected) as info:
        verifier.verify(bytes.fromhex(vec["hex"]))
    assert RejectReason(info.value.reject_reason).name == vec["reject"], str(info.value)


class VectorPort(SerialPort):
    """A UART whose board answers every request with the bytes of one vector."""

    path = "vectors"

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.pending = b""
        self.written: list[bytes] = []

    async def open(self) -> None:
        pass

    async def read(self, wait_s: float) -> bytes:
        data, self.pending = self.pending, b""
        if not data:
            await asyncio.sleep(wait_s)
        return data

    async def write(self, data: bytes) -> None:
        self.written.append(data)
        self.pending = self.answer

    def discard_input(self) -> None:
        self.pending = b""

    async def close(self) -> None:
        pass


def _answers() -> list[dict[str, Any]]:
    return [
        v
        for v in load_vector_file()["spotbus"]
        if ("frame" in v and v["frame"]["cmd"] & RESPONSE) or not v["valid"]
    ]


@pytest.mark.parametrize("vec", _answers(), ids=lambda v: v["name"])
async def test_the_station_bus_master_reads_the_spot_bus_vectors(vec: dict[str, Any]) -> None:
    """The station's bus master, asking what each answer vector answers: a good answer is
    returned (an error answer raised with its BusError); bytes a receiver skips are no
    answer at all: the master retries and gives the board up."""
    answer = bytes.fromhex(vec["hex"])
    frame = vec.get("frame")
    addr, cmd = (frame["addr"], frame["cmd"] & 0x3F) if frame else (answer[1], answer[2] & 0x3F)
    port = VectorPort(answer)
    master = SpotBusMaster(port, response_timeout_s=0.01)
    if frame is None and vec["reason"] != "payload":
        with pytest.raises(BoardNoAnswer):
            await master.transact(3, Cmd.GET_STATUS)
        assert len(port.written) == 3  # three tries (SPEC §9.3)
    elif frame is not None and frame["cmd"] & 0xC0 == 0xC0:
        with pytest.raises(BoardBusError) as info:
            await master.transact(addr, Cmd(cmd))
        assert info.value.error == BusError(int(frame["payload"], 16))
    else:
        got = await master.transact(addr, Cmd(cmd))
        assert got.encode() == answer
        if frame is None:  # well framed, unreadable payload
            with pytest.raises(FrameError):
                read_answer(got)
