"""The badge reader's liveness and its failures, against nfcpy's real udp driver: a reader
that cannot open, one that polls and hears nothing, one whose answers break nfcpy (each a
failure, logged once per log_every_s however often it happens)."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import pytest

from kickstand.edge.transports import open_badge_reader
from kickstand.edge.transports.nfc import NfcpyBadgeReader
from kickstand.simulators.nfc import BadgeTagPeer


class _BrokenPeer(asyncio.DatagramProtocol):
    """Answers every poll with a frame nfcpy's udp driver cannot decode (not hex)."""

    transport: asyncio.DatagramTransport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(b"106A zz", addr)


async def test_a_reader_that_cannot_open_says_why() -> None:
    reader = open_badge_reader("udp:no-such-host.invalid:1")
    with pytest.raises(Exception, match="cannot open reader"):
        await reader.start()
    seen = reader.liveness()
    assert seen["state"] == "unavailable" and seen["polls"] == 0
    assert "cannot open reader" in seen["last_error"] and seen["last_error_age_s"] is not None


async def test_a_silent_peer_still_polls() -> None:
    peer = BadgeTagPeer()
    await peer.start()
    reader = NfcpyBadgeReader(peer.path)
    await reader.start()
    try:
        badges = reader.badges()
        peer.present(bytes.fromhex("04a1b2c3"))
        async with asyncio.timeout(5):
            await anext(badges)
        await peer.stop()  # nothing answers any more: a dead field
        await asyncio.sleep(2.5)
        seen = reader.liveness()
        assert seen["state"] == "polling" and seen["polls"] >= 3
        assert (seen["reads"], seen["errors"]) == (1, 0)
        assert seen["last_poll_age_s"] < 1.5 and seen["last_read_age_s"] >= 2.0
    finally:
        await reader.close()
    assert reader.liveness()["state"] == "closed"


async def test_failures_are_counted_and_logged_once_per_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        _BrokenPeer, local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    reader = NfcpyBadgeReader(f"udp:127.0.0.1:{port}", log_every_s=60.0)
    caplog.set_level(logging.WARNING, logger="kickstand.edge.transports.nfc")
    await reader.start()
    try:
        await asyncio.sleep(2.6)  # an error, a second's pause, another, …
        seen = reader.liveness()
        assert seen["errors"] >= 2 and seen["reads"] == 0
        assert seen["last_error"] and seen["last_error_age_s"] < 1.5
    finally:
        await reader.close()
        transport.close()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("nfc_error")]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"nfc_error path=udp:127.0.0.1:{port} errors=1 held_back=0 ")
