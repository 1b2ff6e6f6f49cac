"""Spot-bus framing, byte for byte."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kickstand.protocol import spotbus as sb
from kickstand.protocol.errors import FrameError
from kickstand.protocol.jsonform import load_vector_file, to_jsonable


def test_crc16_modbus_check_value() -> None:
    assert sb.crc16(b"123456789") == 0x4B37  # the catalogued check value of CRC-16/MODBUS


def test_get_status_request_bytes() -> None:
    assert sb.request(3, sb.Cmd.GET_STATUS).encode() == bytes.fromhex("a5030100" + "8050")


def test_status_response_bytes() -> None:
    req = sb.request(3, sb.Cmd.GET_STATUS)
    report = sb.SpotReport(sb.BusLock.LOCKED, True, 21.5, "AB12345")
    frame = sb.response(req, report.to_payload()).encode()
    assert frame.hex() == "a503810d0001d700010741423132333435bb2c"
    (parsed,) = sb.FrameParser().feed(frame)
    assert parsed.is_response and not parsed.is_error and parsed.request_cmd == sb.Cmd.GET_STATUS
    assert sb.SpotReport.from_payload(parsed.payload) == report


def test_error_response() -> None:
    frame = sb.error_response(sb.request(9, sb.Cmd.FW_COMMIT), sb.BusError.CHECKSUM_MISMATCH)
    (parsed,) = sb.FrameParser().feed(frame.encode())
    assert parsed.is_error and parsed.payload == bytes([sb.BusError.CHECKSUM_MISMATCH])


def test_parser_resyncs_after_garbage_and_corruption() -> None:
    good = sb.request(4, sb.Cmd.LOCK).encode()
    corrupt = bytearray(good)
    corrupt[-1] ^= 0xFF
    parser = sb.FrameParser()
    frames = parser.feed(b"\x00\xa5\xa5noise" + bytes(corrupt) + good)
    assert frames == [sb.Frame(4, sb.Cmd.LOCK, b"")]
    assert parser.crc_errors >= 1 and parser.bytes_discarded > 0


def test_frames_split_across_reads() -> None:
    data = sb.request(7, sb.Cmd.GET_INFO).encode() + sb.request(8, sb.Cmd.GET_INFO).encode()
    parser = sb.FrameParser()
    out = [f for b in data for f in parser.feed(bytes([b]))]
    assert [f.addr for f in out] == [7, 8]


def test_payload_limits() -> None:
    with pytest.raises(FrameError):
        sb.Frame(1, 1, bytes(65)).encode()
    with pytest.raises(FrameError):
        sb.Frame(248, 1).encode()
    with pytest.raises(FrameError):
        sb.SpotReport.from_payload(b"\x00\x01")
    with pytest.raises(FrameError):
        sb.BoardInfo.from_payload(b"\x05ab")


def test_board_info_round_trip() -> None:
    info = sb.BoardInfo("2.1.0", "sb-r4")
    assert sb.BoardInfo.from_payload(info.to_payload()) == info


frames = st.builds(sb.Frame, st.integers(0, 247), st.integers(0, 255), st.binary(max_size=64))


@given(st.lists(st.tuples(frames, st.binary(max_size=20)), max_size=20))
def test_every_frame_survives_interleaved_garbage(items: list[tuple[sb.Frame, bytes]]) -> None:
    """Garbage without a SOF byte between frames never hides a frame."""
    parser = sb.FrameParser()
    stream = b"".join(f.encode() + g.replace(b"\xa5", b"") for f, g in items)
    assert parser.feed(stream) == [f for f, _ in items]


@given(st.binary(max_size=2000))
def test_random_bytes_never_raise_and_buffer_stays_bounded(data: bytes) -> None:
    parser = sb.FrameParser()
    parser.feed(data)
    assert len(parser._buf) < sb.OVERHEAD + sb.MAX_PAYLOAD


# The spot-bus vectors (SPEC §9, §11): what a board's firmware must write and read.

SPOTBUS = load_vector_file()["spotbus"]


@pytest.mark.parametrize("vec", [v for v in SPOTBUS if "frame" in v], ids=lambda v: v["name"])
def test_valid_frame_vectors(vec: dict[str, Any]) -> None:
    data = bytes.fromhex(vec["hex"])
    f = vec["frame"]
    frame = sb.Frame(f["addr"], f["cmd"], bytes.fromhex(f["payload"]))
    assert frame.encode() == data
    parser = sb.FrameParser()
    assert parser.feed(data) == [frame]
    assert (parser.crc_errors, parser.bytes_discarded) == (0, 0)
    meaning = sb.read_answer(frame)
    assert (to_jsonable(meaning) if meaning is not None else None) == vec.get("meaning")


@pytest.mark.parametrize("vec", [v for v in SPOTBUS if not v["valid"]], ids=lambda v: v["name"])
def test_invalid_frame_vectors_are_skipped_or_unreadable(vec: dict[str, Any]) -> None:
    assert vec["error"] == "bad-frame"
    parser = sb.FrameParser()
    frames = parser.feed(bytes.fromhex(vec["hex"]))
    if vec["reason"] == "payload":  # well framed: the reader refuses what it says
        (frame,) = frames
        with pytest.raises(FrameError):
            sb.read_answer(frame)
    else:
        assert frames == []
        assert parser.bytes_discarded > 0
        assert (parser.crc_errors > 0) == (vec["reason"] == "crc")


def test_stream_vector_resynchronises() -> None:
    for vec in (v for v in SPOTBUS if "frames" in v):
        parser = sb.FrameParser()
        frames = parser.feed(bytes.fromhex(vec["hex"]))
        assert [f.encode().hex() for f in frames] == vec["frames"]
        assert parser.crc_errors == vec["crc_errors"]
