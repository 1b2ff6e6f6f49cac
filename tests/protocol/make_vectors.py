# ruff: noqa: F403, F405
"""Writes protocol/vectors/v1.json. Run once when the protocol grows; the file is committed
and the suites check the codec against it, so a change of wire format shows up as a diff.

    .venv/bin/python tests/protocol/make_vectors.py
"""

from __future__ import annotations

import json

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pycose.algorithms import EdDSA
from pycose.headers import KID, Algorithm
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import Sign1Message

from kickstand.protocol import signing
from kickstand.protocol.errors import DecodeError
from kickstand.protocol.jsonform import to_jsonable, vectors_path
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import *

BOOT = 0x5EED_B007
TS = 1_763_740_800_123  # 2025-11-21T16:00:00.123Z
CID = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
UID = bytes.fromhex("04a1b2c3d4e5f6")
TEST_SEED = bytes(range(32))  # TEST ONLY


def up(name: str, seq: int, body: m.UpBody, ts_ms: int = TS) -> dict[str, object]:
    data = codec.encode_up(m.Stamp(BOOT, seq, ts_ms), body)
    decoded = codec.decode_up(codec.channel_of(body), data)
    assert decoded.body == body
    return {
        "name": name,
        "channel": codec.channel_of(body).value,
        "hex": data.hex(),
        "valid": True,
        "decoded": to_jsonable(decoded),
    }


def bad(name: str, channel: Channel, data: bytes, error: str) -> dict[str, object]:
    try:
        down = channel in (Channel.BOOT, Channel.TIME, Channel.ACK, Channel.BADGE)
        (codec.decode_down if down else codec.decode_up)(channel, data)
    except DecodeError as exc:
        assert exc.code == error, f"{name}: {exc}"
    else:
        raise AssertionError(f"{name} decoded")
    return {
        "name": name,
        "channel": channel.value,
        "hex": data.hex(),
        "valid": False,
        "error": error,
    }


def valid_up(name: str, channel: Channel, data: bytes) -> dict[str, object]:
    """A valid message in an encoding our encoder does not produce (it still decodes)."""
    return {
        "name": name,
        "channel": channel.value,
        "hex": data.hex(),
        "valid": True,
        "canonical": False,
        "decoded": to_jsonable(codec.decode_up(channel, data)),
    }


class Raw(bytes):
    """Bytes that are CBOR already (``cat`` writes them as they are)."""


def cat(*items: object) -> bytes:
    """CBOR items back to back: map entries written by hand (cbor2 cannot repeat a key)."""
    return b"".join(i if isinstance(i, Raw) else cbor2.dumps(i) for i in items)


