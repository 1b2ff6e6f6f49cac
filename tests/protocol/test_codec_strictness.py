"""What the codec accepts can be stored (SPEC §10), and it reads one CBOR item with unique keys.

The storability oracle below is written from the cloud's side (PostgreSQL ``bigint`` and
``integer`` columns, text without NUL) and knows nothing of the codec's tables: hostile
payloads, built field by field with values out of every range, must either be refused with a
typed error or decode to something the oracle can store.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import unicodedata
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kickstand.protocol.errors import DecodeError, EncodeError
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import BootStatus, DeviceKind, DeviceState, SpotState
from kickstand.protocol.v1.fields import Text, fit_text
from kickstand.protocol.v1.wellformed import NotOneItem, check, loads_strict
from tests.protocol.strategies import commands, for_conv, up_messages

BIGINT = (-(2**63), 2**63 - 1)  # PostgreSQL bigint
INTEGER_MAX = 2**31 - 1  # PostgreSQL integer: the version columns
BYTES_SIZES = {
    "command_id": (16, 16),
    "badge_uid": (4, 10),
    "sha256": (32, 32),
    # CertRenew (issue 17): a DER PKCS#10 request, stored as bytes (device_certificates).
    "csr": (64, 400),
    "certificate": (64, 4096),
}
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ the cloud's oracle


def assert_storable(value: Any, name: str = "message") -> None:
    """Every integer fits its column, every text a PostgreSQL text, every bytes its size."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            assert_storable(getattr(value, f.name), f.name)
    elif isinstance(value, tuple | list):
        for item in value:
            assert_storable(item, name)
    elif isinstance(value, dict):
        for k, v in value.items():
            assert_storable(k, name)
            assert_storable(v, name)
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int):
        assert BIGINT[0] <= value <= BIGINT[1], f"{name}={value} is not a bigint"
        if name.endswith("version"):
            assert 0 <= value <= INTEGER_MAX, f"{name}={value} is not an integer column"
        if name == "boot_id":
            assert value != 0, "boot_id 0"
    elif isinstance(value, float):
        assert math.isfinite(value), f"{name}={value}"
    elif isinstance(value, str):
        assert "\x00" not in value, f"{name} holds NUL"
        assert not any(unicodedata.category(c) == "Cc" for c in value), f"{name}={value!r}"
        value.encode("utf-8")  # no lone surrogate
    elif isinstance(value, bytes):
        lo, hi = BYTES_SIZES.get(name, (0, 64))
        assert lo <= len(value) <= hi, f"{name} is {len(value)} bytes"
    else:
        raise AssertionError(f"{name}: unexpected {type(value).__name__}")


# ------------------------------------------------------------------ hostile payloads

EDGES = [0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -1]
WILD: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(EDGES),
    st.integers(-(2**70), 2**70),
    st.text(max_size=24),  # any code point but surrogates: NUL and controls included
    st.text(st.sampled_from("\x00\n\x1b\x7f\x9bAé"), max_size=4),
    st.binary(max_size=40),
    st.floats(),
    st.booleans(),
    st.none(),
    st.lists(st.integers(-3, 300), max_size=3),
)
CONTROLS = "\x00\x01\t\n\r\x1b\x7f\x85\x9b"
UP_CLASSES = list(codec.BODY_FIELDS)


