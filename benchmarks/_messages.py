"""Representative v1 messages shared by the protocol benchmarks (one per message type)."""

from __future__ import annotations

import dataclasses
import json
from enum import IntEnum
from typing import Any

from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import (
    BatteryKind,
    DeviceKind,
    LockCause,
    LockState,
    MotionKind,
    RejectReason,
    ResultStatus,
    SpotState,
)

BOOT = 2_913_405_117
TS = 1_795_276_800_123
CID = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
UID = bytes.fromhex("04a1b2c3d4e5f6")

SAMPLES: dict[str, tuple[m.Stamp, m.UpBody]] = {
    "birth": (
        m.Stamp(BOOT, 0, TS),
        m.Birth(
            DeviceKind.STATION,
            "1.4.2",
            "mb-3",
            12,
            7,
            tuple(m.Component("spot", i, "2.1.0") for i in range(1, 13)),
            1,
        ),
    ),
    "heartbeat": (m.Stamp(BOOT, 0, TS), m.Heartbeat()),
    "status (spot)": (m.Stamp(BOOT, 1234, TS), m.Status(3, SpotState.DOCKED_LOCKED)),
    "status (docked, serial)": (
        m.Stamp(BOOT, 1235, TS),
        m.Status(3, SpotState.DOCKED_LOCKED, LockState.LOCKED, "AB12345"),
    ),
    "telemetry (position)": (
        m.Stamp(BOOT, 1236, TS),
        m.Telemetry(lat=45.764043, lon=4.835659, speed_kmh=18.5, heading_deg=270),
    ),
    # batteries ride along with a position about once a minute, not with every one
    "telemetry (position+battery)": (
        m.Stamp(BOOT, 1246, TS),
        m.Telemetry(
            lat=45.764043, lon=4.835659, speed_kmh=18.5, heading_deg=270, battery_pct=87, vae_pct=64
        ),
    ),
    "telemetry (station)": (
        m.Stamp(BOOT, 1237, TS),
        m.Telemetry(
            temperature_c=21.5,
            energy_wh=1_234_567,
            power_w=87,
            spot_temperatures_c=((1, 21.5), (2, 22.0), (3, 21.0)),
        ),
    ),
    "event vehicle docked": (m.Stamp(BOOT, 1238, TS), m.VehicleDocked(5, "AB12345")),
    "event vehicle removed": (
        m.Stamp(BOOT, 1239, TS),
        m.VehicleRemoved(3, "AB12345", command_id=CID),
    ),
    "event unlocked": (m.Stamp(BOOT, 1240, TS), m.Unlocked(3, LockCause.COMMAND, CID)),
    "event badge": (m.Stamp(BOOT, 1241, TS), m.BadgePresented(UID, True, False, 0)),
    "event battery low": (m.Stamp(BOOT, 1242, TS), m.BatteryLow(BatteryKind.VAE, 18)),
    "event motion": (m.Stamp(BOOT, 1243, TS), m.Motion(MotionKind.FALLEN)),
    "command result": (m.Stamp(BOOT, 1244, TS), m.CommandResult(CID, ResultStatus.DONE)),
    "command rejected": (
        m.Stamp(BOOT, 1245, TS),
        m.CommandResult(CID, ResultStatus.REJECTED, RejectReason.EXPIRED, "expired 2.0 s ago"),
    ),
}


def plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) not in (None, ())
        }
    if isinstance(value, IntEnum):
        return value.name.lower()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    return value


def as_json(stamp: m.Stamp, body: m.UpBody) -> bytes:
    """The same content as a typical device would send it in compact JSON."""
    doc: dict[str, Any] = {"boot_id": stamp.boot_id, "seq": stamp.seq, "ts": stamp.ts_ms}
    if codec.channel_of(body) is Channel.EVENT:
        doc["event"] = type(body).__name__
    doc.update(plain(body))
    return json.dumps(doc, separators=(",", ":")).encode()


def from_json(data: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(data)
    return doc
