"""Typed messages of protocol v1, one dataclass per message type.

These classes know nothing of CBOR keys: the mapping to the compact wire form
lives in ``codec.py`` only. Units are the domain's (degrees, km/h, °C, %);
the codec quantises them (1e-6 degree, 0.1 km/h, 0.1 °C) as the SPEC says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kickstand.protocol.v1.enums import (
    AuthListKind,
    BadgeOutcome,
    BadgeRefusal,
    BatteryKind,
    BootStatus,
    ChainType,
    DeviceKind,
    DeviceState,
    FirmwareState,
    LockCause,
    LockState,
    MotionKind,
    RejectReason,
    ResultStatus,
    SpotState,
    TriggerKind,
)


@dataclass(frozen=True, slots=True)
class Stamp:
    """What every device message carries: who sent it in which boot, its order, its time.

    ``(device_id, boot_id, seq)`` is the dedupe key: a replay applies once.
    ``seq`` is 0 for unsequenced messages (birth, death, heartbeat); queued
    messages count from 1 upwards within a boot.
    """

    boot_id: int
    seq: int
    ts_ms: int  # device clock, ms since the Unix epoch (UTC)


# ---------------------------------------------------------------- device -> cloud


@dataclass(frozen=True, slots=True)
class Component:
    """One item of a device's inventory: a spot board, a GPS, a BMS peer…"""

    kind: str  # "spot", "nfc", "gps", "lockbox", "bms", "pinpad", "motion", "power"
    index: int  # spot number for spot boards, else 0
    firmware: str = ""


@dataclass(frozen=True, slots=True)
class Birth:
    kind: DeviceKind
    firmware: str
    hardware: str
    config_version: int = 0
    auth_list_version: int = 0
    inventory: tuple[Component, ...] = ()
    # Oldest seq still waiting in the device's queue (or the next seq to be used):
    # everything below it was delivered or deliberately thinned.
    pending_from: int = 1
    serial_number: str | None = None  # vehicles: the frame's serial number
    # The device keeps every queued message until the cloud's Ack covers it (SPEC §4.6).
    acks: bool = False


@dataclass(frozen=True, slots=True)
class Death:
    reason: str | None = None  # None when published by the broker as the Will


@dataclass(frozen=True, slots=True)
class Heartbeat:
    pass


@dataclass(frozen=True, slots=True)
class Status:
    """Spot 0 is the whole station (or the vehicle); its state is a DeviceState."""

    spot: int
    state: SpotState | DeviceState
    lock: LockState | None = None
    serial_number: str | None = None  # vehicle docked in the spot
    fault: str | None = None
    battery_pct: int | None = None


@dataclass(frozen=True, slots=True)
class Telemetry:
    lat: float | None = None
    lon: float | None = None
    speed_kmh: float | None = None
    heading_deg: int | None = None
    hdop: float | None = None
    battery_pct: int | None = None  # internal battery
    vae_pct: int | None = None  # e-assist battery
    vae_mv: int | None = None
    temperature_c: float | None = None  # mainboard / controller
    energy_wh: int | None = None  # station energy meter, monotonic counter
    power_w: int | None = None
    spot_temperatures_c: tuple[tuple[int, float], ...] = ()  # (spot, °C)


@dataclass(frozen=True, slots=True)
class CommandResult:
    command_id: bytes
    status: ResultStatus
    reason: RejectReason | None = None
    detail: str | None = None


# Events: one class per event type.


@dataclass(frozen=True, slots=True)
class VehicleDocked:
    spot: int
    serial_number: str


@dataclass(frozen=True, slots=True)
class VehicleRemoved:
    spot: int
    serial_number: str
    badge_uid: bytes | None = None  # the badge that unlocked it offline, if any
    command_id: bytes | None = None  # the unlock command that opened it, if any


@dataclass(frozen=True, slots=True)
class Locked:
    spot: int
    cause: LockCause
    command_id: bytes | None = None


@dataclass(frozen=True, slots=True)
class Unlocked:
    spot: int
    cause: LockCause
    command_id: bytes | None = None
    badge_uid: bytes | None = None


@dataclass(frozen=True, slots=True)
class UnlockExpired:
    """The lock opened but nobody took the vehicle: re-locked, no trip."""

    spot: int
    command_id: bytes | None = None
    badge_uid: bytes | None = None


@dataclass(frozen=True, slots=True)
class BadgePresented:
    badge_uid: bytes
    authorized: bool
    offline: bool
    spot: int = 0


@dataclass(frozen=True, slots=True)
class ChainInserted:
    chain_type: ChainType = ChainType.STANDARD


@dataclass(frozen=True, slots=True)
class ChainRemoved:
    pass


@dataclass(frozen=True, slots=True)
class ChainTypeChanged:
    chain_type: ChainType


@dataclass(frozen=True, slots=True)
class PinIncorrect:
    attempts: int


@dataclass(frozen=True, slots=True)
class PinEntered:
    pass


@dataclass(frozen=True, slots=True)
class BatteryLow:
    battery: BatteryKind
    level_pct: int


@dataclass(frozen=True, slots=True)
class Temperature:
    spot: int
    celsius: float
    high: bool


@dataclass(frozen=True, slots=True)
class PowerCut:
    pass


@dataclass(frozen=True, slots=True)
class PowerRestored:
    pass


@dataclass(frozen=True, slots=True)
class AlarmTriggered:
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AlarmCleared:
    pass


@dataclass(frozen=True, slots=True)
class Motion:
    kind: MotionKind