@st.composite
def hostile_up(draw: st.DrawFn) -> tuple[Channel, bytes]:
    """A device payload built from the key tables, each field right or wild at random."""
    cls = draw(st.sampled_from(UP_CLASSES))
    channel = codec.CHANNEL_OF_CLASS[cls]
    body: dict[int, Any] = {}
    if channel is Channel.EVENT:
        body[0] = int(codec.EVENT_TYPES[cls])
    for spec in codec.BODY_FIELDS[cls]:
        choice = draw(st.sampled_from(["right"] * 4 + ["spoiled"] * 2 + ["wild", "absent"]))
        if choice == "absent" and not spec.required:
            continue
        if choice == "wild":
            body[spec.key] = draw(WILD)
            continue
        try:
            value = spec.conv.encode(draw(for_conv(spec.conv)))
        except EncodeError:  # a status state drawn apart from its spot
            value = 1
        if choice == "spoiled":  # just off the edge: a control character, a range's end
            if isinstance(value, str):
                at = draw(st.integers(0, len(value)))
                value = value[:at] + draw(st.sampled_from(CONTROLS)) + value[at:]
            elif isinstance(value, int) and not isinstance(value, bool):
                value = draw(st.sampled_from(EDGES))
        body[spec.key] = value
    sequenced = channel in codec.SEQUENCED_CHANNELS
    boot_id = draw(st.one_of(st.integers(1, 2**32 - 1), st.sampled_from(EDGES)))
    seq = draw(st.integers(1, 1000)) if sequenced else 0
    ts_ms = draw(st.one_of(st.integers(0, 2**44), st.sampled_from(EDGES)))
    return channel, cbor2.dumps([boot_id, seq, ts_ms, body])


@FAST
@given(hostile_up())
def test_whatever_decode_up_accepts_can_be_stored_and_round_trips(
    case: tuple[Channel, bytes],
) -> None:
    channel, data = case
    try:
        msg = codec.decode_up(channel, data)
    except DecodeError as exc:
        assert exc.code in ("malformed", "schema", "unknown-type")
        return
    assert_storable(msg)
    again = codec.encode_up(msg.stamp, msg.body)
    assert codec.decode_up(channel, again) == msg


def test_the_hostile_payloads_are_accepted_often_enough_to_mean_something() -> None:
    accepted = refused = 0

    @settings(max_examples=300, deadline=None, database=None)
    @given(hostile_up())
    def count(case: tuple[Channel, bytes]) -> None:
        nonlocal accepted, refused
        try:
            codec.decode_up(*case)
            accepted += 1
        except DecodeError:
            refused += 1

    count()
    assert accepted >= 30 and refused >= 30, (accepted, refused)


@FAST
@given(up_messages())
def test_everything_the_codec_emits_is_storable(msg: m.UpMessage) -> None:
    assert_storable(
        codec.decode_up(codec.channel_of(msg.body), codec.encode_up(msg.stamp, msg.body))
    )


@pytest.mark.parametrize(
    ("stamp", "body"),
    [
        (m.Stamp(0, 1, 1), m.Status(1, SpotState.EMPTY)),
        (m.Stamp(1, 1, 2**63), m.Status(1, SpotState.EMPTY)),
        (m.Stamp(1, 1, 1), m.Status(0, DeviceState.FAULT, fault="a\x00b")),
        (m.Stamp(1, 1, 1), m.Telemetry(energy_wh=2**63)),
        (m.Stamp(1, 0, 1), m.Death("line\nbreak")),
        (m.Stamp(1, 0, 1), m.Birth(DeviceKind.STATION, "1", "2", config_version=2**31)),
    ],
)
def test_the_encoder_refuses_what_the_decoder_refuses(stamp: m.Stamp, body: m.UpBody) -> None:
    with pytest.raises(EncodeError):
        codec.encode_up(stamp, body)


def test_the_encoder_refuses_a_boot_id_0_everywhere() -> None:
    with pytest.raises(EncodeError):
        codec.encode_down(m.BootReply(BootStatus.ACCEPTED, 1, 60, 0))
    with pytest.raises(EncodeError):
        codec.encode_down(m.Ack((m.AckRange(0, 1, 1),)))


# ------------------------------------------------------------------ any valid encoding


