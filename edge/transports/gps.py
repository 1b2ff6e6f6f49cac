"""GPS receiver: NMEA 0183 over a serial line.

Layers, as nfcpy does it: bytes from the UART → :class:`LineFramer` (bounded
lines, garbage counted) → :class:`NmeaParser` (``$…*hh`` framing, checksum,
GGA/RMC fields) → :class:`FixFilter` (poor quality and impossible jumps
dropped) → :class:`GpsReceiver`, which an agent reads fixes from.

Nothing here raises on bad input: every rejected byte, sentence or fix is
counted in :class:`GpsStats` and logged at debug level.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger("kickstand.edge.transports.gps")

MAX_SENTENCE = 82  # NMEA 0183: at most 82 characters including "$" and CR LF
KNOTS_TO_KMH = 1.852
EARTH_RADIUS_M = 6_371_008.8


# ------------------------------------------------------------------ line framing


@dataclass(slots=True)
class LineFramer:
    """Split a byte stream into lines (LF or CR LF), never holding more than ``max_line``.

    Shared by the line-oriented vehicle peripherals (GPS, PIN pad, motion sensor).
    An overlong line is dropped up to its end and counted; so is non-ASCII noise.
    """

    max_line: int = MAX_SENTENCE
    lines: int = 0
    overlong: int = 0
    bytes_discarded: int = 0
    _buf: bytearray = field(default_factory=bytearray)
    _skipping: bool = False

    def feed(self, data: bytes) -> list[str]:
        out: list[str] = []
        buf = self._buf
        start = 0
        while True:
            end = data.find(b"\n", start)
            piece = data[start:] if end < 0 else data[start:end]
            if self._skipping:
                self.bytes_discarded += len(piece)
            else:
                room = self.max_line - len(buf)
                if len(piece) > room:
                    self.overlong += 1
                    self.bytes_discarded += len(buf) + len(piece)
                    buf.clear()
                    self._skipping = True
                else:
                    buf.extend(piece)
            if end < 0:
                break
            # a line end: emit what was gathered (unless it was overlong)
            if not self._skipping:
                raw = bytes(buf).rstrip(b"\r")
                try:
                    text = raw.decode("ascii")
                except UnicodeDecodeError:
                    self.bytes_discarded += len(raw)
                else:
                    if text:
                        self.lines += 1
                        out.append(text)
            buf.clear()
            self._skipping = False
            start = end + 1
        return out


# ------------------------------------------------------------------ sentences


def nmea_checksum(body: str) -> int:
    """XOR of every character between "$" and "*"."""
    value = 0
    for char in body.encode("ascii"):
        value ^= char
    return value


def nmea_sentence(body: str) -> str:
    """``body`` (without "$") framed as a full sentence with checksum and CR LF."""
    return f"${body}*{nmea_checksum(body):02X}\r\n"


@dataclass(frozen=True, slots=True)
class Gga:
    """Global positioning system fix data."""

    time_s: float | None  # UTC seconds since midnight
    lat: float | None
    lon: float | None
    quality: int  # 0 = no fix, 1 = GPS, 2 = DGPS, 4/5 = RTK, 6 = dead reckoning
    satellites: int
    hdop: float | None
    altitude_m: float | None


@dataclass(frozen=True, slots=True)
class Rmc:
    """Recommended minimum data: validity, speed over ground, course."""

    time_s: float | None
    valid: bool  # status "A"
    lat: float | None
    lon: float | None
    speed_kmh: float | None
    course_deg: float | None


Sentence = Gga | Rmc


class NmeaError(ValueError):
    """A sentence whose fields cannot be read (counted, never propagated by the parser)."""


def _coord(value: str, hemi: str, degree_digits: int) -> float | None:
    if not value and not hemi:
        return None
    if len(value) < degree_digits + 2 or hemi not in ("N", "S", "E", "W"):
        raise NmeaError(f"coordinate {value!r} {hemi!r}")
    try:
        degrees = int(value[:degree_digits])
        minutes = float(value[degree_digits:])
    except ValueError:
        raise NmeaError(f"coordinate {value!r}") from None
    if not 0 <= minutes < 60:
        raise NmeaError(f"minutes {minutes} out of range")
    result = degrees + minutes / 60
    limit = 90 if degree_digits == 2 else 180
    if result > limit:
        raise NmeaError(f"coordinate {result} out of range")
    return -result if hemi in ("S", "W") else result


def _time(value: str) -> float | None:
    if not value:
        return None
    try:
        hh, mm, ss = int(value[0:2]), int(value[2:4]), float(value[4:])
    except ValueError:
        raise NmeaError(f"time {value!r}") from None
    if hh > 23 or mm > 59 or not 0 <= ss < 61:
        raise NmeaError(f"time {value!r} out of range")
    return hh * 3600 + mm * 60 + ss


def _float(value: str) -> float | None:
    if not value:
        return None
    try:
        result = float(value)
    except ValueError:
        raise NmeaError(f"number {value!r}") from None
    if not math.isfinite(result):
        raise NmeaError(f"number {value!r}")
    return result


def _int(value: str, default: int = 0) -> int:
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise NmeaError(f"integer {value!r}") from None


def parse_gga(fields: list[str]) -> Gga:
    # GGA,time,lat,N,lon,E,quality,sats,hdop,alt,M,geoid,M,age,station
    if len(fields) < 10:
        raise NmeaError(f"GGA with {len(fields)} fields")
    return Gga(
        time_s=_time(fields[1]),
        lat=_coord(fields[2], fields[3], 2),
        lon=_coord(fields[4], fields[5], 3),
        quality=_int(fields[6]),
        satellites=_int(fields[7]),
        hdop=_float(fields[8]),
        altitude_m=_float(fields[9]),
    )


def parse_rmc(fields: list[str]) -> Rmc:
    # RMC,time,status,lat,N,lon,E,speed_kn,course,date,magvar,E[,mode]
    if len(fields) < 10:
        raise NmeaError(f"RMC with {len(fields)} fields")
    speed_kn = _float(fields[7])
    return Rmc(
        time_s=_time(fields[1]),
        valid=fields[2] == "A",
        lat=_coord(fields[3], fields[4], 2),
        lon=_coord(fields[5], fields[6], 3),
        speed_kmh=None if speed_kn is None else speed_kn * KNOTS_TO_KMH,
        course_deg=_float(fields[8]),
    )


_PARSERS: dict[str, Callable[[list[str]], Sentence]] = {"GGA": parse_gga, "RMC": parse_rmc}


@dataclass(slots=True)
class NmeaParser:
    """Bytes in, checked GGA / RMC sentences out. Talker ids (GP, GN, GL…) are all accepted."""

    framer: LineFramer = field(default_factory=LineFramer)
    sentences: int = 0
    checksum_errors: int = 0
    malformed: int = 0  # no "$…*hh" frame, or fields that do not parse
    unsupported: int = 0  # well-formed sentences of other types (GSV, VTG…)

    def feed(self, data: bytes) -> list[Sentence]:
        out: list[Sentence] = []
        for line in self.framer.feed(data):
            sentence = self.parse_line(line)
            if sentence is not None:
                out.append(sentence)
        return out

    def parse_line(self, line: str) -> Sentence | None:
        start = line.rfind("$")  # noise before the "$" is skipped
        star = line.rfind("*")
        if start < 0 or star < start or len(line) - star != 3:
            self.malformed += 1
            log.debug("nmea_malformed line=%r", line[:40])
            return None
        body = line[start + 1 : star]
        try:
            expected = int(line[star + 1 :], 16)
        except ValueError:
            self.malformed += 1
            return None
        if nmea_checksum(body) != expected:
            self.checksum_errors += 1
            log.debug("nmea_bad_checksum line=%r", line[:40])
            return None
        fields = body.split(",")
        kind = fields[0][2:] if len(fields[0]) == 5 else ""
        parser = _PARSERS.get(kind)
        if parser is None:
            self.unsupported += 1
            return None
        try:
            sentence = parser(fields)
        except NmeaError as exc:
            self.malformed += 1
            log.debug("nmea_bad_fields kind=%s reason=%s", kind, exc)
            return None
        self.sentences += 1
        return sentence


# ------------------------------------------------------------------ fixes


@dataclass(frozen=True, slots=True)
class Fix:
    lat: float
    lon: float
    speed_kmh: float | None
    heading_deg: float | None
    hdop: float | None
    satellites: int
    quality: int
    monotonic_s: float  # when it was received, on the agent's monotonic clock
    utc_time_s: float | None = None  # seconds since UTC midnight, from the receiver


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(slots=True)
class FixFilter:
    """Drops fixes a rider must not be billed or located by.

    Poor quality: no fix (quality 0), HDOP above ``max_hdop``, fewer than
    ``min_satellites``. Impossible jumps: the speed implied by the distance from
    the last accepted fix is above ``max_speed_kmh`` (plus ``slack_m`` for the
    receiver's own noise). A vehicle really carried far away while the receiver
    was off would be stuck behind that rule, so ``reanchor_after`` consecutive
    rejected fixes that agree with each other become the new reference. The very
    first reference is not one lone fix either (a glitch at start would then hold
    the real track off): ``confirm_first`` consecutive fixes must agree.
    """

    max_hdop: float = 5.0
    min_satellites: int = 4
    max_speed_kmh: float = 80.0
    slack_m: float = 30.0
    reanchor_after: int = 10
    confirm_first: int = 2
    accepted: int = 0
    rejected_quality: int = 0
    rejected_jump: int = 0
    reanchored: int = 0
    last: Fix | None = None
    _suspects: list[Fix] = field(default_factory=list)

    def quality_ok(self, fix: Fix) -> bool:
        if fix.quality == 0 or fix.satellites < self.min_satellites:
            return False
        return fix.hdop is None or fix.hdop <= self.max_hdop

    def _plausible(self, a: Fix, b: Fix) -> bool:
        dt = max(b.monotonic_s - a.monotonic_s, 0.001)
        dist = max(distance_m(a.lat, a.lon, b.lat, b.lon) - self.slack_m, 0.0)
        return dist / dt * 3.6 <= self.max_speed_kmh

    def accept(self, fix: Fix) -> bool:
        if not self.quality_ok(fix):
            self.rejected_quality += 1
            log.debug("gps_fix_poor quality=%s sats=%s hdop=%s", fix.quality, fix.satellites,
                      fix.hdop)
            return False
        if self.last is None:
            if self._suspects and not self._plausible(self._suspects[-1], fix):
                self.rejected_jump += 1
                self._suspects.clear()
            self._suspects.append(fix)
            if len(self._suspects) < self.confirm_first:
                return False
        elif not self._plausible(self.last, fix):
            self.rejected_jump += 1
            log.info("gps_fix_jump lat=%.6f lon=%.6f from_lat=%.6f from_lon=%.6f",
                     fix.lat, fix.lon, self.last.lat, self.last.lon)
            if self._suspects and not self._plausible(self._suspects[-1], fix):
                self._suspects.clear()
            self._suspects.append(fix)
            if len(self._suspects) < self.reanchor_after:
                return False
            self.reanchored += 1
            log.warning("gps_reanchor lat=%.6f lon=%.6f", fix.lat, fix.lon)
        self._suspects.clear()
        self.last = fix
        self.accepted += 1
        return True


@dataclass(slots=True)
class GpsStats:
    sentences: int = 0
    checksum_errors: int = 0
    malformed: int = 0
    unsupported: int = 0
    bytes_discarded: int = 0
    overlong: int = 0
    fixes_accepted: int = 0
    rejected_quality: int = 0
    rejected_jump: int = 0


class ByteSource(Protocol):
    """What the receiver reads from: a serial port (kickstand.edge.transports), a pty, a test."""

    async def read(self, n: int = ...) -> bytes: ...


class GpsReceiver:
    """Turns an NMEA byte stream into filtered :class:`Fix` objects.

    ``feed()`` is synchronous (for tests and for any transport); ``run(source)``
    reads a :class:`ByteSource` until cancelled or end of stream and calls
    ``on_fix`` for each accepted fix. ``latest`` is the last accepted fix.
    """

    def __init__(
        self,
        fix_filter: FixFilter | None = None,
        on_fix: Callable[[Fix], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.parser = NmeaParser()
        self.filter = fix_filter or FixFilter()
        self.on_fix = on_fix
        self.latest: Fix | None = None
        self._clock = clock
        self._rmc: Rmc | None = None

    @property
    def stats(self) -> GpsStats:
        p, f = self.parser, self.filter
        return GpsStats(
            sentences=p.sentences,
            checksum_errors=p.checksum_errors,
            malformed=p.malformed,
            unsupported=p.unsupported,
            bytes_discarded=p.framer.bytes_discarded,
            overlong=p.framer.overlong,
            fixes_accepted=f.accepted,
            rejected_quality=f.rejected_quality,
            rejected_jump=f.rejected_jump,
        )

    def feed(self, data: bytes) -> list[Fix]:
        fixes: list[Fix] = []
        for sentence in self.parser.feed(data):
            fix = self._combine(sentence)
            if fix is not None and self.filter.accept(fix):
                self.latest = fix
                fixes.append(fix)
                if self.on_fix is not None:
                    self.on_fix(fix)
        return fixes

    def _combine(self, sentence: Sentence) -> Fix | None:
        """GGA carries the quality; RMC of the same second adds speed and course."""
        if isinstance(sentence, Rmc):
            self._rmc = sentence
            return None
        gga = sentence
        if gga.lat is None or gga.lon is None:
            if gga.quality != 0:
                self.filter.rejected_quality += 1
                return None
            gga = Gga(gga.time_s, 0.0, 0.0, 0, gga.satellites, gga.hdop, gga.altitude_m)
        rmc = self._rmc
        speed = course = None
        if rmc is not None and rmc.time_s == gga.time_s:
            if not rmc.valid:
                gga = Gga(gga.time_s, gga.lat, gga.lon, 0, gga.satellites, gga.hdop,
                          gga.altitude_m)
            speed, course = rmc.speed_kmh, rmc.course_deg
        assert gga.lat is not None and gga.lon is not None
        return Fix(
            lat=gga.lat,
            lon=gga.lon,
            speed_kmh=speed,
            heading_deg=course,
            hdop=gga.hdop,
            satellites=gga.satellites,
            quality=gga.quality,
            monotonic_s=self._clock(),
            utc_time_s=gga.time_s,
        )

    async def run(self, source: ByteSource) -> None:
        while True:
            data = await source.read(256)
            if not data:
                log.warning("gps_stream_closed")
                return
            self.feed(data)

    async def fixes(self, source: ByteSource) -> AsyncIterator[Fix]:
        """``async for fix in receiver.fixes(port)`` — the same as run() with a queue."""
        queue: asyncio.Queue[Fix] = asyncio.Queue(maxsize=64)
        previous = self.on_fix

        def push(fix: Fix) -> None:
            if previous is not None:
                previous(fix)
            if queue.full():
                queue.get_nowait()  # keep the freshest positions
            queue.put_nowait(fix)

        self.on_fix = push
        task = asyncio.create_task(self.run(source))
        try:
            while not (task.done() and queue.empty()):
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield getter.result()
                else:
                    getter.cancel()
        finally:
            task.cancel()
            self.on_fix = previous


# ------------------------------------------------------------------ encoding (simulators)


def format_coord(value: float, is_lat: bool) -> tuple[str, str]:
    hemi = ("N" if value >= 0 else "S") if is_lat else ("E" if value >= 0 else "W")
    value = abs(value)
    degrees = int(value)
    minutes = (value - degrees) * 60
    if round(minutes, 5) >= 60:
        degrees, minutes = degrees + 1, 0.0
    digits = 2 if is_lat else 3
    return f"{degrees:0{digits}d}{minutes:08.5f}", hemi


def format_time(utc_s: float) -> str:
    utc_s %= 86400
    hh, rem = divmod(utc_s, 3600)
    mm, ss = divmod(rem, 60)
    return f"{int(hh):02d}{int(mm):02d}{ss:05.2f}"


def gga_sentence(
    utc_s: float, lat: float, lon: float, *, quality: int = 1, satellites: int = 9,
    hdop: float = 0.9, altitude_m: float = 170.0, talker: str = "GP",
) -> str:
    la, ns = format_coord(lat, True)
    lo, ew = format_coord(lon, False)
    body = (f"{talker}GGA,{format_time(utc_s)},{la},{ns},{lo},{ew},{quality},{satellites:02d},"
            f"{hdop:.1f},{altitude_m:.1f},M,47.0,M,,")
    return nmea_sentence(body)


def rmc_sentence(
    utc_s: float, lat: float, lon: float, *, speed_kmh: float, course_deg: float,
    valid: bool = True, date: str = "211126", talker: str = "GP",
) -> str:
    la, ns = format_coord(lat, True)
    lo, ew = format_coord(lon, False)
    body = (f"{talker}RMC,{format_time(utc_s)},{'A' if valid else 'V'},{la},{ns},{lo},{ew},"
            f"{speed_kmh / KNOTS_TO_KMH:.2f},{course_deg:.1f},{date},,,A")
    return nmea_sentence(body)
