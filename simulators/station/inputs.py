"""Station power / alarm / energy inputs, driven by the simulator through a directory
of value files (the agent reads them with ``inputs = "dir:<directory>"``)."""

from __future__ import annotations

import os
from pathlib import Path


class InputsSim:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.energy_wh = 0
        self.write("power_present", "1")
        self.write("alarm", "0")
        self.write("energy_wh", "0")
        self.write("power_w", "35")
        self.write("temperature_c", "24.5")

    @property
    def path(self) -> str:
        return f"dir:{self.directory}"

    def write(self, name: str, value: str) -> None:
        tmp = self.directory / f".{name}.tmp"
        tmp.write_text(value + "\n")
        os.replace(tmp, self.directory / name)

    def power(self, present: bool) -> None:
        self.write("power_present", "1" if present else "0")
        self.write("power_w", "35" if present else "0")

    def alarm(self, on: bool, reason: str = "cabinet open") -> None:
        self.write("alarm", f"1 {reason}" if on else "0")

    def add_energy(self, wh: int) -> None:
        self.energy_wh += wh
        self.write("energy_wh", str(self.energy_wh))

    def garbage(self, name: str = "energy_wh") -> None:
        self.write(name, "\x00not a number")
