"""Lock box firmware with chain sensor, at the wire: spot-bus frames at address 1."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from kickstand.protocol.spotbus import (
    BoardInfo,
    BusError,
    BusLock,
    ChainReport,
    Cmd,
    Frame,
    FrameParser,
    SpotReport,
    error_response,
    response,
)
from kickstand.protocol.v1.enums import ChainType
from kickstand.simulators.vehicle.wire import PtyLine

log = logging.getLogger("kickstand.simulators.vehicle.lockbox")

LOCKBOX_ADDRESS = 1


@dataclass(slots=True)
class LockBoxState:
    lock: BusLock = BusLock.LOCKED
    chain_inserted: bool = True
    chain_type: ChainType = ChainType.STANDARD
    temperature_c: float = 18.5
    jammed: bool = False  # the motor fails: UNLOCK / LOCK answer HARDWARE_FAULT
    tamper: bool = False
    mute: bool = False  # the board does not answer at all
    firmware: str = "lb-2.4.1"
    hardware: str = "LB-R3"
    requests: dict[int, int] = field(default_factory=dict)


class LockBoxFirmware:
    """Answers the agent's requests on ``line`` (only frames for address 1)."""

    def __init__(self, line: PtyLine, serial_number: str) -> None:
        self.line = line
        self.serial_number = serial_number
        self.state = LockBoxState()
        self.parser = FrameParser()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        queue = self.line.start_reading()
        self._task = asyncio.create_task(self._serve(queue), name=f"lockbox {self.line.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _serve(self, queue: asyncio.Queue[bytes]) -> None:
        while True:
            data = await queue.get()
            for frame in self.parser.feed(data):
                if frame.addr != LOCKBOX_ADDRESS or frame.is_response or self.state.mute:
                    continue
                reply = self.handle(frame)
                self.line.write(reply.encode())

    def handle(self, req: Frame) -> Frame:
        s = self.state
        s.requests[req.cmd] = s.requests.get(req.cmd, 0) + 1
        if req.cmd == Cmd.GET_STATUS:
            return response(
                req,
                SpotReport(
                    lock=BusLock.JAMMED if s.jammed else s.lock,
                    vehicle_present=s.chain_inserted,
                    temperature_c=s.temperature_c,
                    serial_number=self.serial_number,
                    lock_fault=s.jammed,
                    tamper=s.tamper,
                ).to_payload(),
            )
        if req.cmd == Cmd.GET_CHAIN:
            chain = int(s.chain_type) if s.chain_inserted else int(ChainType.NONE)
            return response(req, ChainReport(s.chain_inserted, chain).to_payload())
        if req.cmd == Cmd.GET_INFO:
            return response(req, BoardInfo(s.firmware, s.hardware).to_payload())
        if req.cmd in (Cmd.UNLOCK, Cmd.LOCK):
            if req.payload:
                return error_response(req, BusError.BAD_PAYLOAD)
            if s.jammed:
                return error_response(req, BusError.HARDWARE_FAULT)
            s.lock = BusLock.OPEN if req.cmd == Cmd.UNLOCK else BusLock.LOCKED
            log.debug("lockbox_%s serial=%s", "open" if s.lock else "closed", self.serial_number)
            return response(req)
        return error_response(req, BusError.UNKNOWN_COMMAND)