@st.composite
def loose(draw: st.DrawFn, value: Any, dup: bool = False) -> bytes:
    """``value`` in a valid CBOR encoding chosen at random (not the preferred one); with
    ``dup`` one map gets an existing key again (with any value)."""
    out = bytearray()
    dups = [dup]

    def head(major: int, arg: int) -> None:
        smallest = (
            0 if arg < 24 else 1 if arg < 2**8 else 2 if arg < 2**16 else 3 if arg < 2**32 else 4
        )
        size = draw(st.integers(smallest, 4))
        if size == 0:
            out.append(major << 5 | arg)
        else:
            n = 1 << (size - 1)
            out.append(major << 5 | (23 + size))
            out.extend(arg.to_bytes(n, "big"))

    def item(v: Any) -> None:
        if isinstance(v, bool) or v is None:
            out.append({False: 0xF4, True: 0xF5, None: 0xF6}[v])
        elif isinstance(v, int):
            if not -(2**64) <= v < 2**64:
                out.extend(cbor2.dumps(v))  # a bignum: cbor2 writes its tag
            elif v >= 0:
                head(0, v)
            else:
                head(1, -1 - v)
        elif isinstance(v, float):
            try:
                single = struct.pack(">f", v)
            except OverflowError:
                single = b""
            if single and struct.unpack(">f", single)[0] == v and draw(st.booleans()):
                out.append(0xFA)
                out.extend(single)
            else:
                out.append(0xFB)
                out.extend(struct.pack(">d", v))
        elif isinstance(v, str | bytes):
            raw = v.encode() if isinstance(v, str) else v
            major = 3 if isinstance(v, str) else 2
            if isinstance(v, str) or not draw(st.booleans()):
                head(major, len(raw))
                out.extend(raw)
            else:  # byte strings in chunks (text chunks would have to split whole characters)
                out.append(major << 5 | 31)
                cut = draw(st.integers(0, len(raw)))
                for chunk in (raw[:cut], raw[cut:]):
                    head(major, len(chunk))
                    out.extend(chunk)
                out.append(0xFF)
        elif isinstance(v, list | tuple):
            container(4, [(x,) for x in v])
        elif isinstance(v, dict):
            entries = list(v.items())
            if dups[0] and entries:
                dups[0] = False
                key = draw(st.sampled_from([k for k, _ in entries]))
                entries.insert(draw(st.integers(0, len(entries))), (key, None))
            container(5, entries)
        else:
            raise AssertionError(type(v))

    def container(major: int, entries: list[tuple[Any, ...]]) -> None:
        indefinite = draw(st.booleans())
        if indefinite:
            out.append(major << 5 | 31)
        else:
            head(major, len(entries))
        for entry in entries:
            for part in entry:
                item(part)
        if indefinite:
            out.append(0xFF)

    item(value)
    if dups[0]:
        raise AssertionError("no map to repeat a key in")
    return bytes(out)


@FAST
@given(up_messages(), st.data())
def test_any_valid_encoding_decodes_to_the_same_message(
    msg: m.UpMessage, data: st.DataObject
) -> None:
    channel = codec.channel_of(msg.body)
    canonical = codec.encode_up(msg.stamp, msg.body)
    other = data.draw(loose(cbor2.loads(canonical)))
    if len(other) > codec.MAX_SIZE[channel]:
        return  # longer heads can push a full message over its channel's size limit
    assert codec.decode_up(channel, other) == msg


@FAST
@given(up_messages(), st.data())
def test_a_repeated_key_or_a_trailing_byte_is_malformed(
    msg: m.UpMessage, data: st.DataObject
) -> None:
    channel = codec.channel_of(msg.body)
    wire = cbor2.loads(codec.encode_up(msg.stamp, msg.body))
    if data.draw(st.booleans()):
        wire[3][data.draw(st.integers(100, 120))] = {0: "future", 1: [1, 2]}
    if data.draw(st.booleans()) and wire[3]:
        bad = data.draw(loose(wire, dup=True))
    else:
        bad = data.draw(loose(wire)) + data.draw(st.binary(min_size=1, max_size=4))
    with pytest.raises(DecodeError) as info:
        codec.decode_up(channel, bad)
    assert info.value.code == "malformed", str(info.value)