def cbor_map(*entries: object) -> Raw:
    """A definite map of ``entries`` (key, value, key, value…), repeats kept."""
    assert len(entries) % 2 == 0 and len(entries) < 48
    return Raw(bytes([0xA0 + len(entries) // 2]) + cat(*entries))


def envelope(boot_id: int, seq: int, ts_ms: int, body_bytes: bytes) -> bytes:
    return b"\x84" + cat(boot_id, seq, ts_ms) + body_bytes


BIG = 2**63  # one more than the largest integer the cloud stores (PostgreSQL bigint)


def signed_payload(name: str, payload: bytes, error: str) -> dict[str, object]:
    """A correctly signed command whose payload the device must refuse (MALFORMED)."""
    try:
        codec.decode_command_payload(payload)
    except DecodeError as exc:
        assert exc.code == error, f"{name}: {exc}"
    else:
        raise AssertionError(f"{name} decoded")
    seed = Ed25519PrivateKey.from_private_bytes(TEST_SEED)
    public = signing.public_key_bytes(seed)
    msg = Sign1Message(phdr={Algorithm: EdDSA, KID: signing.key_id(public)}, payload=bytes(payload))
    msg.key = OKPKey(crv=Ed25519, d=TEST_SEED, x=public)
    return {
        "name": name,
        "channel": "cmd",
        "hex": msg.encode(tag=True).hex(),
        "valid": False,
        "error": error,
        "verify_at_ms": TS + 1000,
    }


def main() -> None:
    v: list[dict[str, object]] = []
    v.append(
        up(
            "birth-station",
            0,
            m.Birth(
                DeviceKind.STATION,
                "1.4.2",
                "mb-3",
                12,
                7,
                (
                    m.Component("spot", 1, "2.1.0"),
                    m.Component("spot", 2, "2.1.0"),
                    m.Component("nfc", 0, ""),
                ),
                41,
            ),
        )
    )
    v.append(
        up(
            "birth-vehicle",
            0,
            m.Birth(
                DeviceKind.VEHICLE,
                "3.0.1",
                "ctl-2",
                3,
                2,
                (m.Component("gps", 0, "u-blox8"),),
                1,
                "EB102938",
            ),
        )
    )
    v.append(
        up(
            "birth-station-acks",
            0,
            m.Birth(DeviceKind.STATION, "1.5.0", "mb-3", 12, 7, (), 41, acks=True),
        )
    )
    v.append(up("death-will", 0, m.Death()))
    v.append(up("heartbeat", 0, m.Heartbeat()))
    v.append(
        up(
            "status-spot-docked",
            17,
            m.Status(3, SpotState.DOCKED_LOCKED, LockState.LOCKED, "AB12345"),
        )
    )
    v.append(up("status-spot-short", 1234, m.Status(3, SpotState.EMPTY)))
    v.append(
        up("status-station-degraded", 18, m.Status(0, DeviceState.DEGRADED, fault="spot 4 silent"))
    )
    v.append(
        up("status-vehicle", 19, m.Status(0, DeviceState.LOCKED, LockState.LOCKED, battery_pct=64))
    )
    v.append(
        up(
            "telemetry-position",
            20,
            m.Telemetry(
                lat=45.764043, lon=4.835659, speed_kmh=18.5, heading_deg=270, battery_pct=87
            ),
        )
    )
    v.append(
        up(
            "telemetry-station",
            21,
            m.Telemetry(
                temperature_c=-3.5,
                energy_wh=123456,
                power_w=87,
                spot_temperatures_c=((1, 21.5), (2, 48.0)),
            ),
        )
    )
    v.append(up("event-docked", 22, m.VehicleDocked(5, "AB12345")))
    v.append(up("event-removed", 23, m.VehicleRemoved(3, "AB12345", command_id=CID)))
    v.append(
        up(
            "event-unlocked-badge-offline",
            24,
            m.Unlocked(2, LockCause.OFFLINE_BADGE, badge_uid=UID),
        )
    )
    v.append(up("event-unlock-expired", 25, m.UnlockExpired(3, command_id=CID)))
    v.append(up("event-badge", 26, m.BadgePresented(UID, False, True, 0)))
    v.append(up("event-battery-low-vae", 27, m.BatteryLow(BatteryKind.VAE, 18)))
    v.append(up("event-temperature-high", 28, m.Temperature(4, 61.5, True)))
    v.append(up("event-motion-fallen", 29, m.Motion(MotionKind.FALLEN)))
    v.append(up("event-power-cut", 30, m.PowerCut()))
    v.append(up("event-board-fault", 31, m.BoardFault(6, "no answer after 3 tries")))
    v.append(up("event-firmware", 32, m.FirmwareStatus(FirmwareState.INSTALLED, "2.2.0", 6)))
    v.append(
        up(
            "result-rejected",
            33,
            m.CommandResult(CID, ResultStatus.REJECTED, RejectReason.EXPIRED, "expired 2.0 s ago"),
        )
    )
    v.append(up("result-done", 34, m.CommandResult(CID, ResultStatus.DONE)))
    ok_status = bytes.fromhex(str(v[4]["hex"]))
    v += [
        bad("empty", Channel.STATUS, b"", "malformed"),
        bad("not-cbor", Channel.STATUS, b"\xff\x00", "malformed"),
        bad("truncated", Channel.STATUS, ok_status[:-2], "malformed"),
        bad("json-not-cbor", Channel.EVENT, b'{"spot": 1}', "malformed"),
        bad("status-seq-zero", Channel.STATUS, cbor2.dumps([BOOT, 0, TS, {0: 1, 1: 1}]), "schema"),
        bad("heartbeat-with-seq", Channel.HEARTBEAT, cbor2.dumps([BOOT, 5, TS, {}]), "schema"),
        bad("status-missing-state", Channel.STATUS, cbor2.dumps([BOOT, 1, TS, {0: 1}]), "schema"),
        bad(
            "status-spot-text", Channel.STATUS, cbor2.dumps([BOOT, 1, TS, {0: "1", 1: 1}]), "schema"
        ),
        bad(
            "status-unknown-spot-state",
            Channel.STATUS,
            cbor2.dumps([BOOT, 1, TS, {0: 1, 1: 99}]),
            "schema",
        ),
        bad(
            "station-state-on-spot-0",
            Channel.STATUS,
            cbor2.dumps([BOOT, 1, TS, {0: 0, 1: 3}]),
            "schema",
        ),
        bad(
            "event-unknown-type",
            Channel.EVENT,
            cbor2.dumps([BOOT, 1, TS, {0: 200}]),
            "unknown-type",
        ),
        bad(
            "event-docked-no-serial",
            Channel.EVENT,
            cbor2.dumps([BOOT, 1, TS, {0: 1, 1: 3}]),
            "schema",
        ),
        bad(
            "event-serial-too-long",
            Channel.EVENT,
            cbor2.dumps([BOOT, 1, TS, {0: 1, 1: 3, 2: "X" * 40}]),
            "schema",
        ),
        bad(
            "telemetry-lat-out-of-range",
            Channel.TELEMETRY,
            cbor2.dumps([BOOT, 1, TS, {0: 91_000_000}]),
            "schema",
        ),
        bad(
            "telemetry-float-lat",
            Channel.TELEMETRY,
            cbor2.dumps([BOOT, 1, TS, {0: 45.7}]),
            "schema",
        ),
        bad("boot-id-negative", Channel.STATUS, cbor2.dumps([-1, 1, TS, {0: 1, 1: 1}]), "schema"),
        bad("envelope-too-short", Channel.STATUS, cbor2.dumps([BOOT, 1, TS]), "schema"),
        bad("envelope-map", Channel.STATUS, cbor2.dumps({0: BOOT}), "schema"),
        bad("deep-nesting", Channel.TELEMETRY, b"\x81" * 400 + b"\x00", "schema"),
        bad(
            "oversized",
            Channel.STATUS,
            cbor2.dumps([BOOT, 1, TS, {0: 1, 1: 1, 9: "x" * 600}]),
            "malformed",
        ),
        bad(
            "result-short-command-id",
            Channel.RESULT,
            cbor2.dumps([BOOT, 1, TS, {0: b"abc", 1: 3}]),
            "schema",
        ),
        bad(
            "badge-uid-too-short",
            Channel.EVENT,
            cbor2.dumps([BOOT, 1, TS, {0: 6, 4: b"\x01", 5: True, 6: False}]),
            "schema",
        ),
    ]
    # Every value that decodes can be stored: integers within PostgreSQL's columns, text
    # without control characters, text limits counted in UTF-8 bytes.
    v.append(up("status-ts-ms-max", 41, m.Status(3, SpotState.EMPTY), ts_ms=BIG - 1))
    status_body = cbor_map(0, 3, 1, 1)
    v += [
        bad("boot-id-zero", Channel.STATUS, envelope(0, 1, TS, status_body), "schema"),
        bad("ts-ms-2-pow-63", Channel.STATUS, envelope(BOOT, 1, BIG, status_body), "schema"),
        bad(
            "ts-ms-bignum-2-pow-64",
            Channel.STATUS,
            envelope(BOOT, 1, 2**64, status_body),
            "schema",
        ),
        bad(
            "telemetry-energy-2-pow-63",
            Channel.TELEMETRY,
            envelope(BOOT, 1, TS, cbor_map(9, BIG)),
            "schema",
        ),
        bad(
            "birth-config-version-2-pow-31",
            Channel.BIRTH,
            envelope(BOOT, 0, TS, cbor_map(0, 1, 1, "1.4.2", 2, "mb-3", 3, 2**31)),
            "schema",
        ),
        bad(
            "status-fault-nul",
            Channel.STATUS,
            envelope(BOOT, 1, TS, cbor_map(0, 0, 1, 5, 4, "lock\x00jammed")),
            "schema",
        ),
        bad(
            "death-reason-newline",
            Channel.DEATH,
            envelope(BOOT, 0, TS, cbor_map(0, "reboot\nforged log line")),
            "schema",
        ),
        bad(
            "result-detail-c1-control",
            Channel.RESULT,
            envelope(BOOT, 1, TS, cbor_map(0, CID, 1, 2, 3, "csi\x9b2J")),
            "schema",
        ),
        bad(
            "event-serial-17-utf8-bytes",
            Channel.EVENT,
            envelope(BOOT, 1, TS, cbor_map(0, 1, 1, 3, 2, "AB" + "\u00e9" * 7 + "C")),
            "schema",
        ),
        # One well-formed CBOR item, each map key once.
        bad(
            "duplicate-key",
            Channel.STATUS,
            envelope(BOOT, 1, TS, cbor_map(0, 3, 1, 1, 0, 4)),
            "malformed",
        ),
        bad(
            "duplicate-key-two-encodings",
            Channel.STATUS,
            envelope(BOOT, 1, TS, cbor_map(0, 3, 1, 1, Raw(b"\x18\x00"), 4)),
            "malformed",
        ),
        bad(
            "duplicate-key-in-unknown-value",
            Channel.STATUS,
            envelope(BOOT, 1, TS, cbor_map(0, 3, 1, 1, 77, cbor_map(1, "a", 1, "b"))),
            "malformed",
        ),
        bad(
            "duplicate-key-indefinite-map",
            Channel.STATUS,
            envelope(BOOT, 1, TS, b"\xbf" + cat(0, 3, 1, 1, 1, 2) + b"\xff"),
            "malformed",
        ),
        bad(
            "trailing-bytes",
            Channel.STATUS,
            envelope(BOOT, 1, TS, status_body) + b"\x00",
            "malformed",
        ),
        bad(
            "two-messages",
            Channel.STATUS,
            envelope(BOOT, 1, TS, status_body) + envelope(BOOT, 2, TS, status_body),
            "malformed",
        ),
    ]
    # Any valid encoding decodes (SPEC §1): indefinite lengths, a longer integer than needed.
    v.append(
        valid_up(
            "status-indefinite-lengths",
            Channel.STATUS,
            b"\x9f"
            + cat(BOOT)
            + b"\x1a\x00\x00\x00\x2a"
            + cat(TS)
            + b"\xbf"
            + cat(0, 3, 1, 1)
            + b"\xff\xff",
        )
    )
    # Forward compatibility: an unknown key is ignored.
    fwd = cbor2.dumps([BOOT, 40, TS, {0: 3, 1: 2, 77: "from v1.1"}])
    v.append(
        {
            "name": "status-unknown-key-ignored",
            "channel": "status",
            "hex": fwd.hex(),
            "valid": True,
            "canonical": False,
            "decoded": to_jsonable(codec.decode_up(Channel.STATUS, fwd)),
        }
    )

    for name, body in [
        ("boot-accepted", m.BootReply(BootStatus.ACCEPTED, TS + 40, 60, BOOT)),
        ("boot-pending", m.BootReply(BootStatus.PENDING, TS + 40, 60, BOOT, 30)),
        ("boot-accepted-acks", m.BootReply(BootStatus.ACCEPTED, TS + 40, 60, BOOT, acks=True)),
        ("time", m.TimeReply(TS + 55, TS)),
        ("ack-one", m.Ack((m.AckRange(BOOT, 1, 1),))),
        (
            "ack-ranges",
            m.Ack(
                (m.AckRange(BOOT - 1, 17, 40), m.AckRange(BOOT, 1, 12), m.AckRange(BOOT, 14, 14))
            ),
        ),
        ("badge-unlocking", m.BadgeReply(UID, BadgeOutcome.UNLOCKING, None, 2, "4711")),
        ("badge-linked", m.BadgeReply(UID, BadgeOutcome.LINKED)),
        ("badge-refused", m.BadgeReply(UID, BadgeOutcome.REFUSED, BadgeRefusal.RENTAL_LIMIT)),
    ]:
        data = codec.encode_down(body)
        v.append(
            {
                "name": name,
                "channel": codec.channel_of(body).value,
                "hex": data.hex(),
                "valid": True,
                "decoded": to_jsonable(codec.decode_down(codec.channel_of(body), data)),
            }
        )
    v.append(bad("boot-missing-boot-id", Channel.BOOT, cbor2.dumps({0: 1, 1: TS, 2: 60}), "schema"))
    v.append(bad("ack-empty-map", Channel.ACK, cbor2.dumps({}), "schema"))
    v.append(bad("ack-seq-zero", Channel.ACK, cbor2.dumps({0: [[BOOT, 0, 3]]}), "schema"))
    v.append(bad("ack-first-after-last", Channel.ACK, cbor2.dumps({0: [[BOOT, 9, 3]]}), "schema"))
    v += [
        bad("boot-boot-id-zero", Channel.BOOT, cbor2.dumps({0: 1, 1: TS, 2: 60, 3: 0}), "schema"),
        bad("ack-boot-id-zero", Channel.ACK, cbor2.dumps({0: [[0, 1, 3]]}), "schema"),
        bad("badge-outcome-unknown", Channel.BADGE, cbor2.dumps({0: UID, 1: 9}), "schema"),
        bad("time-server-time-2-pow-63", Channel.TIME, cbor2.dumps({0: BIG, 1: TS}), "schema"),
        bad(
            "boot-duplicate-key",
            Channel.BOOT,
            cbor_map(0, 1, 1, TS, 2, 60, 3, BOOT, 0, 3),
            "malformed",
        ),
        bad(
            "ack-trailing-bytes",
            Channel.ACK,
            cbor2.dumps({0: [[BOOT, 1, 3]]}) + b"\xa0",
            "malformed",
        ),
    ]

    signer = signing.CommandSigner(Ed25519PrivateKey.from_private_bytes(TEST_SEED))
    commands = [
        ("cmd-unlock", m.Unlock(3, 30, "rent-42")),
        ("cmd-lock-vehicle", m.Lock()),
        ("cmd-speed", m.SetSpeedLimit(15)),
        ("cmd-maintenance", m.SetMaintenance(4, True, "lock jammed")),
        (
            "cmd-auth-full",
            m.AuthListUpdate(AuthListKind.FULL, 9, None, (UID, bytes.fromhex("deadbeef"))),
        ),
        ("cmd-auth-diff", m.AuthListUpdate(AuthListKind.DIFF, 10, 9, (), (UID,))),
        ("cmd-config", m.Config(13, {"unlock_window_s": 45, "offline_unknown_badge": "refuse"})),
        ("cmd-reboot", m.Reboot()),
        ("cmd-trigger", m.TriggerMessage(TriggerKind.STATUS, 0)),
        (
            "cmd-firmware",
            m.FirmwareUpdate("https://fw.example/spot-2.2.0.bin", "2.2.0", bytes(32), 65536, 6),
        ),
    ]
    for name, cmd in commands:
        env = m.CommandEnvelope(CID, "st-0001", TS, TS + 30_000, cmd)
        v.append(
            {
                "name": name,
                "channel": "cmd",
                "hex": signer.sign(env).hex(),
                "valid": True,
                "decoded": to_jsonable(env),
                "verify_at_ms": TS + 1000,
            }
        )
    # Signed correctly, refused all the same: the payload breaks the same rules.
    cmd_head = [0, CID, 1, "st-0001", 2, 1, 3, TS]
    config_head = [0, CID, 1, "st-0001", 2, 6, 3, TS, 4, TS + 30_000]
    v += [
        signed_payload(
            "cmd-duplicate-key",
            cbor_map(*cmd_head, 4, TS + 30_000, 5, cbor_map(0, 3), 2, 2),
            "malformed",
        ),
        signed_payload(
            "cmd-duplicate-config-key",
            cbor_map(*config_head, 5, cbor_map(0, 13, 1, cbor_map("a", 1, "a", 2))),
            "malformed",
        ),
        signed_payload(
            "cmd-trailing-bytes",
            cbor_map(*cmd_head, 4, TS + 30_000, 5, cbor_map(0, 3)) + b"\x00",
            "malformed",
        ),
        signed_payload(
            "cmd-expires-2-pow-63",
            cbor_map(*cmd_head, 4, BIG, 5, cbor_map(0, 3)),
            "schema",
        ),
        signed_payload(
            "cmd-config-key-nul",
            cbor_map(*config_head, 5, cbor_map(0, 13, 1, cbor_map("a\x00", 1))),
            "schema",
        ),
    ]
    out = {
        "about": "Protocol v1 test vectors. Valid ones decode to 'decoded' (and re-encode to "
        "the same bytes unless 'canonical' is false); invalid ones raise the error code named "
        "(SPEC §11). Commands verify with test_keys at verify_at_ms; an invalid command is "
        "signed correctly and refused MALFORMED for the error its payload raises.",
        "test_keys": {
            "ed25519_seed_hex": TEST_SEED.hex(),
            "public_hex": signer.public_key.hex(),
            "kid_hex": signer.kid.hex(),
            "device_id": "st-0001",
        },
        "vectors": v,
    }
    vectors_path().write_text(json.dumps(out, indent=1) + "\n")
    print(f"{len(v)} vectors -> {vectors_path()}")


if __name__ == "__main__":
    main()
