"""The lock box with chain sensor: a spot-bus board at address 1 on the controller's UART."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from kickstand.edge.transports import SerialPort
from kickstand.edge.vehicle.errors import LockBoxError, LockBoxRefused, LockBoxTimeout
from kickstand.protocol.errors import FrameError
from kickstand.protocol.spotbus import (
    RESPONSE_TIMEOUT_S,
    RETRIES,
    BoardInfo,
    BusError,
    ChainReport,
    Cmd,
    Frame,
    FrameParser,
    SpotReport,
    request,
)

log = logging.getLogger("kickstand.edge.vehicle.lockbox")

LOCKBOX_ADDRESS = 1


@dataclass(slots=True)
class LockBoxCounters:
    requests: int = 0
    timeouts: int = 0
    retries: int = 0
    error_responses: int = 0
    bad_payloads: int = 0


class LockBox:
    """Request / response master for the one lock box; one request on the line at a time."""

    def __init__(
        self, port: SerialPort, *, timeout_s: float = RESPONSE_TIMEOUT_S, retries: int = RETRIES
    ) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self.retries = retries
        self.parser = FrameParser()
        self.counters = LockBoxCounters()
        self._lock = asyncio.Lock()

    async def request(self, cmd: Cmd, payload: bytes = b"") -> bytes:
        """Send ``cmd``; the response payload, or LockBoxTimeout / LockBoxRefused."""
        frame = request(LOCKBOX_ADDRESS, cmd, payload)
        async with self._lock:
            for attempt in range(self.retries + 1):
                self.counters.requests += 1
                if attempt:
                    self.counters.retries += 1
                self.port.discard_input()
                self.parser.reset()
                await self.port.write(frame.encode())
                answer = await self._answer(int(cmd))
                if answer is None:
                    continue
                if answer.is_error:
                    self.counters.error_responses += 1
                    code = answer.payload[0] if answer.payload else 0
                    try:
                        error: BusError | int = BusError(code)
                    except ValueError:
                        error = code
                    raise LockBoxRefused(int(cmd), error)
                return answer.payload
            self.counters.timeouts += 1
            raise LockBoxTimeout(f"no answer to 0x{int(cmd):02x} after {self.retries + 1} tries")

    async def _answer(self, cmd: int) -> Frame | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while (left := deadline - loop.time()) > 0:
            data = await self.port.read(left)
            for frame in self.parser.feed(data):
                if frame.addr == LOCKBOX_ADDRESS and frame.is_response and \
                        frame.request_cmd == cmd:
                    return frame
        return None

    async def status(self) -> SpotReport:
        payload = await self.request(Cmd.GET_STATUS)
        try:
            return SpotReport.from_payload(payload)
        except FrameError as exc:
            raise self._bad(exc) from None

    async def chain(self) -> ChainReport:
        payload = await self.request(Cmd.GET_CHAIN)
        try:
            return ChainReport.from_payload(payload)
        except FrameError as exc:
            raise self._bad(exc) from None

    async def info(self) -> BoardInfo:
        payload = await self.request(Cmd.GET_INFO)
        try:
            return BoardInfo.from_payload(payload)
        except FrameError as exc:
            raise self._bad(exc) from None

    async def unlock(self) -> None:
        await self.request(Cmd.UNLOCK)

    async def lock(self) -> None:
        await self.request(Cmd.LOCK)

    def _bad(self, exc: FrameError) -> LockBoxError:
        self.counters.bad_payloads += 1
        log.warning("lockbox_bad_payload reason=%s", exc.reason)
        return LockBoxError(f"bad payload: {exc.reason}")
