"""The codes and limits of Kickstand protocol v1 as SPEC §6, §7 and §10 give them, for the
foreign station (tests/conformance/foreign_station.py): written from the documents alone,
nothing imported from ``kickstand``."""

from __future__ import annotations

from enum import IntEnum


class SpotState(IntEnum):
    EMPTY = 1
    DOCKED_LOCKED = 2
    UNLOCKING = 3
    UNLOCKED_AWAITING_REMOVAL = 4
    FAULT = 5
    MAINTENANCE = 6


class DeviceState(IntEnum):
    OPERATIVE = 1
    MAINTENANCE = 6


class Lock(IntEnum):
    LOCKED = 0
    OPEN = 1


class Event(IntEnum):
    VEHICLE_DOCKED = 1
    VEHICLE_REMOVED = 2
    UNLOCKED = 4
    UNLOCK_EXPIRED = 5
    BADGE_PRESENTED = 6


class LockCause(IntEnum):
    COMMAND = 1
    OFFLINE_BADGE = 6


class Command(IntEnum):
    UNLOCK = 1
    LOCK = 2
    SET_SPEED_LIMIT = 3
    SET_MAINTENANCE = 4
    AUTH_LIST_UPDATE = 5
    CONFIG = 6
    REBOOT = 7
    TRIGGER_MESSAGE = 8
    FIRMWARE_UPDATE = 9
    CERT_ISSUED = 10


class Result(IntEnum):
    ACCEPTED = 1
    REJECTED = 2
    DONE = 3
    FAILED = 4


class Reject(IntEnum):
    BAD_SIGNATURE = 1
    EXPIRED = 2
    REPLAYED = 3
    WRONG_DEVICE = 4
    NOT_SUPPORTED = 5
    MALFORMED = 6
    BUSY = 7
    INVALID_STATE = 8
    MAINTENANCE = 9
    HARDWARE_FAULT = 10
    NOT_YET_VALID = 11
    UNKNOWN_KEY = 12
    VERSION_MISMATCH = 13


class BootStatus(IntEnum):
    ACCEPTED = 1
    PENDING = 2
    REJECTED = 3


class Trigger(IntEnum):
    BIRTH = 1
    STATUS = 2
    HEARTBEAT = 3
    TELEMETRY = 4


class BadgeOutcome(IntEnum):
    UNLOCKING = 1
    LINKED = 2
    REFUSED = 3


AUTH_FULL, AUTH_DIFF = 1, 2
U32 = 2**32 - 1
U63 = 2**63 - 1
V31 = 2**31 - 1
ZERO_ID = bytes(16)
#: SPEC §10: the largest command payload.
MAX_COMMAND = 256 * 1024
#: SPEC §7.2: an ``issued_at`` up to this far ahead of the device's clock is accepted.
SKEW_MS = 30_000
#: SPEC §7.5, station keys and their types.
CONFIG_KEYS: dict[str, str] = {
    "unlock_window_s": "int",
    "offline_window_s": "int",
    "offline_allow_unknown": "bool",
    "temperature_high_c": "float",
    "temperature_clear_c": "float",
    "telemetry_interval_s": "float",
    "poll_interval_s": "float",
    "active_poll_interval_s": "float",
}
