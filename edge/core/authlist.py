"""The local authorization list (as OCPP's): badge UIDs allowed while offline.

Versioned; FULL replaces the list, DIFF applies adds/removes on top of
``base_version`` only (else VERSION_MISMATCH). Persisted atomically (write to a
temp file, fsync, rename) so a power cut leaves the old or the new list.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from kickstand.edge.core.errors import CommandRefused
from kickstand.protocol.v1.enums import AuthListKind, RejectReason
from kickstand.protocol.v1.messages import AuthListUpdate


class LocalAuthList:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.version = 0
        self._uids: set[bytes] = set()
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                self.version = int(data["version"])
                self._uids = {bytes.fromhex(u) for u in data["uids"]}
            except (ValueError, KeyError, TypeError, OSError):
                # A corrupt list is worse than none: start empty, the cloud resends FULL.
                self.version = 0
                self._uids = set()

    def __contains__(self, uid: bytes) -> bool:
        return uid in self._uids

    def __len__(self) -> int:
        return len(self._uids)

    def apply(self, update: AuthListUpdate) -> None:
        """Apply a FULL or DIFF update or raise CommandRefused (VERSION_MISMATCH / MALFORMED)."""
        if update.kind is AuthListKind.FULL:
            if update.remove:
                raise CommandRefused(RejectReason.MALFORMED, "FULL update with removals")
            uids = set(update.add)
        else:
            if update.base_version != self.version:
                raise CommandRefused(
                    RejectReason.VERSION_MISMATCH,
                    f"diff on {update.base_version}, device holds {self.version}",
                )
            uids = (self._uids - set(update.remove)) | set(update.add)
        if update.version <= 0:
            raise CommandRefused(RejectReason.MALFORMED, "version must be positive")
        self._save(update.version, uids)
        self.version = update.version
        self._uids = uids

    def _save(self, version: int, uids: set[bytes]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        data = json.dumps({"version": version, "uids": sorted(u.hex() for u in uids)})
        with open(tmp, "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
