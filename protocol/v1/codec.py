"""Protocol v1 codec: the one place where messages become bytes and back.

``encode_up`` / ``decode_up`` for device -> cloud messages, ``encode_down`` /
``decode_down`` for the cloud's boot and time replies, and the command
payload (signed separately by :mod:`kickstand.protocol.signing`).

Decoding checks, in order: the size limit of the channel, that the bytes are
exactly one CBOR item with no repeated map key (cbor2's C decoder, bounded by the
size limit, deep nesting raises; then :mod:`.wellformed`), the envelope shape, then
every field's type and range from the key tables below. The ranges are what the
cloud can store (SPEC §10): what decodes can be applied. Anything wrong raises one
:class:`~kickstand.protocol.errors.DecodeError` subclass with a readable reason;
nothing else escapes.

The CDDL schemas in ``protocol/schema/`` are the published contract; the suite
proves that everything this codec emits validates against them. They are not
run per message here: pycddl costs 5-60 us a message against ~10 us for the
field tables, and ingest decodes every device message (see SPEC.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import cbor2

from kickstand.protocol.errors import (
    DecodeError,
    EncodeError,
    ProtocolError,
    SchemaError,
    UnknownTypeError,
)
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import (
    AuthListKind,
    BadgeOutcome,
    BadgeRefusal,
    BatteryKind,
    BootStatus,
    ChainType,
    CommandType,
    DeviceKind,
    DeviceState,
    EventType,
    FirmwareState,
    LockCause,
    LockState,
    MotionKind,
    RejectReason,
    ResultStatus,
    SpotState,
    TriggerKind,
)
from kickstand.protocol.v1.fields import (
    U31,
    U32,
    U63,
    Bool,
    Bytes,
    ConfigMap,
    Conv,
    Enum,
    FieldSpec,
    ListOf,
    Pair,
    Scaled,
    Text,
    UInt,
)
from kickstand.protocol.v1.wellformed import NotOneItem, loads_strict

# Largest payload accepted per channel: checked before any parsing.
MAX_SIZE: dict[Channel, int] = {
    Channel.BIRTH: 4096,
    Channel.DEATH: 256,
    Channel.HEARTBEAT: 256,
    Channel.STATUS: 512,
    Channel.EVENT: 512,
    Channel.TELEMETRY: 1024,
    Channel.RESULT: 512,
    Channel.BOOT: 256,
    Channel.TIME: 256,
    Channel.COMMAND: 256 * 1024,  # a full local authorization list
    Channel.ACK: 2048,
    Channel.BADGE: 256,
}

SPOT = UInt(255)
#: The largest firmware image v1 carries (SPEC §13; a mainboard's slot is larger).
MAX_IMAGE_SIZE = 64 * 1024 * 1024
#: A SignedManifest (SPEC §13): a manifest of at most 1024 bytes, its signature and key id.
MAX_MANIFEST_BYTES = 1024
MAX_SIGNED_MANIFEST_BYTES = MAX_MANIFEST_BYTES + 96
BOOT_ID = UInt(U32, 1)  # drawn at random at power-up, never 0
MILLIS = UInt(U63)  # ms since the epoch: a PostgreSQL bigint
VERSION = UInt(U31)  # config and authorization list versions: a PostgreSQL integer
SERIAL = Text(16, 1)
COMMAND_ID = Bytes(16, 16)
BADGE_UID = Bytes(4, 10)  # ISO 14443 UIDs are 4, 7 or 10 bytes; FeliCa IDm 8
LAT = Scaled(1_000_000, -90.0, 90.0, "°")
LON = Scaled(1_000_000, -180.0, 180.0, "°")
# Temperatures in 0.1 °C. Far wider than physics on purpose: a broken sensor's reading
# still decodes and is stored as sent (v1 never narrows a range, SPEC §8).
TENTHS = Scaled(10, -1000.0, 6553.5, "°C")
PCT = UInt(100)


class _ComponentConv(Conv[m.Component]):
    def encode(self, value: m.Component) -> list[Any]:
        return [
            Text(16, 1).encode(value.kind),
            SPOT.encode(value.index),
            Text(32).encode(value.firmware),
        ]

    def decode(self, wire: Any, where: str) -> m.Component:
        if type(wire) is not list or len(wire) != 3:
            raise self.fail(where, "[kind, index, firmware]", wire)
        return m.Component(
            Text(16, 1).decode(wire[0], f"{where}.kind"),
            SPOT.decode(wire[1], f"{where}.index"),
            Text(32).decode(wire[2], f"{where}.firmware"),
        )


MAX_ACK_RANGES = 128


class _AckRangeConv(Conv[m.AckRange]):
    """``[boot_id, first_seq, last_seq]``: seqs are >= 1 and first <= last."""

    def encode(self, value: m.AckRange) -> list[int]:
        if not 1 <= value.first <= value.last:
            raise EncodeError(f"ack range {value.first}..{value.last}: need 1 <= first <= last")
        boot_id = BOOT_ID.encode(value.boot_id)
        return [boot_id, UInt().encode(value.first), UInt().encode(value.last)]

    def decode(self, wire: Any, where: str) -> m.AckRange:
        if type(wire) is not list or len(wire) != 3:
            raise self.fail(where, "[boot_id, first_seq, last_seq]", wire)
        boot_id = BOOT_ID.decode(wire[0], f"{where}.boot_id")
        first = UInt().decode(wire[1], f"{where}.first")
        last = UInt().decode(wire[2], f"{where}.last")
        if not 1 <= first <= last:
            raise self.fail(where, "1 <= first_seq <= last_seq", wire)
        return m.AckRange(boot_id, first, last)


class _StateConv(Conv[SpotState | DeviceState]):
    """Status state: a SpotState for spot >= 1, a DeviceState for spot 0 (fixed up in decode)."""

    def encode(self, value: SpotState | DeviceState) -> int:
        if not isinstance(value, SpotState | DeviceState):
            raise EncodeError(f"{value!r} is neither a SpotState nor a DeviceState")
        return int(value)

    def decode(self, wire: Any, where: str) -> SpotState | DeviceState:
        return UInt(255).decode(wire, where)  # type: ignore[return-value,unused-ignore]


def F(
    attr: str, key: int, conv: Conv[Any], required: bool = False, omit: object = None
) -> FieldSpec:
    return FieldSpec(attr, key, conv, required, omit)


# ------------------------------------------------------------------ the key tables

BODY_FIELDS: dict[type, tuple[FieldSpec, ...]] = {
    m.Birth: (
        F("kind", 0, Enum(DeviceKind), True),
        F("firmware", 1, Text(32, 1), True),
        F("hardware", 2, Text(32, 1), True),
        F("config_version", 3, VERSION),
        F("auth_list_version", 4, VERSION),
        F("inventory", 5, ListOf(_ComponentConv(), 64)),
        F("pending_from", 6, UInt()),
        F("serial_number", 7, SERIAL),
        F("acks", 8, Bool()),
    ),
    m.Death: (F("reason", 0, Text(64)),),
    m.Heartbeat: (),
    m.Status: (
        F("spot", 0, SPOT, True),
        F("state", 1, _StateConv(), True),
        F("lock", 2, Enum(LockState)),
        F("serial_number", 3, SERIAL),
        F("fault", 4, Text(64)),
        F("battery_pct", 5, PCT),
    ),
    m.Telemetry: (
        F("lat", 0, LAT),
        F("lon", 1, LON),
        F("speed_kmh", 2, Scaled(10, 0.0, 500.0, "km/h")),
        F("heading_deg", 3, UInt(359)),
        F("hdop", 4, Scaled(10, 0.0, 100.0)),
        F("battery_pct", 5, PCT),
        F("vae_pct", 6, PCT),
        F("vae_mv", 7, UInt(100_000)),
        F("temperature_c", 8, TENTHS),
        F("energy_wh", 9, UInt(U63)),
        F("power_w", 10, UInt(1_000_000)),
        F("spot_temperatures_c", 11, ListOf(Pair(SPOT, TENTHS), 64)),
    ),
    m.CommandResult: (
        F("command_id", 0, COMMAND_ID, True),
        F("status", 1, Enum(ResultStatus), True),
        F("reason", 2, Enum(RejectReason)),
        F("detail", 3, Text(128)),
    ),
}

# Events share one key space: 0 = event type, then these keys by meaning.
_EK_SPOT, _EK_SERIAL, _EK_CMD, _EK_BADGE, _EK_AUTH, _EK_OFFLINE, _EK_VALUE, _EK_KIND, _EK_TEXT = (
    range(1, 10)
)
_EK_DATA = 10  # bytes: a CertRenew's CSR
_EK_REASON = 11  # text: why (a FirmwareStatus's failure or rollback); 9 already holds its version
#: A CSR for an ECDSA P-256 or Ed25519 key with CN = a device id is 150..300 bytes of DER;
#: 400 keeps a CertRenew within the event channel's 512 bytes (an RSA CSR does not fit).
CSR = Bytes(64, 400)
#: A device certificate (DER) of the installation's CA: well under 2 KiB.
CERTIFICATE = Bytes(64, 4096)

EVENT_TYPES: dict[type, EventType] = {
    m.VehicleDocked: EventType.VEHICLE_DOCKED,
    m.VehicleRemoved: EventType.VEHICLE_REMOVED,
    m.Locked: EventType.LOCKED,
    m.Unlocked: EventType.UNLOCKED,
    m.UnlockExpired: EventType.UNLOCK_EXPIRED,
    m.BadgePresented: EventType.BADGE_PRESENTED,
    m.ChainInserted: EventType.CHAIN_INSERTED,
    m.ChainRemoved: EventType.CHAIN_REMOVED,
    m.ChainTypeChanged: EventType.CHAIN_TYPE_CHANGED,
    m.PinIncorrect: EventType.PIN_INCORRECT,
    m.PinEntered: EventType.PIN_ENTERED,
    m.BatteryLow: EventType.BATTERY_LOW,
    m.Temperature: EventType.TEMPERATURE,
    m.PowerCut: EventType.POWER_CUT,
    m.PowerRestored: EventType.POWER_RESTORED,
    m.AlarmTriggered: EventType.ALARM_TRIGGERED,
    m.AlarmCleared: EventType.ALARM_CLEARED,
    m.Motion: EventType.MOTION,
    m.BoardFault: EventType.BOARD_FAULT,
    m.BoardRecovered: EventType.BOARD_RECOVERED,
    m.FirmwareStatus: EventType.FIRMWARE_STATUS,
    m.SpotIdentifyFail: EventType.SPOT_IDENTIFY_FAIL,
    m.CertRenew: EventType.CERT_RENEW,
}
EVENT_CLASSES: dict[int, type] = {int(code): cls for cls, code in EVENT_TYPES.items()}

BODY_FIELDS.update(
    {
        m.VehicleDocked: (
            F("spot", _EK_SPOT, SPOT, True),
            F("serial_number", _EK_SERIAL, SERIAL, True),
        ),
        m.VehicleRemoved: (
            F("spot", _EK_SPOT, SPOT, True),
            F("serial_number", _EK_SERIAL, SERIAL, True),
            F("badge_uid", _EK_BADGE, BADGE_UID),
            F("command_id", _EK_CMD, COMMAND_ID),
        ),
        m.Locked: (
            F("spot", _EK_SPOT, SPOT, True),
            F("cause", _EK_KIND, Enum(LockCause), True),
            F("command_id", _EK_CMD, COMMAND_ID),
        ),
        m.Unlocked: (
            F("spot", _EK_SPOT, SPOT, True),
            F("cause", _EK_KIND, Enum(LockCause), True),
            F("command_id", _EK_CMD, COMMAND_ID),
            F("badge_uid", _EK_BADGE, BADGE_UID),
        ),
        m.UnlockExpired: (
            F("spot", _EK_SPOT, SPOT, True),
            F("command_id", _EK_CMD, COMMAND_ID),
            F("badge_uid", _EK_BADGE, BADGE_UID),
        ),
        m.BadgePresented: (
            F("badge_uid", _EK_BADGE, BADGE_UID, True),
            F("authorized", _EK_AUTH, Bool(), True),
            F("offline", _EK_OFFLINE, Bool(), True),
            F("spot", _EK_SPOT, SPOT),
        ),
        m.ChainInserted: (F("chain_type", _EK_KIND, Enum(ChainType)),),
        m.ChainRemoved: (),
        m.ChainTypeChanged: (F("chain_type", _EK_KIND, Enum(ChainType), True),),
        m.PinIncorrect: (F("attempts", _EK_VALUE, UInt(255), True),),
        m.PinEntered: (),
        m.BatteryLow: (
            F("battery", _EK_KIND, Enum(BatteryKind), True),
            F("level_pct", _EK_VALUE, PCT, True),
        ),
        m.Temperature: (
            F("spot", _EK_SPOT, SPOT, True),
            F("celsius", _EK_VALUE, TENTHS, True),
            F("high", _EK_AUTH, Bool(), True),
        ),
        m.PowerCut: (),
        m.PowerRestored: (),
        m.AlarmTriggered: (F("reason", _EK_TEXT, Text(64)),),
        m.AlarmCleared: (),
        m.Motion: (F("kind", _EK_KIND, Enum(MotionKind), True),),
        m.BoardFault: (F("spot", _EK_SPOT, SPOT, True), F("reason", _EK_TEXT, Text(64), True)),
        m.BoardRecovered: (F("spot", _EK_SPOT, SPOT, True),),
        m.FirmwareStatus: (
            F("state", _EK_KIND, Enum(FirmwareState), True),
            F("version", _EK_TEXT, Text(32), True),
            F("spot", _EK_SPOT, SPOT),
            F("reason", _EK_REASON, Text(64), omit=""),
            F("bytes_done", _EK_VALUE, UInt(MAX_IMAGE_SIZE), omit=0),
        ),
        m.SpotIdentifyFail: (F("spot", _EK_SPOT, SPOT, True),),
        m.CertRenew: (F("csr", _EK_DATA, CSR, True),),
    }
)

DOWN_FIELDS: dict[type, tuple[FieldSpec, ...]] = {
    m.BootReply: (
        F("status", 0, Enum(BootStatus), True),
        F("server_time_ms", 1, MILLIS, True),
        F("heartbeat_s", 2, UInt(86_400), True),
        F("boot_id", 3, BOOT_ID, True),
        F("retry_after_s", 4, UInt(86_400)),
        F("acks", 5, Bool()),
    ),
    m.TimeReply: (
        F("server_time_ms", 0, MILLIS, True),
        F("device_ts_ms", 1, MILLIS, True),
    ),
    m.Ack: (F("ranges", 0, ListOf(_AckRangeConv(), MAX_ACK_RANGES), True),),
    m.BadgeReply: (
        F("badge_uid", 0, BADGE_UID, True),
        F("outcome", 1, Enum(BadgeOutcome), True),
        F("reason", 2, Enum(BadgeRefusal)),
        F("spot", 3, SPOT),
        F("rent_id", 4, Text(40)),
    ),
}

COMMAND_TYPES: dict[type, CommandType] = {
    m.Unlock: CommandType.UNLOCK,
    m.Lock: CommandType.LOCK,
    m.SetSpeedLimit: CommandType.SET_SPEED_LIMIT,
    m.SetMaintenance: CommandType.SET_MAINTENANCE,
    m.AuthListUpdate: CommandType.AUTH_LIST_UPDATE,
    m.Config: CommandType.CONFIG,
    m.Reboot: CommandType.REBOOT,
    m.TriggerMessage: CommandType.TRIGGER_MESSAGE,
    m.FirmwareUpdate: CommandType.FIRMWARE_UPDATE,
    m.CertIssued: CommandType.CERT_ISSUED,
}
COMMAND_CLASSES: dict[int, type] = {int(code): cls for cls, code in COMMAND_TYPES.items()}
MAX_AUTH_ENTRIES = 20_000

COMMAND_FIELDS: dict[type, tuple[FieldSpec, ...]] = {
    m.Unlock: (F("spot", 0, SPOT), F("window_s", 1, UInt(600)), F("rent_id", 2, Text(40))),
    m.Lock: (F("spot", 0, SPOT),),
    m.SetSpeedLimit: (F("max_kmh", 0, UInt(100), True),),
    m.SetMaintenance: (
        F("spot", 0, SPOT, True),
        F("on", 1, Bool(), True),
        F("reason", 2, Text(64)),
    ),
    m.AuthListUpdate: (
        F("kind", 0, Enum(AuthListKind), True),
        F("version", 1, VERSION, True),
        F("base_version", 2, VERSION),
        F("add", 3, ListOf(BADGE_UID, MAX_AUTH_ENTRIES)),
        F("remove", 4, ListOf(BADGE_UID, MAX_AUTH_ENTRIES)),
    ),
    m.Config: (F("version", 0, VERSION, True), F("values", 1, ConfigMap())),
    m.Reboot: (F("hard", 0, Bool()),),
    m.TriggerMessage: (F("which", 0, Enum(TriggerKind), True), F("spot", 1, SPOT)),
    # Keys 0-3 (url, version, sha256, size before the signed manifest, SPEC §13) are retired,
    # never reused: all four now come from the verified manifest.
    m.FirmwareUpdate: (
        F("manifest", 5, Bytes(1, MAX_SIGNED_MANIFEST_BYTES), True),
        F("spot", 4, SPOT),
    ),
    m.CertIssued: (F("certificate", 0, CERTIFICATE, True),),
}

# ------------------------------------------------------------------ channels

_UP_CHANNEL: dict[type, Channel] = {
    m.Birth: Channel.BIRTH,
    m.Death: Channel.DEATH,
    m.Heartbeat: Channel.HEARTBEAT,
    m.Status: Channel.STATUS,
    m.Telemetry: Channel.TELEMETRY,
    m.CommandResult: Channel.RESULT,
    **dict.fromkeys(EVENT_TYPES, Channel.EVENT),
}
_UP_CLASS: dict[Channel, type] = {
    ch: cls for cls, ch in _UP_CHANNEL.items() if ch is not Channel.EVENT
}
_DOWN_CHANNEL: dict[type, Channel] = {
    m.BootReply: Channel.BOOT,
    m.TimeReply: Channel.TIME,
    m.Ack: Channel.ACK,
    m.BadgeReply: Channel.BADGE,
}
_DOWN_CLASS: dict[Channel, type] = {ch: cls for cls, ch in _DOWN_CHANNEL.items()}

CHANNEL_OF_CLASS: dict[type, Channel] = {**_UP_CHANNEL, **_DOWN_CHANNEL}

# Messages that are queued and sequenced (seq >= 1); the others carry seq 0.
SEQUENCED_CHANNELS = frozenset({Channel.STATUS, Channel.EVENT, Channel.TELEMETRY, Channel.RESULT})


def channel_of(body: object) -> Channel:
    """The channel (and so the topic suffix) a message body travels on."""
    try:
        return _UP_CHANNEL[type(body)]
    except KeyError:
        try:
            return _DOWN_CHANNEL[type(body)]
        except KeyError:
            raise EncodeError(f"{type(body).__name__} is not a v1 message") from None


# ------------------------------------------------------------------ generic map <-> dataclass


def _encode_fields(obj: object, specs: tuple[FieldSpec, ...]) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for spec in specs:
        value = getattr(obj, spec.attr)
        omitted = spec.omit is not None and value == spec.omit
        if value is None or (not spec.required and (value == () or omitted)):
            if spec.required:
                raise EncodeError(f"{type(obj).__name__}.{spec.attr} is required")
            continue
        try:
            out[spec.key] = spec.conv.encode(value)
        except EncodeError as exc:
            raise EncodeError(f"{type(obj).__name__}.{spec.attr}: {exc.reason}") from None
    return out


def _decode_fields(
    cls: type, specs: tuple[FieldSpec, ...], body: Mapping[Any, Any], where: str
) -> Any:
    kwargs: dict[str, Any] = {}
    for spec in specs:
        if spec.key in body:
            kwargs[spec.attr] = spec.conv.decode(body[spec.key], f"{where}.{spec.attr}")
        elif spec.required:
            raise SchemaError(f"{where}.{spec.attr} (key {spec.key}) is missing", field=spec.attr)
    # Unknown keys are ignored: a newer minor version may add optional fields.
    return cls(**kwargs)


def _loads(channel: Channel, data: bytes) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"payload must be bytes, not {type(data).__name__}", channel=channel)
    limit = MAX_SIZE[channel]
    if len(data) > limit:
        raise DecodeError(f"{len(data)} bytes is over the {limit}-byte limit", channel=channel)
    if not data:
        raise DecodeError("empty payload", channel=channel)
    try:
        return loads_strict(data)
    except NotOneItem as exc:
        raise DecodeError(f"not one CBOR item: {exc}", channel=channel) from None
    except Exception as exc:  # cbor2 raises several types; all mean "not CBOR"
        raise DecodeError(f"not valid CBOR: {exc}", channel=channel) from None


# ------------------------------------------------------------------ device -> cloud


def _encode_stamp_item(conv: UInt, value: int, name: str) -> int:
    try:
        return conv.encode(value)
    except EncodeError as exc:
        raise EncodeError(f"Stamp.{name}: {exc.reason}") from None


def _fit(channel: Channel, data: bytes) -> bytes:
    """``data`` if the receiving side (and the broker's message_size_limit, the largest of
    these) will take it; an EncodeError at the source otherwise, not a silent drop."""
    limit = MAX_SIZE[channel]
    if len(data) > limit:
        raise EncodeError(f"{channel}: {len(data)} bytes is over the {limit}-byte limit")
    return data


def encode_up(stamp: m.Stamp, body: m.UpBody) -> bytes:
    channel = channel_of(body)
    if channel not in SEQUENCED_CHANNELS and stamp.seq != 0:
        raise EncodeError(f"{channel} messages carry seq 0, not {stamp.seq}")
    if channel in SEQUENCED_CHANNELS and stamp.seq < 1:
        raise EncodeError(f"{channel} messages carry seq >= 1")
    header = [
        _encode_stamp_item(BOOT_ID, stamp.boot_id, "boot_id"),
        _encode_stamp_item(UInt(), stamp.seq, "seq"),
        _encode_stamp_item(MILLIS, stamp.ts_ms, "ts_ms"),
    ]
    if channel is Channel.EVENT:
        fields = {0: int(EVENT_TYPES[type(body)])}
        fields.update(_encode_fields(body, BODY_FIELDS[type(body)]))
    else:
        fields = _encode_fields(body, BODY_FIELDS[type(body)])
    return _fit(channel, cbor2.dumps([*header, fields]))


def decode_up(channel: Channel, data: bytes) -> m.UpMessage:
    """Decode a device message received on ``channel``; raises DecodeError subclasses only."""
    try:
        return _decode_up(channel, data)
    except ProtocolError:
        raise
    except Exception as exc:  # a bug must not let a hostile payload crash ingest
        raise DecodeError(f"undecodable: {type(exc).__name__}: {exc}", channel=channel) from None


def _decode_up(channel: Channel, data: bytes) -> m.UpMessage:
    if channel not in _UP_CLASS and channel is not Channel.EVENT:
        raise DecodeError(f"{channel} is not a device -> cloud channel", channel=channel)
    wire = _loads(channel, data)
    if type(wire) is not list or len(wire) != 4 or type(wire[3]) is not dict:
        raise SchemaError("expected [boot_id, seq, ts_ms, {body}]", channel=channel)
    stamp = m.Stamp(
        BOOT_ID.decode(wire[0], "boot_id"),
        UInt().decode(wire[1], "seq"),
        MILLIS.decode(wire[2], "ts_ms"),
    )
    if (stamp.seq == 0) == (channel in SEQUENCED_CHANNELS):
        raise SchemaError(
            f"seq {stamp.seq} is not allowed on {channel}", channel=channel, field="seq"
        )
    body_map = wire[3]
    if channel is Channel.EVENT:
        code = body_map.get(0)
        cls = EVENT_CLASSES.get(code) if type(code) is int else None
        if cls is None:
            raise UnknownTypeError(f"unknown event type {code!r}", channel=channel, field="type")
    else:
        cls = _UP_CLASS[channel]
    body = _decode_fields(cls, BODY_FIELDS[cls], body_map, cls.__name__)
    if isinstance(body, m.Status):
        body = _fix_state(body)
    return m.UpMessage(stamp, body)


def _fix_state(status: m.Status) -> m.Status:
    enum: type[SpotState] | type[DeviceState] = DeviceState if status.spot == 0 else SpotState
    try:
        state = enum(int(status.state))
    except ValueError:
        raise SchemaError(
            f"Status.state {int(status.state)} is not a {enum.__name__}",
            channel=Channel.STATUS,
            field="state",
        ) from None
    return dataclasses.replace(status, state=state)


# ------------------------------------------------------------------ cloud -> device


DownBody = m.BootReply | m.TimeReply | m.Ack | m.BadgeReply


def encode_down(body: DownBody) -> bytes:
    return _fit(channel_of(body), cbor2.dumps(_encode_fields(body, DOWN_FIELDS[type(body)])))


def decode_down(channel: Channel, data: bytes) -> DownBody:
    try:
        if channel not in _DOWN_CLASS:
            raise DecodeError(
                f"{channel} is not a boot, time, ack or badge channel", channel=channel
            )
        wire = _loads(channel, data)
        if type(wire) is not dict:
            raise SchemaError("expected a map", channel=channel)
        cls = _DOWN_CLASS[channel]
        result: DownBody = _decode_fields(cls, DOWN_FIELDS[cls], wire, cls.__name__)
        return result
    except ProtocolError:
        raise
    except Exception as exc:
        raise DecodeError(f"undecodable: {type(exc).__name__}: {exc}", channel=channel) from None


def encode_command_payload(envelope: m.CommandEnvelope) -> bytes:
    """The bytes that get signed (COSE_Sign1 payload)."""
    cls = type(envelope.command)
    if cls not in COMMAND_TYPES:
        raise EncodeError(f"{cls.__name__} is not a v1 command")
    if envelope.expires_at_ms <= envelope.issued_at_ms:
        raise EncodeError("a command must expire after it is issued")
    return cbor2.dumps(
        {
            0: COMMAND_ID.encode(envelope.command_id),
            1: Text(32, 1).encode(envelope.device_id),
            2: int(COMMAND_TYPES[cls]),
            3: MILLIS.encode(envelope.issued_at_ms),
            4: MILLIS.encode(envelope.expires_at_ms),
            5: _encode_fields(envelope.command, COMMAND_FIELDS[cls]),
        }
    )


def decode_command_payload(data: bytes) -> m.CommandEnvelope:
    try:
        wire = _loads(Channel.COMMAND, data)
        if type(wire) is not dict:
            raise SchemaError("command payload must be a map", channel=Channel.COMMAND)
        for key in range(6):
            if key not in wire:
                raise SchemaError(f"command key {key} is missing", channel=Channel.COMMAND)
        code = wire[2]
        cls = COMMAND_CLASSES.get(code) if type(code) is int else None
        if cls is None:
            raise UnknownTypeError(
                f"unknown command type {code!r}", channel=Channel.COMMAND, field="type"
            )
        if type(wire[5]) is not dict:
            raise SchemaError("command args must be a map", channel=Channel.COMMAND, field="args")
        return m.CommandEnvelope(
            command_id=COMMAND_ID.decode(wire[0], "command_id"),
            device_id=Text(32, 1).decode(wire[1], "device_id"),
            issued_at_ms=MILLIS.decode(wire[3], "issued_at_ms"),
            expires_at_ms=MILLIS.decode(wire[4], "expires_at_ms"),
            command=_decode_fields(cls, COMMAND_FIELDS[cls], wire[5], cls.__name__),
        )
    except ProtocolError as exc:
        exc.channel = Channel.COMMAND
        raise
    except Exception as exc:
        raise DecodeError(
            f"undecodable command: {type(exc).__name__}: {exc}", channel=Channel.COMMAND
        ) from None


def ack_ranges(keys: Iterable[tuple[int, int]]) -> list[m.AckRange]:
    """(boot_id, seq) keys merged into ranges of consecutive seqs, boot by boot, seq by seq."""
    ranges: list[m.AckRange] = []
    for boot_id, seq in sorted(set(keys)):
        last = ranges[-1] if ranges else None
        if last is not None and last.boot_id == boot_id and last.last + 1 == seq:
            ranges[-1] = m.AckRange(boot_id, last.first, seq)
        else:
            ranges.append(m.AckRange(boot_id, seq, seq))
    return ranges


def acks_for(keys: Iterable[tuple[int, int]]) -> list[m.Ack]:
    """The Ack messages covering ``keys``: as many as needed at MAX_ACK_RANGES ranges each."""
    ranges = ack_ranges(keys)
    return [
        m.Ack(tuple(ranges[i : i + MAX_ACK_RANGES])) for i in range(0, len(ranges), MAX_ACK_RANGES)
    ]


def command_type_of(command: m.CommandBody) -> CommandType:
    return COMMAND_TYPES[type(command)]


# Re-exported for handlers that switch on codes.
__all__ = [
    "COMMAND_CLASSES",
    "EVENT_CLASSES",
    "MAX_ACK_RANGES",
    "MAX_SIZE",
    "SEQUENCED_CHANNELS",
    "ack_ranges",
    "acks_for",
    "channel_of",
    "command_type_of",
    "decode_command_payload",
    "decode_down",
    "decode_up",
    "encode_command_payload",
    "encode_down",
    "encode_up",
]
