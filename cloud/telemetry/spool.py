"""An on-disk spool of line-protocol batches: a directory of segment files.

Each segment is one batch, written to a temporary name then renamed, so a reader
never sees half a segment. Segments are sent oldest first and deleted once
InfluxDB acknowledged them; whatever is left when the process stops is picked up
by the next writer on the same directory. Lines InfluxDB refuses go to
`quarantine/` with the reason beside them, for an operator to look at.

One writer process per directory: `open()` takes an exclusive lock on it (two
processes appending would race on segment numbers).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from kickstand.cloud.telemetry.errors import SpoolLockedError

log = logging.getLogger("kickstand.cloud.telemetry.spool")

_SUFFIX = ".lp"


@dataclass(frozen=True, slots=True)
class Segment:
    seq: int
    path: Path
    points: int


class Spool:
    def __init__(self, directory: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.directory = Path(directory)
        self.quarantine_dir = self.directory / "quarantine"
        self._fsync = fsync
        self.directory.mkdir(parents=True, exist_ok=True)
        self.quarantine_dir.mkdir(exist_ok=True)
        self._segments: deque[Segment] = deque()
        self._points = 0
        self._next_seq = 1
        self._quarantine_seq = 0
        self._lock_handle: IO[str] | None = None

    def open(self) -> None:
        """Take the directory for this process (raises `SpoolLockedError` if another
        writer has it) and pick up the segments a previous writer left."""
        if self._lock_handle is not None:
            return
        handle = open(self.directory / ".lock", "a", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            raise SpoolLockedError(str(self.directory)) from exc
        self._lock_handle = handle
        for leftover in self.directory.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)  # a crash mid-write: never renamed, never acked
        found: list[Segment] = []
        for path in self.directory.glob(f"*{_SUFFIX}"):
            try:
                seq = int(path.stem)
            except ValueError:
                log.warning("spool_unknown_file path=%s", path)
                continue
            try:
                count = path.read_bytes().count(b"\n")
            except OSError:
                count = 0
            found.append(Segment(seq, path, count))
        found.sort(key=lambda s: s.seq)
        self._segments = deque(found)
        self._points = sum(s.points for s in found)
        self._next_seq = found[-1].seq + 1 if found else 1
        if found:
            log.info("spool_resumed dir=%s segments=%d points=%d", self.directory, len(found),
                     self._points)

    def close(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.close()  # releases the flock
            self._lock_handle = None

    def __len__(self) -> int:
        return len(self._segments)

    @property
    def points(self) -> int:
        return self._points

    def append(self, lines: list[str]) -> Segment:
        """Store a batch as a new segment (raises OSError if the disk refuses)."""
        seq = self._next_seq
        self._next_seq += 1
        path = self.directory / f"{seq:012d}{_SUFFIX}"
        self._write_atomic(path, lines)
        segment = Segment(seq, path, len(lines))
        self._segments.append(segment)
        self._points += segment.points
        return segment

    def oldest(self) -> Segment | None:
        return self._segments[0] if self._segments else None

    def oldest_segments(self, max_points: int) -> list[Segment]:
        """The oldest segments holding together at most `max_points` points (at
        least one segment when any)."""
        chosen: list[Segment] = []
        total = 0
        for segment in self._segments:
            if chosen and total + segment.points > max_points:
                break
            chosen.append(segment)
            total += segment.points
        return chosen

    def read(self, segment: Segment) -> list[str]:
        return self._read(segment.path)

    def remove(self, segment: Segment) -> None:
        segment.path.unlink(missing_ok=True)
        try:
            self._segments.remove(segment)
            self._points -= segment.points
        except ValueError:
            pass

    def replace(self, segment: Segment, lines: list[str]) -> Segment:
        """Keep only `lines` of a segment (the part not yet delivered)."""
        self._write_atomic(segment.path, lines)
        updated = Segment(segment.seq, segment.path, len(lines))
        index = self._segments.index(segment)
        self._segments[index] = updated
        self._points += updated.points - segment.points
        return updated

    def quarantine(self, lines: list[str], reason: str) -> Path:
        self._quarantine_seq += 1
        stem = f"{time.time_ns()}-{os.getpid()}-{self._quarantine_seq}"
        path = self.quarantine_dir / f"{stem}{_SUFFIX}"
        self._write_atomic(path, lines)
        (self.quarantine_dir / f"{stem}.reason").write_text(reason + "\n", encoding="utf-8")
        return path

    def quarantine_segment(self, segment: Segment, reason: str) -> None:
        """Move a whole segment (e.g. unreadable) aside, out of the send queue."""
        self._quarantine_seq += 1
        stem = f"{time.time_ns()}-{os.getpid()}-{self._quarantine_seq}"
        with contextlib.suppress(OSError):
            os.replace(segment.path, self.quarantine_dir / f"{stem}{_SUFFIX}")
            (self.quarantine_dir / f"{stem}.reason").write_text(reason + "\n", encoding="utf-8")
        self.remove(segment)

    def quarantined_files(self) -> list[Path]:
        return sorted(self.quarantine_dir.glob(f"*{_SUFFIX}"))

    def _write_atomic(self, path: Path, lines: list[str]) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        data = "".join(line + "\n" for line in lines).encode("utf-8")
        with open(tmp, "wb") as handle:
            handle.write(data)
            if self._fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)

    @staticmethod
    def _read(path: Path) -> list[str]:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [line for line in text.split("\n") if line]