@dataclass(frozen=True, slots=True)
class BoardFault:
    spot: int
    reason: str


@dataclass(frozen=True, slots=True)
class BoardRecovered:
    spot: int


@dataclass(frozen=True, slots=True)
class FirmwareStatus:
    """One stage of a firmware update (SPEC §13.5); ``version`` is the manifest's."""

    state: FirmwareState
    version: str
    spot: int = 0  # 0 = the mainboard / controller itself
    reason: str = ""  # why it failed or rolled back ("" = not sent)
    bytes_done: int = 0  # DOWNLOADING: bytes of the image received so far (0 = not sent)


@dataclass(frozen=True, slots=True)
class SpotIdentifyFail:
    """A vehicle is in the spot but its serial number cannot be read."""

    spot: int


@dataclass(frozen=True, slots=True)
class CertRenew:
    """The device asks for a new client certificate before its own expires (SPEC §7.7):
    ``csr`` is a PKCS#10 request (DER) for a key it made itself, CN = its device id. Sent
    over its current, still valid identity; the cloud answers with a CertIssued command."""

    csr: bytes


Event = (
    VehicleDocked
    | VehicleRemoved
    | Locked
    | Unlocked
    | UnlockExpired
    | BadgePresented
    | ChainInserted
    | ChainRemoved
    | ChainTypeChanged
    | PinIncorrect
    | PinEntered
    | BatteryLow
    | Temperature
    | PowerCut
    | PowerRestored
    | AlarmTriggered
    | AlarmCleared
    | Motion
    | BoardFault
    | BoardRecovered
    | FirmwareStatus
    | SpotIdentifyFail
    | CertRenew
)
UpBody = Birth | Death | Heartbeat | Status | Telemetry | CommandResult | Event


@dataclass(frozen=True, slots=True)
class UpMessage:
    """A decoded device message: who/when (``stamp``) and what (``body``)."""

    stamp: Stamp
    body: UpBody


# ---------------------------------------------------------------- cloud -> device


@dataclass(frozen=True, slots=True)
class BootReply:
    status: BootStatus
    server_time_ms: int
    heartbeat_s: int
    boot_id: int  # the birth this answers; a device ignores replies to an older boot
    retry_after_s: int | None = None  # with PENDING
    acks: bool | None = None  # the cloud will Ack this device's messages (SPEC §4.6)


@dataclass(frozen=True, slots=True)
class TimeReply:
    server_time_ms: int
    device_ts_ms: int  # echo of the heartbeat's stamp, for round-trip and offset


@dataclass(frozen=True, slots=True)
class AckRange:
    """Seqs ``first``..``last`` (inclusive) of boot ``boot_id`` are committed in the cloud."""

    boot_id: int
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class Ack:
    """End-to-end acknowledgement: the device may forget the messages these ranges cover."""

    ranges: tuple[AckRange, ...]


@dataclass(frozen=True, slots=True)
class BadgeReply:
    """The cloud's answer to a BadgePresented, for the reader's LED / buzzer / display.

    Not signed: it moves nothing (an unlock is still the signed Unlock command).
    """

    badge_uid: bytes
    outcome: BadgeOutcome
    reason: BadgeRefusal | None = None  # with REFUSED
    spot: int | None = None  # with UNLOCKING: the spot that opens
    rent_id: str | None = None  # with UNLOCKING: the rent (as in the Unlock)


# Commands: one class per command type, wrapped in a signed CommandEnvelope.


@dataclass(frozen=True, slots=True)
class Unlock:
    spot: int = 0  # 0 on a vehicle
    window_s: int = 30  # re-lock if the vehicle is not taken within it
    rent_id: str | None = None


@dataclass(frozen=True, slots=True)
class Lock:
    spot: int = 0


@dataclass(frozen=True, slots=True)
class SetSpeedLimit:
    max_kmh: int


@dataclass(frozen=True, slots=True)
class SetMaintenance:
    spot: int
    on: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AuthListUpdate:
    kind: AuthListKind
    version: int
    base_version: int | None = None  # DIFF: applies only on top of this version
    add: tuple[bytes, ...] = ()
    remove: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Config:
    version: int
    values: dict[str, int | str | bool | float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reboot:
    hard: bool = False


@dataclass(frozen=True, slots=True)
class TriggerMessage:
    which: TriggerKind
    spot: int = 0


@dataclass(frozen=True, slots=True)
class FirmwareUpdate:
    """Install the image a signed manifest describes (SPEC §13): ``manifest`` is the
    SignedManifest bytes (:mod:`kickstand.protocol.firmware`); url, version, size and digest
    come from it once verified with the device's firmware keys."""

    manifest: bytes
    spot: int = 0  # 0 = the mainboard / controller; n = spot board n


@dataclass(frozen=True, slots=True)
class CertIssued:
    """The certificate (DER) the installation's CA signed for the device's CertRenew: the
    device stores it with the key of that request and reconnects with it (SPEC §7.7)."""

    certificate: bytes


CommandBody = (
    Unlock
    | Lock
    | SetSpeedLimit
    | SetMaintenance
    | AuthListUpdate
    | Config
    | Reboot
    | TriggerMessage
    | FirmwareUpdate
    | CertIssued
)


@dataclass(frozen=True, slots=True)
class CommandEnvelope:
    """What the cloud signs: the command, bound to one device and a validity window."""

    command_id: bytes  # 16 random bytes; also the replay key
    device_id: str
    issued_at_ms: int
    expires_at_ms: int
    command: CommandBody
