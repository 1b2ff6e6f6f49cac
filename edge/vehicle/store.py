"""What the vehicle remembers across reboots, in one small JSON file written atomically.

Config values and version, the speed limit, maintenance, the installed firmware
version, the local authorization list (badges accepted while offline), the last
lock state seen and which low-battery events were already sent.
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
    auth_list_version: int = 0
    auth_list: list[str] = field(default_factory=list)  # badge UIDs, hex
    last_lock: int | None = None  # BusLock value last seen
    battery_low_sent: list[int] = field(default_factory=list)  # BatteryKind values


class VehicleStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.memory = VehicleMemory()
        self._badges: set[bytes] = set()
        if path.exists():
            try:
                data = json.loads(path.read_text())
                known = {k: v for k, v in data.items() if k in VehicleMemory.__dataclass_fields__}
                self.memory = VehicleMemory(**known)
            except (OSError, ValueError, TypeError) as exc:
                # A corrupt file must not stop the vehicle: start from defaults, say so.
                log.error("vehicle_store_unreadable path=%s error=%s", path, exc)
        self._badges = {bytes.fromhex(uid) for uid in self.memory.auth_list if _is_hex(uid)}

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

    # -- local authorization list ------------------------------------------------------

    def badge_authorized(self, uid: bytes) -> bool:
        return uid in self._badges

    def replace_auth_list(self, version: int, uids: tuple[bytes, ...]) -> None:
        self._badges = set(uids)
        self._save_auth(version)

    def diff_auth_list(
        self, version: int, add: tuple[bytes, ...], remove: tuple[bytes, ...]
    ) -> None:
        self._badges -= set(remove)
        self._badges |= set(add)
        self._save_auth(version)

    def _save_auth(self, version: int) -> None:
        self.memory.auth_list_version = version
        self.memory.auth_list = sorted(uid.hex() for uid in self._badges)
        self.save()


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True
