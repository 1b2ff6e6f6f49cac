"""The NFC badge peer against the real nfcpy udp driver (through the agent's reader)."""

from __future__ import annotations

import asyncio

import pytest

from kickstand.edge.transports import open_badge_reader
from kickstand.edge.transports.nfc import NfcpyBadgeReader
from kickstand.simulators.nfc import BadgeTagPeer, _cascade


def test_cascade_levels_carry_bcc() -> None:
    bcc = 0x04 ^ 0xA1 ^ 0xB2 ^ 0xC3
    assert _cascade(bytes.fromhex("04a1b2c3")) == [bytes.fromhex("04a1b2c3") + bytes([bcc])]
    levels = _cascade(bytes.fromhex("04112233445566"))
    assert levels[0][:4] == bytes.fromhex("88041122") and len(levels) == 2
    with pytest.raises(ValueError):
        _cascade(b"\x01\x02")


async def test_reader_reads_4_7_10_byte_uids() -> None:
    peer = BadgeTagPeer()
    await peer.start()
    reader = open_badge_reader(peer.path)
    assert isinstance(reader, NfcpyBadgeReader)
    await reader.start()
    badges = reader.badges()
    try:
        for uid in ("04a1b2c3", "04112233445566", "0102030405060708090a"):
            peer.present(bytes.fromhex(uid))
            async with asyncio.timeout(5):
                assert (await anext(badges)).hex() == uid
        # one presentation is one read (debounced)
        assert reader.reads == 3
    finally:
        await reader.close()
        await peer.stop()
