"""An NFC badge at the wire of nfcpy's ``udp`` driver.

The station agent opens ``udp:127.0.0.1:<port>``: nfcpy then sends its polling
commands (``"106A 26"``, …, hex after the bit rate) as UDP datagrams to that
port. This peer listens there and, while a badge is presented, answers as an
ISO 14443-A card does: SENS_RES to SENS_REQ, the UID cascade levels (with BCC)
to SDD_REQ, SEL_RES to SEL_REQ. UIDs of 4, 7 and 10 bytes are supported; the
SEL_RES says "no protocol" so the reader reads the UID and stops there.
"""

from __future__ import annotations

import asyncio
import logging
from binascii import hexlify, unhexlify
from functools import reduce
from operator import xor
from typing import Any

log = logging.getLogger("kickstand.simulators.nfc")

SENS_RES = bytes.fromhex("4400")  # double-size UID capable, bit frame anticollision


def _cascade(uid: bytes) -> list[bytes]:
    """The SDD_RES of each cascade level: 4 bytes (CT 0x88 + 3 when more follow) + BCC."""
    if len(uid) not in (4, 7, 10):
        raise ValueError("a type A UID has 4, 7 or 10 bytes")
    parts: list[bytes] = []
    rest = uid
    while rest:
        chunk = rest[:4] if len(rest) == 4 else b"\x88" + rest[:3]
        rest = rest[4:] if len(rest) == 4 else rest[3:]
        parts.append(chunk + bytes((reduce(xor, chunk),)))
    return parts


class BadgeTagPeer(asyncio.DatagramProtocol):
    """Listen on ``port``; answer nfcpy's polling while a badge is on the reader."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.requests = 0
        self._uid: bytes | None = None
        self._until = 0.0
        self._transport: asyncio.DatagramTransport | None = None

    @property
    def path(self) -> str:
        return f"udp:{self.host}:{self.port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(self.host, self.port)
        )
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def present(self, uid: bytes, duration_s: float | None = 2.5) -> None:
        """Hold a badge on the reader for ``duration_s`` (None: until ``remove()``).

        nfcpy's udp driver polls about once a second, so a badge must stay longer
        than that to be seen, as a real one held for a moment is.
        """
        _cascade(uid)  # validates
        self._uid = uid
        self._until = (
            float("inf") if duration_s is None else asyncio.get_running_loop().time() + duration_s
        )

    def remove(self) -> None:
        self._uid = None

    def _current(self) -> bytes | None:
        if self._uid is not None and asyncio.get_running_loop().time() > self._until:
            self._uid = None
        return self._uid

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.requests += 1
        try:
            brty_raw, hex_data = data.split()
            brty = brty_raw.decode("ascii")
            cmd = unhexlify(hex_data)
        except ValueError:
            return  # "RFOFF" and anything else without a payload
        uid = self._current()
        if uid is None or brty != "106A" or not cmd:
            return
        levels = _cascade(uid)
        answer: bytes | None = None
        if cmd == b"\x26" or cmd == b"\x52":
            answer = SENS_RES
        elif len(cmd) == 2 and cmd[1] == 0x20 and cmd[0] in (0x93, 0x95, 0x97):
            level = (cmd[0] - 0x93) // 2
            if level < len(levels):
                answer = levels[level]
        elif len(cmd) == 7 and cmd[1] == 0x70 and cmd[0] in (0x93, 0x95, 0x97):
            level = (cmd[0] - 0x93) // 2
            if level < len(levels) and cmd[2:] == levels[level]:
                more = level + 1 < len(levels)
                answer = bytes((0x04 if more else 0x00,))
        if answer is not None and self._transport is not None:
            self._transport.sendto(b"106A " + hexlify(answer), addr)
