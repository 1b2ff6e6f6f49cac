"""What the vehicle remembers across reboots, in one small JSON file written atomically.

Config values and version, the speed limit, maintenance and the installed
firmware version. (State announced by an event — the lock, low batteries — lives
in the DiskQueue's device state, written in the same transaction as the event;
the local authorization list is the station's LocalAuthList.)
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kickstand.edge.core.errors import QueueError

log = logging.getLogger("kickstand.edge.vehicle.store")


@dataclass(slots=True)
class VehicleMemory:
    config_version: int = 0
    config_values: dict[str, Any] = field(default_factory=dict)
    speed_limit_kmh: int | None = None
    maintenance: bool = False
    maintenance_reason: str = ""
    firmware: str | None = None  # installed by a FirmwareUpdate; None: the settings' one


class VehicleStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.memory = VehicleMemory()
        if path.exists():
            try:
                data = json.loads(path.read_text())
                known = {k: v for k, v in data.items() if k in VehicleMemory.__dataclass_fields__}
                self.memory = VehicleMemory(**known)
            except (OSError, ValueError, TypeError) as exc:
                # A corrupt file must not stop the vehicle: start from defaults, say so.
                log.error("vehicle_store_unreadable path=%s error=%s", path, exc)

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as fh:
                json.dump(asdict(self.memory), fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            raise QueueError(f"cannot save {self.path}: {exc}") from exc
