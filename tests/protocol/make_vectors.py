# ruff: noqa: F403, F405
"""Writes protocol/vectors/v1.json. Run once when the protocol grows; the file is committed
and the suites check the codec against it, so a change of wire format shows up as a diff.

    .venv/bin/python tests/protocol/make_vectors.py
"""

from __future__ import annotations

import hashlib
import json
import struct

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kickstand.protocol import firmware, signing
from kickstand.protocol import spotbus as sb
from kickstand.protocol.errors import CommandRejected, DecodeError, FrameError
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
PUBLIC = signing.public_key_bytes(Ed25519PrivateKey.from_private_bytes(TEST_SEED))
OTHER_SEED = bytes(range(1, 33))  # TEST ONLY: a key the device does not trust
DEVICE_KEY_SEED = bytes(range(2, 34))  # TEST ONLY: a device's TLS key (CertRenew's CSR)
CA_KEY_SEED = bytes(range(3, 35))  # TEST ONLY: an installation CA (CertIssued)
FIRMWARE_SEED = bytes(range(4, 36))  # TEST ONLY: an installation's firmware signing key
FIRMWARE_KEY = Ed25519PrivateKey.from_private_bytes(FIRMWARE_SEED)
MANIFEST = firmware.Manifest(
    target="spot-board:sb2",
    version="2.2.0",
    size=65536,
    sha256=hashlib.sha256(b"\x00" * 65536).digest(),
    url="https://api.example/v1/firmware/images/"
    + hashlib.sha256(b"\x00" * 65536).hexdigest(),
    min_hardware="2",
    min_bootloader="",
    issued_at=TS // 1000,
)
SIGNED_MANIFEST = firmware.sign_manifest(FIRMWARE_KEY, MANIFEST)


