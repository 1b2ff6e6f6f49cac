"""The lock box with chain sensor: a spot-bus board at address 1 on the controller's UART.

The framing, retries and timeouts are the spot-bus master both agents use
(:class:`kickstand.edge.transports.spotbus.SpotBusMaster`); this adds the lock box's
commands and turns bus failures into :class:`LockBoxError` subclasses.
"""

from __future__ import annotations

import logging

from kickstand.edge.transports import SerialPort
from kickstand.edge.transports.spotbus import (
    BoardBusError,
    BoardNoAnswer,
    BusCounters,
    SpotBusMaster,
)
from kickstand.edge.vehicle.errors import LockBoxError, LockBoxRefused, LockBoxTimeout
from kickstand.protocol.errors import FrameError
from kickstand.protocol.spotbus import (
    RESPONSE_TIMEOUT_S,
    RETRIES,
    BoardInfo,
    ChainReport,
    Cmd,
    SpotReport,
)

log = logging.getLogger("kickstand.edge.vehicle.lockbox")

LOCKBOX_ADDRESS = 1


class LockBox:
    def __init__(
        self, port: SerialPort, *, timeout_s: float = RESPONSE_TIMEOUT_S, retries: int = RETRIES
    ) -> None:
        self.bus = SpotBusMaster(port, response_timeout_s=timeout_s, retries=retries)
        self.bad_payloads = 0

    @property
    def counters(self) -> BusCounters:
        return self.bus.counters

    async def request(self, cmd: Cmd, payload: bytes = b"") -> bytes:
        """The response payload of ``cmd``, or LockBoxTimeout / LockBoxRefused."""
        try:
            return (await self.bus.transact(LOCKBOX_ADDRESS, cmd, payload)).payload
        except BoardNoAnswer:
            raise LockBoxTimeout(f"no answer to {cmd.name}") from None
        except BoardBusError as exc:
            raise LockBoxRefused(int(cmd), exc.error) from None

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
        self.bad_payloads += 1
        log.warning("lockbox_bad_payload reason=%s", exc.reason)
        return LockBoxError(f"bad payload: {exc.reason}")
