"""Integer codes of protocol v1. The numbers are the wire; never renumber, only add."""

from __future__ import annotations

from enum import IntEnum


class DeviceKind(IntEnum):
    STATION = 1
    VEHICLE = 2


class SpotState(IntEnum):
    """State of one dock (status with spot >= 1)."""

    EMPTY = 1
    DOCKED_LOCKED = 2
    UNLOCKING = 3
    UNLOCKED_AWAITING_REMOVAL = 4
    FAULT = 5
    MAINTENANCE = 6


class DeviceState(IntEnum):
    """State of a whole station or vehicle (status with spot 0)."""

    OPERATIVE = 1
    DEGRADED = 2  # some spots or sensors faulty, the rest works
    FAULT = 5
    MAINTENANCE = 6
    # vehicles only
    LOCKED = 10
    UNLOCKED = 11
    RIDING = 12


class LockState(IntEnum):
    LOCKED = 0
    OPEN = 1
    JAMMED = 2


class EventType(IntEnum):
    VEHICLE_DOCKED = 1
    VEHICLE_REMOVED = 2
    LOCKED = 3
    UNLOCKED = 4
    UNLOCK_EXPIRED = 5  # lock re-closed because nobody took the vehicle
    BADGE_PRESENTED = 6
    CHAIN_INSERTED = 7
    CHAIN_REMOVED = 8
    CHAIN_TYPE_CHANGED = 9
    PIN_INCORRECT = 10
    BATTERY_LOW = 11
    TEMPERATURE = 12
    POWER_CUT = 13
    POWER_RESTORED = 14
    ALARM_TRIGGERED = 15
    ALARM_CLEARED = 16
    MOTION = 17
    BOARD_FAULT = 18
    BOARD_RECOVERED = 19
    FIRMWARE_STATUS = 20
    SPOT_IDENTIFY_FAIL = 21
    PIN_ENTERED = 22
    CERT_RENEW = 23  # the device asks for a new certificate (issue 17)


class LockCause(IntEnum):
    COMMAND = 1
    BADGE = 2
    AUTO_RELOCK = 3  # unlock window elapsed without removal
    DOCKING = 4  # a vehicle pushed into the spot closes the lock
    MANUAL = 5  # lock box closed by the rider (vehicles)
    OFFLINE_BADGE = 6  # badge found in the local authorization list while offline


class BatteryKind(IntEnum):
    INTERNAL = 1  # controller / lock box battery
    VAE = 2  # e-assist battery ("VAE" in the seeds)


class MotionKind(IntEnum):
    LIFTED = 1
    FALLEN = 2
    ILLEGAL_MOVING = 3
    DISMANTLING = 4


class ChainType(IntEnum):
    NONE = 0
    STANDARD = 1
    LONG = 2
    CABLE = 3


class FirmwareState(IntEnum):
    DOWNLOADING = 1
    DOWNLOADED = 2
    VERIFYING = 3
    VERIFIED = 4
    INSTALLING = 5
    INSTALLED = 6
    DOWNLOAD_FAILED = 7
    VERIFY_FAILED = 8
    INSTALL_FAILED = 9
    REBOOTING = 10  # the new slot is active; the device restarts into it (trial boot)
    CONFIRMED = 11  # the new slot booted, reached the cloud and passed its self-check
    ROLLED_BACK = 12  # the trial boot was not confirmed: the previous slot runs again


class CommandType(IntEnum):
    UNLOCK = 1
    LOCK = 2
    SET_SPEED_LIMIT = 3
    SET_MAINTENANCE = 4
    AUTH_LIST_UPDATE = 5
    CONFIG = 6
    REBOOT = 7
    TRIGGER_MESSAGE = 8
    FIRMWARE_UPDATE = 9
    CERT_ISSUED = 10  # the certificate signed for a CertRenew (issue 17)


class ResultStatus(IntEnum):
    ACCEPTED = 1  # verified and started; a DONE or FAILED follows for long actions
    REJECTED = 2  # refused before anything moved (see RejectReason)
    DONE = 3
    FAILED = 4  # started but the hardware did not complete it


class RejectReason(IntEnum):
    BAD_SIGNATURE = 1
    EXPIRED = 2
    REPLAYED = 3
    WRONG_DEVICE = 4
    NOT_SUPPORTED = 5
    MALFORMED = 6
    BUSY = 7
    INVALID_STATE = 8  # e.g. unlock an empty spot
    MAINTENANCE = 9
    HARDWARE_FAULT = 10
    NOT_YET_VALID = 11  # issued in the future beyond the allowed clock skew
    UNKNOWN_KEY = 12
    VERSION_MISMATCH = 13  # auth-list diff against a version the device does not hold


class BootStatus(IntEnum):
    ACCEPTED = 1
    PENDING = 2  # retry the birth after the given interval
    REJECTED = 3  # unknown or decommissioned device


class AuthListKind(IntEnum):
    FULL = 1
    DIFF = 2


class BadgeOutcome(IntEnum):
    """The cloud's answer to a badge presented at an online station (BadgeReply)."""

    UNLOCKING = 1  # a rent is open: the signed Unlock for ``spot`` follows on cmd
    LINKED = 2  # the badge is now linked to the rider who asked for it
    REFUSED = 3  # nothing opens; BadgeRefusal says why


class BadgeRefusal(IntEnum):
    UNKNOWN_BADGE = 1  # not linked to anyone, no link request waiting here
    BADGE_BLOCKED = 2
    RENTAL_LIMIT = 3  # the rider already rides the network's maximum
    NO_VEHICLE = 4  # no docked vehicle at this station can be rented now
    RIDER_NOT_ALLOWED = 5  # account disabled
    STATION_UNAVAILABLE = 6  # the station or its spots are out of service
    WALLET_EMPTY = 7


class TriggerKind(IntEnum):
    BIRTH = 1
    STATUS = 2
    HEARTBEAT = 3
    TELEMETRY = 4