@FAST
@given(commands, st.data())
def test_command_payloads_take_any_encoding_but_no_repeated_key(
    command: m.CommandBody, data: st.DataObject
) -> None:
    env = m.CommandEnvelope(b"\x01" * 16, "st-0001", 1_000, 31_000, command)
    wire = cbor2.loads(codec.encode_command_payload(env))
    assert codec.decode_command_payload(data.draw(loose(wire))) == env
    with pytest.raises(DecodeError) as info:
        codec.decode_command_payload(data.draw(loose(wire, dup=True)))
    assert info.value.code == "malformed"


# ------------------------------------------------------------------ the walk itself

JSONISH = st.recursive(
    st.one_of(
        st.integers(-(2**64), 2**64 - 1),
        st.text(max_size=5),
        st.binary(max_size=5),
        st.booleans(),
        st.none(),
        st.floats(allow_nan=False),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.integers(-5, 30), st.text(max_size=3)), inner, max_size=4),
    ),
    max_leaves=12,
)


@FAST
@given(JSONISH, st.data())
def test_the_walk_agrees_with_how_the_bytes_were_made(value: Any, data: st.DataObject) -> None:
    assert loads_strict(data.draw(loose(value))) == value
    if any(isinstance(x, dict) and x for x in _all(value)):
        with pytest.raises(NotOneItem):
            check(data.draw(loose(value, dup=True)))


def _all(value: Any) -> list[Any]:
    found = [value]
    if isinstance(value, list):
        for v in value:
            found += _all(v)
    elif isinstance(value, dict):
        for v in value.values():
            found += _all(v)
    return found


@pytest.mark.parametrize(
    ("hex_", "why"),
    [
        ("ff", "a break outside an indefinite item"),
        ("9f01", "an indefinite array that never ends"),
        ("bf00ff", "an indefinite map that ends after a key"),
        ("1c", "a reserved head"),
        ("5f6161ff", "a text chunk in a byte string"),
        ("7f5f4161ffff", "an indefinite chunk in an indefinite string"),
        ("8201", "an array short of an item"),
        ("0000", "two items"),
        ("a2f501f502", "true twice"),
        ("a2c2410101c2410102", "bignum 1 twice"),
        ("a20101c2410102", "1, and 1 as a bignum"),
        ("a20101f502", "1 and true: one key once decoded"),
        ("a2f93c0000fb3ff000000000000001", "1.0 as a half and as a double float"),
        ("a28201020082010200", "an array key twice"),
        ("a1a20000000000", "a repeated key in a map used as a key"),
    ],
)
def test_the_walk_refuses(hex_: str, why: str) -> None:
    with pytest.raises(NotOneItem):
        check(bytes.fromhex(hex_))


@pytest.mark.parametrize(
    ("hex_", "what"),
    [
        ("a28201020082010300", "two different array keys"),
        ("9f9f01ffbf0001ff5f4101ff7f6161ffff", "nested indefinite items and chunked strings"),
        ("a2c10000c10101", "tagged keys of different values"),
        ("a200012002", "0 and -1"),
    ],
)
def test_the_walk_accepts(hex_: str, what: str) -> None:
    check(bytes.fromhex(hex_))


def test_the_walk_is_iterative() -> None:
    check(b"\x81" * 100_000 + b"\x00")  # no RecursionError: a frame per level, on a list


@FAST
@given(st.text(), st.integers(0, 130))
def test_fit_text_makes_any_text_fit_a_field(text: str, max_bytes: int) -> None:
    fitted = fit_text(text, max_bytes)
    assert Text(max_bytes).encode(fitted) == fitted
    if _fits(text, max_bytes):
        assert fitted == text  # what already fits is kept as it is


def _fits(text: str, max_bytes: int) -> bool:
    try:
        Text(max_bytes).encode(text)
    except EncodeError:
        return False
    return True
