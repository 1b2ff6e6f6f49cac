"""Spot-bus master: one request at a time, answer within the timeout or retry.

The station drives its spot boards through it, the vehicle its lock box (a board at
address 1): the bus is a transport both agents share, not a part of either.

Corrupt frames (CRC, length, garbage) are skipped by the parser and counted; a
request without a valid answer is retried ``retries`` times, then the board
counts as not answering (:class:`BoardNoAnswer`). An error response becomes
:class:`BoardBusError` with the board's BusError code.

:meth:`SpotBusMaster.unlock` and :meth:`SpotBusMaster.wait_open` hold the bus only for
single requests: UNLOCK (the board acknowledges the start of the latch release),
then GET_STATUS every ``poll_s`` until the lock sensor says OPEN. Several spots'
latches therefore move at the same time, each unlock costing one actuation, not
one per spot before it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from kickstand.edge.core.errors import EdgeError
from kickstand.edge.transports import SerialPort
from kickstand.protocol.spotbus import (
    ACTUATION_TIMEOUT_S,
    RESPONSE_TIMEOUT_S,
    RETRIES,
    UNLOCK_POLL_S,
    BusError,
    BusLock,
    Cmd,
    Frame,
    FrameParser,
    SpotReport,
    request,
)

log = logging.getLogger("kickstand.edge.transports.spotbus")


class BoardNoAnswer(EdgeError):
    def __init__(self, addr: int, cmd: Cmd) -> None:
        super().__init__(f"board {addr} did not answer {cmd.name}")
        self.addr = addr
        self.cmd = cmd


class BoardBusError(EdgeError):
    def __init__(self, addr: int, cmd: Cmd, error: BusError | int) -> None:
        name = error.name if isinstance(error, BusError) else f"0x{error:02x}"
        super().__init__(f"board {addr} refused {cmd.name}: {name}")
        self.addr = addr
        self.cmd = cmd
        self.error = error


class LatchDidNotOpen(EdgeError):
    """The board took the UNLOCK but its lock sensor never read OPEN in time."""

    def __init__(self, addr: int, last: BusLock) -> None:
        super().__init__(f"board {addr}: lock did not open (reads {last.name})")
        self.addr = addr
        self.last = last


@dataclass(slots=True)
class BusCounters:
    requests: int = 0
    retries: int = 0
    no_answer: int = 0
    error_responses: int = 0
    stray_frames: int = 0
    unlock_polls: int = 0  # GET_STATUS readings while a latch was releasing
    latch_timeouts: int = 0


class SpotBusMaster:
    def __init__(
        self,
        port: SerialPort,
        *,
        response_timeout_s: float = RESPONSE_TIMEOUT_S,
        retries: int = RETRIES,
    ) -> None:
        self.port = port
        self.response_timeout_s = response_timeout_s
        self.retries = retries
        self.parser = FrameParser()
        self.counters = BusCounters()
        self._lock = asyncio.Lock()

    async def transact(self, addr: int, cmd: Cmd, payload: bytes = b"") -> Frame:
        async with self._lock:
            return await self._exchange(addr, cmd, payload)

    async def _exchange(self, addr: int, cmd: Cmd, payload: bytes = b"") -> Frame:
        """One request and its answer, with retries; the caller holds the bus."""
        frame = request(addr, cmd, payload).encode()
        loop = asyncio.get_running_loop()
        self.counters.requests += 1
        for attempt in range(self.retries + 1):
            if attempt:
                self.counters.retries += 1
            self.port.discard_input()
            self.parser.reset()
            await self.port.write(frame)
            deadline = loop.time() + self.response_timeout_s
            while (left := deadline - loop.time()) > 0:
                data = await self.port.read(left)
                if not data:
                    break
                for answer in self.parser.feed(data):
                    if (
                        answer.addr == addr
                        and answer.is_response
                        and answer.request_cmd == int(cmd)
                    ):
                        if answer.is_error:
                            self.counters.error_responses += 1
                            code = answer.payload[0] if answer.payload else 0
                            try:
                                raise BoardBusError(addr, cmd, BusError(code))
                            except ValueError:
                                raise BoardBusError(addr, cmd, code) from None
                        return answer
                    self.counters.stray_frames += 1
        self.counters.no_answer += 1
        raise BoardNoAnswer(addr, cmd)

    async def unlock(self, addr: int, *, poll_s: float = UNLOCK_POLL_S) -> bool:
        """Send UNLOCK; True when the lock already reads OPEN (then nothing is left to wait).

        A board that took ``poll_s`` or longer to answer is read at once, before the bus
        is freed: firmware that answers only after actuating reads OPEN there, and its
        unlock ends with its own answer instead of queueing behind every other request.
        A board that answered at once has only started releasing: the bus is freed and
        :meth:`wait_open` reads it in turn with the others.
        """
        loop = asyncio.get_running_loop()
        async with self._lock:
            sent = loop.time()
            await self._exchange(addr, Cmd.UNLOCK)
            if loop.time() - sent < poll_s:
                return False
            self.counters.unlock_polls += 1
            frame = await self._exchange(addr, Cmd.GET_STATUS)
        return SpotReport.from_payload(frame.payload).lock is BusLock.OPEN

    async def wait_open(
        self,
        addr: int,
        *,
        poll_s: float = UNLOCK_POLL_S,
        timeout_s: float = ACTUATION_TIMEOUT_S,
    ) -> SpotReport:
        """After UNLOCK's ack: read ``addr``'s lock sensor until it says OPEN, bus free between.

        The first reading follows at once: a board whose firmware answers UNLOCK only
        after actuating reads OPEN there. Raises BoardNoAnswer / BoardBusError /
        FrameError as :meth:`transact` and the report parser do, and LatchDidNotOpen
        when a reading taken ``timeout_s`` or more after the call still says otherwise.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            self.counters.unlock_polls += 1
            frame = await self.transact(addr, Cmd.GET_STATUS)
            report = SpotReport.from_payload(frame.payload)
            if report.lock is BusLock.OPEN:
                return report
            if loop.time() >= deadline:
                self.counters.latch_timeouts += 1
                raise LatchDidNotOpen(addr, report.lock)
            await asyncio.sleep(poll_s)

    def snapshot(self) -> dict[str, int]:
        c = self.counters
        return {
            "requests": c.requests,
            "retries": c.retries,
            "no_answer": c.no_answer,
            "error_responses": c.error_responses,
            "stray_frames": c.stray_frames,
            "unlock_polls": c.unlock_polls,
            "latch_timeouts": c.latch_timeouts,
            "crc_errors": self.parser.crc_errors,
            "bytes_discarded": self.parser.bytes_discarded,
        }
