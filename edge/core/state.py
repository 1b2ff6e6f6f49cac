"""What an agent remembers across restarts: one store for every agent.

The store is the DiskQueue's ``device_state`` table (key -> JSON text), so that a state
change others must hear of is written in the same transaction as the events announcing
it (``link.emit_batch(bodies, state.encode({...}))``, or a command's ``Outcome(state=...)``)
and a restart neither repeats nor loses an event. State with no event to go with it
(a speed limit, the config) is written alone with :meth:`AgentState.put`.

Keys every agent has (the framework's): ``config`` (``{"version": n, "values": {...}}``,
the merged Config commands) and ``firmware`` (the version a FirmwareUpdate installed;
absent: the settings' one). Device parts add their own, prefixed by what they are about
(``spot:3``, ``station``, ``vehicle.lock``).

First start of an agent of an earlier version: :func:`migrate` brings what it left on disk
into the store (the station's ``config_values`` / ``config_version`` keys, the vehicle's
``vehicle.json``), once.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kickstand.edge.core.errors import QueueError
from kickstand.edge.core.queue import DiskQueue

log = logging.getLogger("kickstand.edge.core.state")

CONFIG = "config"
FIRMWARE = "firmware"


class AgentState:
    """Typed access to the device state of ``queue``: JSON values (:meth:`get`,
    :meth:`put`); a device key its part wrote as plain text is read with :meth:`text`."""

    def __init__(self, queue: DiskQueue) -> None:
        self.queue = queue

    def text(self, key: str) -> str | None:
        """The raw text under ``key`` (device keys written as plain text, e.g. a lock name)."""
        try:
            return self.queue.load_state(key)
        except (QueueError, sqlite3.Error) as exc:
            log.error("state_unreadable key=%s error=%s", key, exc)
            return None

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``; ``default`` when absent or unreadable (logged)."""
        text = self.text(key)
        if text is None:
            return default
        try:
            return json.loads(text)
        except ValueError as exc:
            # A value of an agent that stored plain text, or a torn write: never fatal.
            log.warning("state_not_json key=%s error=%s", key, exc)
            return default

    @staticmethod
    def encode(values: Mapping[str, Any]) -> dict[str, str]:
        """``values`` as the text the queue stores: for ``emit_batch`` / ``Outcome(state=)``."""
        return {key: json.dumps(value) for key, value in values.items()}

    def put(self, values: Mapping[str, Any]) -> None:
        """Store ``values`` in one transaction (QueueError when the disk refuses)."""
        self.queue.save_state(self.encode(values))

    # ---------------------------------------------------------------- framework keys

    def config(self) -> tuple[int, dict[str, Any]]:
        """The version and merged values of the Config commands applied so far."""
        data = self.get(CONFIG, {})
        if not isinstance(data, dict):
            return 0, {}
        values = data.get("values")
        return int(data.get("version") or 0), dict(values) if isinstance(values, dict) else {}

    def config_entry(self, version: int, values: Mapping[str, Any]) -> dict[str, Any]:
        return {CONFIG: {"version": version, "values": dict(values)}}


def migrate(state: AgentState, state_dir: Path) -> None:
    """Bring the state an agent of an earlier version left into ``state`` (once)."""
    if state.queue.load_state(CONFIG) is None:
        _station_config(state)
    legacy = state_dir / "vehicle.json"
    if legacy.exists():
        _vehicle_store(state, legacy)


def _station_config(state: AgentState) -> None:
    """The station kept its Config as ``config_values`` (JSON) and ``config_version`` (text)."""
    version = state.queue.load_state("config_version")
    values = state.queue.load_state("config_values")
    if version is None and values is None:
        return
    try:
        merged = json.loads(values or "{}")
        number = int(version or 0)
    except ValueError as exc:
        log.error("state_migration_failed what=station_config error=%s", exc)
        return
    state.put(state.config_entry(number, merged if isinstance(merged, dict) else {}))
    log.info("state_migrated what=station_config version=%d", number)


def _vehicle_store(state: AgentState, path: Path) -> None:
    """The vehicle kept config, speed limit, maintenance and firmware in ``vehicle.json``."""
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except (OSError, ValueError) as exc:
        # As the old store did with a corrupt file: start from defaults, say so.
        log.error("state_migration_failed what=vehicle_store path=%s error=%s", path, exc)
        data = {}
    values: dict[str, Any] = {}
    if data.get("config_version") or data.get("config_values"):
        values.update(state.config_entry(int(data.get("config_version") or 0),
                                         data.get("config_values") or {}))
    if data.get("firmware"):
        values[FIRMWARE] = data["firmware"]
    if data.get("speed_limit_kmh") is not None:
        values["vehicle.speed_limit_kmh"] = data["speed_limit_kmh"]
    if data.get("maintenance"):
        values["vehicle.maintenance"] = {
            "on": True, "reason": str(data.get("maintenance_reason") or "")
        }
    state.put(values)
    path.replace(path.with_name(path.name + ".migrated"))
    log.info("state_migrated what=vehicle_store keys=%s", sorted(values))
