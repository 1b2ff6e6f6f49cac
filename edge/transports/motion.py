"""Motion sensor (accelerometer / tilt / tamper switch): one ASCII line per event.

Wire (serial; a pseudo terminal with the simulator)::

    MOT LIFTED | MOT FALLEN | MOT MOVING | MOT STILL | MOT DISMANTLING

The sensor reports what it feels; the agent decides what it means (moving
while locked is ``ILLEGAL_MOVING``, moving while unlocked is a ride).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from kickstand.edge.transports.gps import ByteSource, LineFramer

log = logging.getLogger("kickstand.edge.transports.motion")


class Sensed(Enum):
    LIFTED = "LIFTED"
    FALLEN = "FALLEN"
    MOVING = "MOVING"
    STILL = "STILL"
    DISMANTLING = "DISMANTLING"


def motion_line(sensed: Sensed) -> bytes:
    return f"MOT {sensed.value}\n".encode("ascii")


@dataclass(slots=True)
class MotionSensor:
    on_motion: Callable[[Sensed], None] | None = None
    framer: LineFramer = field(default_factory=lambda: LineFramer(max_line=32))
    events: int = 0
    bad_lines: int = 0
    moving: bool = False

    def feed(self, data: bytes) -> list[Sensed]:
        out: list[Sensed] = []
        for line in self.framer.feed(data):
            parts = line.strip().split(" ")
            try:
                if len(parts) != 2 or parts[0] != "MOT":
                    raise ValueError(line)
                sensed = Sensed(parts[1])
            except ValueError:
                self.bad_lines += 1
                log.debug("motion_bad_line line=%r", line[:32])
                continue
            self.events += 1
            if sensed is Sensed.MOVING:
                self.moving = True
            elif sensed is Sensed.STILL:
                self.moving = False
            out.append(sensed)
            if self.on_motion is not None:
                self.on_motion(sensed)
        return out

    async def run(self, source: ByteSource) -> None:
        while True:
            data = await source.read(64)
            if not data:
                log.warning("motion_stream_closed")
                return
            self.feed(data)
