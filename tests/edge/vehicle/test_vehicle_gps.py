"""NMEA framing, checksums, GGA/RMC parsing and the fix filter, byte for byte."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kickstand.edge.transports.gps import (
    FixFilter,
    GpsReceiver,
    LineFramer,
    NmeaParser,
    Rmc,
    distance_m,
    gga_sentence,
    nmea_checksum,
    rmc_sentence,
)

# A real receiver's output (u-blox, NMEA 0183 v4.1), checksums as sent.
REAL_GGA = b"$GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,*76\r\n"
REAL_RMC = b"$GPRMC,092750.000,A,5321.6802,N,00630.3372,W,0.02,31.66,280511,,,A*43\r\n"


def receiver(**kwargs: Any) -> GpsReceiver:
    """A receiver that trusts the first good fix (parsing tests; cold start is tested apart)."""
    return GpsReceiver(fix_filter=FixFilter(confirm_first=1), **kwargs)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_checksum_of_a_real_sentence() -> None:
    assert nmea_checksum("GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,") \
        == 0x76


def test_real_sentences_make_one_fix() -> None:
    rx = receiver()
    fixes = rx.feed(REAL_RMC + REAL_GGA)
    assert len(fixes) == 1
    fix = fixes[0]
    assert fix.lat == pytest.approx(53.361337, abs=1e-6)
    assert fix.lon == pytest.approx(-6.505620, abs=1e-6)
    assert fix.satellites == 8 and fix.quality == 1 and fix.hdop == pytest.approx(1.03)
    assert fix.speed_kmh == pytest.approx(0.02 * 1.852)
    assert fix.heading_deg == pytest.approx(31.66)
    assert rx.stats.sentences == 2 and rx.stats.checksum_errors == 0


def test_bad_checksum_garbage_and_overlong_lines_are_counted_and_dropped() -> None:
    rx = receiver()
    bad = REAL_GGA.replace(b"*76", b"*77")
    noise = bytes(b for b in range(256) if b != 10)[:60] + b"\n"
    overlong = b"$GPGGA," + b"1" * 300 + b"\r\n"
    not_a_frame = b"hello world\r\n$GPGGA,no star\r\n$GPRMC,x*ZZ\r\n"
    assert rx.feed(bad + noise + overlong + not_a_frame) == []
    stats = rx.stats
    assert stats.checksum_errors == 1
    assert stats.overlong >= 1
    assert stats.malformed == 4  # the control-character line and the three non-frames
    assert stats.fixes_accepted == 0
    # the stream is still in sync afterwards
    assert len(rx.feed(REAL_RMC + REAL_GGA)) == 1


def test_sentence_split_across_reads_and_noise_before_dollar() -> None:
    rx = receiver()
    data = b"\x00\x13" + REAL_RMC + REAL_GGA
    fixes = []
    for i in range(0, len(data), 7):
        fixes += rx.feed(data[i : i + 7])
    assert len(fixes) == 1


@pytest.mark.parametrize(
    ("quality", "satellites", "hdop"),
    [(0, 9, 0.9), (1, 3, 0.9), (1, 9, 7.5)],
    ids=["no-fix", "few-satellites", "high-hdop"],
)
def test_poor_fixes_are_filtered(quality: int, satellites: int, hdop: float) -> None:
    rx = receiver()
    s = gga_sentence(3600, 45.76, 4.83, quality=quality, satellites=satellites, hdop=hdop)
    assert rx.feed(s.encode()) == []
    assert rx.stats.rejected_quality == 1


def test_rmc_void_status_invalidates_the_fix() -> None:
    rx = receiver()
    data = rmc_sentence(3600, 45.76, 4.83, speed_kmh=0, course_deg=0, valid=False) + \
        gga_sentence(3600, 45.76, 4.83)
    assert rx.feed(data.encode()) == []


def test_teleport_is_filtered_and_the_track_continues() -> None:
    clock = Clock()
    rx = receiver(clock=clock)
    lat, lon = 45.7640, 4.8357
    assert rx.feed(gga_sentence(0, lat, lon).encode())
    clock.t += 1
    # 50 km away one second later: 180,000 km/h
    assert rx.feed(gga_sentence(1, lat + 0.45, lon).encode()) == []
    clock.t += 1
    assert rx.feed(gga_sentence(2, lat + 0.00005, lon).encode())
    assert rx.stats.rejected_jump == 1
    assert rx.latest is not None and rx.latest.lat == pytest.approx(lat + 0.00005, abs=1e-6)


def test_consistent_new_place_is_adopted_after_a_while() -> None:
    """A vehicle carried away on a truck with the receiver off must not be stuck for ever."""
    clock = Clock()
    rx = GpsReceiver(fix_filter=FixFilter(reanchor_after=5, confirm_first=1), clock=clock)
    rx.feed(gga_sentence(0, 45.0, 4.0).encode())
    accepted = []
    for i in range(1, 8):
        clock.t += 1
        accepted += rx.feed(gga_sentence(i, 46.0 + i * 1e-5, 4.0).encode())
    assert rx.filter.reanchored == 1
    assert accepted and accepted[0].lat == pytest.approx(46.0 + 5e-5, abs=1e-6)


def test_a_glitch_at_cold_start_does_not_become_the_reference() -> None:
    clock = Clock()
    rx = GpsReceiver(clock=clock)  # confirm_first=2
    lat, lon = 45.7640, 4.8357
    assert rx.feed(gga_sentence(0, 48.8566, 2.3522).encode()) == []  # Paris, alone
    clock.t += 1
    assert rx.feed(gga_sentence(1, lat, lon).encode()) == []  # disagrees: start over
    clock.t += 1
    fixes = rx.feed(gga_sentence(2, lat + 0.00002, lon).encode())
    assert len(fixes) == 1 and fixes[0].lat == pytest.approx(lat + 0.00002, abs=1e-6)
    clock.t += 1
    assert rx.feed(gga_sentence(3, 48.8566, 2.3522).encode()) == []
    assert rx.stats.rejected_jump == 2


def test_line_framer_bounds_memory() -> None:
    framer = LineFramer(max_line=16)
    assert framer.feed(b"x" * 10_000) == []
    assert len(framer._buf) <= 16
    assert framer.feed(b"\nok\n") == ["ok"]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_parser_never_raises(data: bytes) -> None:
    parser = NmeaParser()
    parser.feed(data)
    parser.feed(REAL_RMC)
    assert isinstance(parser.feed(REAL_GGA)[0], object)


@settings(max_examples=100, deadline=None)
@given(
    st.floats(-89.9, 89.9),
    st.floats(-179.9, 179.9),
    st.floats(0, 120),
    st.floats(0, 359.9),
)
def test_formatting_round_trips(lat: float, lon: float, speed: float, course: float) -> None:
    parser = NmeaParser()
    (rmc,) = parser.feed(rmc_sentence(100.0, lat, lon, speed_kmh=speed, course_deg=course).encode())
    assert isinstance(rmc, Rmc)
    assert rmc.lat is not None and rmc.lon is not None
    assert distance_m(lat, lon, rmc.lat, rmc.lon) < 0.5
    assert rmc.speed_kmh == pytest.approx(speed, abs=0.02)
