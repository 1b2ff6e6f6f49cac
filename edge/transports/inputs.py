"""Station inputs from a directory of small value files, as sysfs GPIOs look.

    <dir>/power_present   "1" / "0"      mains present
    <dir>/alarm           "0" or "1 <reason>"
    <dir>/energy_wh       integer, monotonic energy meter counter
    <dir>/power_w         integer, instantaneous power
    <dir>/temperature_c   float, mainboard temperature

A missing file reads as its default (power present, no alarm, no meter). A file
with garbage is logged and counted, and its last good value is kept.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kickstand.edge.transports import InputsReading, StationInputs

log = logging.getLogger("kickstand.edge.transports.inputs")


class DirectoryInputs(StationInputs):
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = f"dir:{self.directory}"
        self.errors = 0
        self._last = InputsReading()

    def _text(self, name: str) -> str | None:
        try:
            return (self.directory / name).read_text().strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            self.errors += 1
            log.warning("inputs_read_failed file=%s error=%s", name, exc)
            return None

    async def read(self) -> InputsReading:
        last = self._last
        try:
            power = self._text("power_present")
            alarm = self._text("alarm") or "0"
            energy = self._text("energy_wh")
            power_w = self._text("power_w")
            temp = self._text("temperature_c")
            alarm_on, _, reason = alarm.partition(" ")
            reading = InputsReading(
                power_present=last.power_present if power is None else power != "0",
                alarm=alarm_on not in ("0", ""),
                alarm_reason=reason,
                energy_wh=int(energy) if energy else last.energy_wh,
                power_w=int(power_w) if power_w else last.power_w,
                temperature_c=float(temp) if temp else last.temperature_c,
            )
        except ValueError as exc:
            self.errors += 1
            log.warning("inputs_garbage dir=%s error=%s", self.directory, exc)
            return last
        self._last = reading
        return reading