def _csr_and_certificate() -> tuple[bytes, bytes]:
    """A CSR of st-0001 and the certificate a CA signs for it: Ed25519 signatures are
    deterministic, the dates and serial fixed, so the vectors do not change between runs."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = Ed25519PrivateKey.from_private_bytes(DEVICE_KEY_SEED)
    ca = Ed25519PrivateKey.from_private_bytes(CA_KEY_SEED)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "st-0001")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, None)
    start = dt.datetime(2025, 11, 21, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")]))
        .public_key(key.public_key())
        .serial_number(0x17_0001)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=365))
        .sign(ca, None)
    )
    return csr.public_bytes(Encoding.DER), cert.public_bytes(Encoding.DER)


CSR_DER, CERT_DER = _csr_and_certificate()


def wire(item: object) -> object:
    """The CBOR data model of ``item`` in JSON (SPEC §11, the vectors' ``cbor`` field): maps
    as ``{"map": [[key, value], …]}`` in the order of the bytes, byte strings ``{"bytes":
    hex}``, floats ``{"float": x}``, tags ``{"tag": n, "value": item}``; integers, text,
    booleans, null and arrays as themselves."""
    if isinstance(item, cbor2.CBORTag):
        return {"tag": item.tag, "value": wire(item.value)}
    if isinstance(item, bytes):
        return {"bytes": item.hex()}
    if isinstance(item, float):
        return {"float": item}
    if isinstance(item, list):
        return [wire(i) for i in item]
    if isinstance(item, dict):
        return {"map": [[wire(k), wire(v)] for k, v in item.items()]}
    assert item is None or isinstance(item, bool | int | str), item
    return item


def cbor_of(data: bytes) -> object:
    return wire(cbor2.loads(data))


def up(name: str, seq: int, body: m.UpBody, ts_ms: int = TS) -> dict[str, object]:
    data = codec.encode_up(m.Stamp(BOOT, seq, ts_ms), body)
    decoded = codec.decode_up(codec.channel_of(body), data)
    assert decoded.body == body
    return {
        "name": name,
        "channel": codec.channel_of(body).value,
        "hex": data.hex(),
        "valid": True,
        "round_trip": True,
        "decoded": to_jsonable(decoded),
        "cbor": cbor_of(data),
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


def decode_only(name: str, channel: Channel, data: bytes, note: str) -> dict[str, object]:
    """A valid message that decodes but that the canonical encoding does not give back
    (another valid encoding, or a key this version ignores): ``round_trip`` false."""
    return {
        "name": name,
        "channel": channel.value,
        "hex": data.hex(),
        "valid": True,
        "round_trip": False,
        "note": note,
        "decoded": to_jsonable(codec.decode_up(channel, data)),
        "cbor": cbor_of(data),
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


def cose_sign1(payload: bytes, seed: bytes = TEST_SEED, alg: int = -8) -> bytes:
    """COSE_Sign1 (RFC 9052 §4.4) written by hand, so a vector can carry what our signer
    refuses to write (another algorithm, any payload)."""
    key = Ed25519PrivateKey.from_private_bytes(seed)
    protected = cbor2.dumps({1: alg, 4: signing.key_id(signing.public_key_bytes(key))})
    signature = key.sign(cbor2.dumps(["Signature1", protected, b"", payload]))
    return cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, signature]))


def refused(
    name: str, data: bytes, error: str, reject: RejectReason, verify_at_ms: int = TS + 1000
) -> dict[str, object]:
    """A command a device refuses (SPEC §7.2): ``reject`` is the RejectReason of its result.
    ``error`` is the class of what is wrong: the payload's decoding class, or ``refused``
    when the payload decodes and a check of §7.2 fails (key, signature, device, time)."""
    verifier = signing.CommandVerifier(
        "st-0001",
        {signing.key_id(PUBLIC): PUBLIC},
        signing.MemoryReplayGuard(lambda: verify_at_ms),
        clock=lambda: verify_at_ms,
    )
    try:
        verifier.verify(data)
    except CommandRejected as exc:
        assert exc.reject_reason == reject, f"{name}: {exc}"
    else:
        raise AssertionError(f"{name} verified")
    out: dict[str, object] = {
        "name": name,
        "channel": "cmd",
        "hex": data.hex(),
        "valid": False,
        "error": error,
        "reject": reject.name,
        "verify_at_ms": verify_at_ms,
    }
    try:
        out["cbor"] = cbor_of(data)
    except Exception:  # not CBOR at all: nothing to show
        pass
    return out


def signed_payload(
    name: str, payload: bytes, error: str, reject: RejectReason = RejectReason.MALFORMED
) -> dict[str, object]:
    """A correctly signed command whose payload the device must refuse."""
    try:
        codec.decode_command_payload(payload)
    except DecodeError as exc:
        assert exc.code == error, f"{name}: {exc}"
    else:
        raise AssertionError(f"{name} decoded")
    return refused(name, cose_sign1(payload), error, reject)


CLASSES = {
    "malformed": "not exactly one well-formed CBOR item with unique map keys, or over the "
    "channel's size limit (SPEC §10, §11)",
    "schema": "one well-formed CBOR item of the wrong shape, type or range: envelope, a field "
    "missing or mistyped, a value outside its limits (SPEC §3, §6, §10)",
    "unknown-type": "of the right shape, but an event or command type this version does not "
    "know; a kind of schema (SPEC §8)",
    "refused": "a command whose payload decodes but that fails a check of SPEC §7.2 "
    "(algorithm, key, signature, device, time)",
    "bad-frame": "a spot-bus frame a receiver skips (start, address, length, CRC), or a "
    "response whose payload it cannot read (SPEC §9)",
}


def frame(name: str, f: sb.Frame, meaning: object = None) -> dict[str, object]:
    data = f.encode()
    parser = sb.FrameParser()
    assert parser.feed(data) == [f], name
    out: dict[str, object] = {
        "name": name,
        "hex": data.hex(),
        "valid": True,
        "frame": {"addr": f.addr, "cmd": f.cmd, "payload": f.payload.hex()},
    }
    if meaning is not None:
        out["meaning"] = to_jsonable(meaning)
    return out


def bad_frame(name: str, data: bytes, reason: str) -> dict[str, object]:
    """Bytes a receiver skips (``reason`` start, address, length, crc) or a well-framed
    response whose payload is unreadable (``payload``)."""
    parser = sb.FrameParser()
    frames = parser.feed(data)
    if reason == "payload":
        (f,) = frames
        try:
            sb.read_answer(f)
        except FrameError:
            pass
        else:
            raise AssertionError(f"{name} read")
    else:
        assert frames == [] and parser.bytes_discarded, name
    return {"name": name, "hex": data.hex(), "valid": False, "error": "bad-frame", "reason": reason}


def firmware_vectors() -> dict[str, object]:
    """Signed manifests (SPEC §13): one a device accepts, and one per refusal of §13.2."""
    body = firmware.encode_manifest(MANIFEST)
    signature = FIRMWARE_KEY.sign(firmware.SIGNATURE_CONTEXT + body)
    kid = firmware.firmware_key_id(signing.public_key_bytes(FIRMWARE_KEY))
    other = Ed25519PrivateKey.from_private_bytes(OTHER_SEED)
    tampered = body.replace(b"2.2.0", b"9.9.9")
    big = dict(cbor2.loads(body))
    big[3] = firmware.MAX_IMAGE_SIZE + 1
    big_body = cbor2.dumps(big, canonical=True)
    not_canonical = cbor2.dumps(dict(reversed(list(cbor2.loads(body).items()))))

    def refused(name: str, data: bytes, problem: str, reject: RejectReason) -> dict[str, object]:
        try:
            firmware.verify_manifest(data, [signing.public_key_bytes(FIRMWARE_KEY)])
        except firmware.ManifestError as exc:
            assert (exc.problem, exc.reject_reason) == (problem, reject), f"{name}: {exc}"
        else:
            raise AssertionError(f"{name} verified")
        return {"name": name, "hex": data.hex(), "valid": False, "problem": problem,
                "reject": reject.name}

    return {
        "key": {
            "ed25519_seed_hex": FIRMWARE_SEED.hex(),
            "public_hex": signing.public_key_bytes(FIRMWARE_KEY).hex(),
            "key_id_hex": kid.hex(),
        },
        "manifests": [
            {
                "name": "manifest-spot-board",
                "hex": SIGNED_MANIFEST.hex(),
                "valid": True,
                "decoded": to_jsonable(MANIFEST),
                "cbor": cbor_of(SIGNED_MANIFEST),
                "manifest_cbor": cbor_of(body),
            },
            refused(
                "manifest-tampered",
                cbor2.dumps([tampered, signature, kid]),
                "bad-signature",
                RejectReason.BAD_SIGNATURE,
            ),
            refused(
                "manifest-unknown-key",
                firmware.sign_manifest(other, MANIFEST),
                "unknown-key",
                RejectReason.UNKNOWN_KEY,
            ),
            refused(
                "manifest-not-an-array",
                cbor2.dumps({0: body}),
                "malformed",
                RejectReason.MALFORMED,
            ),
            refused(
                "manifest-size-over-limit",
                cbor2.dumps([big_body, FIRMWARE_KEY.sign(firmware.SIGNATURE_CONTEXT + big_body),
                             kid]),
                "too-large",
                RejectReason.MALFORMED,
            ),
            refused(
                "manifest-not-canonical",
                cbor2.dumps([not_canonical,
                             FIRMWARE_KEY.sign(firmware.SIGNATURE_CONTEXT + not_canonical), kid]),
                "malformed",
                RejectReason.MALFORMED,
            ),
        ],
    }


def spotbus_vectors() -> list[dict[str, object]]:
    """Spot-bus frames (SPEC §9): requests, answers, errors, and bytes a receiver skips."""
    get3 = sb.request(3, sb.Cmd.GET_STATUS)
    docked = sb.SpotReport(sb.BusLock.LOCKED, True, 21.5, "AB12345")
    empty = sb.SpotReport(sb.BusLock.OPEN, False, -4.5)
    unreadable = sb.SpotReport(sb.BusLock.LOCKED, True, 20.0, None)
    ripped = sb.SpotReport(sb.BusLock.LOCKED, False, 19.0, tamper=True)
    jammed = sb.SpotReport(sb.BusLock.JAMMED, True, 22.0, "AB12345", lock_fault=True)
    unlock5 = sb.request(5, sb.Cmd.UNLOCK)
    info = sb.BoardInfo("sb-1.4.2", "sb-r3")
    image = b"\x00" * 60
    sha = hashlib.sha256(image).digest()
    out = [
        frame("get-status-request", get3),
        frame("get-status-docked", sb.response(get3, docked.to_payload()), docked),
        frame("get-status-empty", sb.response(get3, empty.to_payload()), empty),
        frame(
            "get-status-serial-unreadable", sb.response(get3, unreadable.to_payload()), unreadable
        ),
        frame("get-status-tamper", sb.response(get3, ripped.to_payload()), ripped),
        frame("get-status-jammed", sb.response(get3, jammed.to_payload()), jammed),
        frame("unlock-request", unlock5),
        frame("unlock-answer", sb.response(unlock5)),
        frame("unlock-error-busy", sb.error_response(unlock5, sb.BusError.BUSY)),
        frame("lock-request", sb.request(5, sb.Cmd.LOCK)),
        frame(
            "get-info-answer", sb.response(sb.request(7, sb.Cmd.GET_INFO), info.to_payload()), info
        ),
        frame("identify-request", sb.request(7, sb.Cmd.IDENTIFY, bytes([10]))),
        frame("identify-broadcast", sb.request(sb.BROADCAST, sb.Cmd.IDENTIFY, bytes([3]))),
        frame("fw-begin-request", sb.request(6, sb.Cmd.FW_BEGIN, sb.fw_begin_payload(60, sha))),
        frame("fw-chunk-request", sb.request(6, sb.Cmd.FW_CHUNK, sb.fw_chunk_payload(0, image))),
        frame("fw-commit-request", sb.request(6, sb.Cmd.FW_COMMIT)),
        frame(
            "fw-commit-error-checksum",
            sb.error_response(sb.request(6, sb.Cmd.FW_COMMIT), sb.BusError.CHECKSUM_MISMATCH),
        ),
        frame(
            "fw-chunk-error-state",
            sb.error_response(sb.request(6, sb.Cmd.FW_CHUNK), sb.BusError.FIRMWARE_STATE),
        ),
        frame(
            "get-chain-answer",
            sb.response(sb.request(1, sb.Cmd.GET_CHAIN), sb.ChainReport(True, 2).to_payload()),
            sb.ChainReport(True, 2),
        ),
    ]
    good = get3.encode()
    body = bytes((3, 0x81, 65)) + bytes(65)
    out += [
        bad_frame("crc-wrong", good[:-1] + bytes([good[-1] ^ 0xFF]), "crc"),
        bad_frame("no-start-byte", good[1:], "start"),
        bad_frame("length-over-64", b"\xa5" + body + struct.pack("<H", sb.crc16(body)), "length"),
        bad_frame(
            "address-248",
            b"\xa5" + bytes((248, 1, 0)) + struct.pack("<H", sb.crc16(bytes((248, 1, 0)))),
            "address",
        ),
        bad_frame(
            "status-serial-length-wrong",
            sb.Frame(3, 0x81, docked.to_payload()[:-1]).encode(),
            "payload",
        ),
        bad_frame(
            "status-lock-code-3",
            sb.Frame(3, 0x81, bytes((3,)) + docked.to_payload()[1:]).encode(),
            "payload",
        ),
        bad_frame(
            "status-serial-not-alphanumeric",
            sb.Frame(3, 0x81, docked.to_payload()[:-1] + b"-").encode(),
            "payload",
        ),
        bad_frame("chain-inserted-2", sb.Frame(1, 0xA0, bytes((2, 1))).encode(), "payload"),
    ]
    # A stream: noise, a frame with a broken CRC, then a good frame: the receiver resyncs.
    noisy = b"\x00\x13\x7f" + good[:-1] + bytes([good[-1] ^ 0xFF]) + good
    parser = sb.FrameParser()
    assert parser.feed(noisy) == [get3] and parser.crc_errors == 1
    out.append(
        {
            "name": "stream-resync",
            "hex": noisy.hex(),
            "valid": True,
            "frames": [good.hex()],
            "crc_errors": 1,
        }
    )
    return out


def build() -> dict[str, object]:
    """The whole vectors file, as written to protocol/vectors/v1.json."""
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
        up("event-firmware-downloading", 35, m.FirmwareStatus(FirmwareState.DOWNLOADING, "2.2.0",
                                                              bytes_done=32768))
    )
    v.append(
        up(
            "event-firmware-rolled-back",
            36,
            m.FirmwareStatus(FirmwareState.ROLLED_BACK, "3.0.0", reason="self-check failed"),
        )
    )
    v.append(
        up(
            "result-rejected",
            33,
            m.CommandResult(CID, ResultStatus.REJECTED, RejectReason.EXPIRED, "expired 2.0 s ago"),
        )
    )
    v.append(up("result-done", 34, m.CommandResult(CID, ResultStatus.DONE)))
    v.append(up("event-cert-renew", 35, m.CertRenew(CSR_DER)))
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
            "event-cert-renew-csr-too-short",
            Channel.EVENT,
            cbor2.dumps([BOOT, 1, TS, {0: 23, 10: b"\x30\x03"}]),
            "schema",
        ),
        bad(
            "event-cert-renew-no-csr",
            Channel.EVENT,
            cbor2.dumps([BOOT, 1, TS, {0: 23}]),
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
        decode_only(
            "status-indefinite-lengths",
            Channel.STATUS,
            b"\x9f"
            + cat(BOOT)
            + b"\x1a\x00\x00\x00\x2a"
            + cat(TS)
            + b"\xbf"
            + cat(0, 3, 1, 1)
            + b"\xff\xff",
            "indefinite lengths and a seq in 5 bytes: re-encoded definite and shortest",
        )
    )
    # Forward compatibility: an unknown key is ignored.
    v.append(
        decode_only(
            "status-unknown-key-ignored",
            Channel.STATUS,
            cbor2.dumps([BOOT, 40, TS, {0: 3, 1: 2, 77: "from v1.1"}]),
            "key 77 is unknown to v1 and ignored: re-encoded without it",
        )
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
                "round_trip": True,
                "decoded": to_jsonable(codec.decode_down(codec.channel_of(body), data)),
                "cbor": cbor_of(data),
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
        (
            "cmd-config",
            m.Config(
                13,
                {"unlock_window_s": 45, "offline_allow_unknown": False, "temperature_high_c": 58.5},
            ),
        ),
        ("cmd-reboot", m.Reboot()),
        ("cmd-trigger", m.TriggerMessage(TriggerKind.STATUS, 0)),
        (
            "cmd-firmware",
            m.FirmwareUpdate(SIGNED_MANIFEST, 6),
        ),
        ("cmd-cert-issued", m.CertIssued(CERT_DER)),
    ]
    for name, cmd in commands:
        env = m.CommandEnvelope(CID, "st-0001", TS, TS + 30_000, cmd)
        data = signer.sign(env)
        v.append(
            {
                "name": name,
                "channel": "cmd",
                "hex": data.hex(),
                "valid": True,
                "round_trip": True,
                "decoded": to_jsonable(env),
                "cbor": cbor_of(data),
                "payload_cbor": cbor_of(codec.encode_command_payload(env)),
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

    # Negative commands: each fails exactly one check of SPEC §7.2, in its order; the
    # vector says the RejectReason the device answers (``reject``).
    def unlock_payload(cid_last: int, device: str = "st-0001", issued: int = TS) -> bytes:
        cid = CID[:-1] + bytes([cid_last])
        env = m.CommandEnvelope(cid, device, issued, issued + 30_000, m.Unlock(3, 30))
        return codec.encode_command_payload(env)

    good = bytearray(cose_sign1(unlock_payload(0x01)))
    good[-1] ^= 0x01  # the last byte of the signature
    v += [
        refused("cmd-not-cbor", b"\xff\x00", "malformed", RejectReason.MALFORMED),
        refused(
            "cmd-not-cose-sign1",
            cbor2.dumps({0: CID, 1: "st-0001"}),
            "schema",
            RejectReason.MALFORMED,
        ),
        refused(
            "cmd-alg-not-eddsa",
            cose_sign1(unlock_payload(0x02), alg=-7),
            "refused",
            RejectReason.BAD_SIGNATURE,
        ),
        refused(
            "cmd-unknown-kid",
            cose_sign1(unlock_payload(0x03), seed=OTHER_SEED),
            "refused",
            RejectReason.UNKNOWN_KEY,
        ),
        refused("cmd-bad-signature", bytes(good), "refused", RejectReason.BAD_SIGNATURE),
        signed_payload("cmd-payload-not-cbor", b"\xff", "malformed"),
        signed_payload(
            "cmd-payload-missing-expiry",
            cbor_map(*cmd_head, 5, cbor_map(0, 3)),
            "schema",
        ),
        signed_payload(
            "cmd-unknown-type",
            cbor_map(0, CID, 1, "st-0001", 2, 200, 3, TS, 4, TS + 30_000, 5, cbor_map()),
            "unknown-type",
            RejectReason.NOT_SUPPORTED,
        ),
        refused(
            "cmd-wrong-device",
            cose_sign1(unlock_payload(0x04, device="st-0002")),
            "refused",
            RejectReason.WRONG_DEVICE,
        ),
        # Far past either bound: the vectors hold whatever skew the checks allow (§7.2).
        refused(
            "cmd-expired",
            cose_sign1(unlock_payload(0x05)),
            "refused",
            RejectReason.EXPIRED,
            verify_at_ms=TS + 30_000 + 600_000,
        ),
        refused(
            "cmd-not-yet-valid",
            cose_sign1(unlock_payload(0x06, issued=TS + 600_000)),
            "refused",
            RejectReason.NOT_YET_VALID,
        ),
    ]
    out = {
        "about": "Protocol v1 test vectors (SPEC §11). Valid ones decode to 'decoded' (the "
        "message's fields) and to 'cbor' (the CBOR data model of the bytes); 'round_trip' says "
        "whether the canonical encoding (SPEC §1) of 'decoded' gives back 'hex' exactly, or the "
        "vector is decode-only. Invalid ones name their class in 'error' (see 'classes'). "
        "Commands verify with test_keys at verify_at_ms; an invalid one names in 'reject' the "
        "RejectReason a device answers. 'spotbus' holds spot-bus frames (SPEC §9).",
        "classes": CLASSES,
        "cbor_json": "cbor: integers, text, true/false/null and arrays as themselves; byte "
        "strings {'bytes': hex}; maps {'map': [[key, value], ...]} in the order of the bytes; "
        "floats {'float': x}; tags {'tag': n, 'value': item}.",
        "test_keys": {
            "ed25519_seed_hex": TEST_SEED.hex(),
            "public_hex": signer.public_key.hex(),
            "kid_hex": signer.kid.hex(),
            "device_id": "st-0001",
        },
        "vectors": v,
        "spotbus": spotbus_vectors(),
        "firmware": firmware_vectors(),
    }
    return out


def render() -> str:
    return json.dumps(build(), indent=1) + "\n"


def main() -> None:
    vectors_path().write_text(render())
    print(f"protocol vectors -> {vectors_path()}")


if __name__ == "__main__":
    main()
