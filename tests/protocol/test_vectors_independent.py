"""The vectors read as an outsider reads them: plain cbor2, the vectors file and SPEC.md.

This module imports nothing of Kickstand's (only json, pathlib, cbor2 and pytest): it
proves that the published documents alone decode every valid vector. For each one it
checks that

- the bytes, decoded by plain cbor2, are the vector's ``cbor`` form (SPEC §11 says how the
  CBOR data model is written in JSON), key order included;
- the vector's ``decoded`` fields are what SPEC §6's tables say those bytes mean (keys,
  enum codes, scales, absent optional fields);
- a command is COSE_Sign1 with EdDSA and the test key's kid (SPEC §7.1);
- a spot-bus frame's CRC is the one SPEC §9.2's C function computes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cbor2
import pytest

PROTOCOL = Path(__file__).resolve().parents[2] / "protocol"
FILE = json.loads((PROTOCOL / "vectors" / "v1.json").read_text())
SPEC = (PROTOCOL / "SPEC.md").read_text()
VALID = [v for v in FILE["vectors"] if v["valid"]]


def as_json(item: Any) -> Any:
    """The CBOR data model in the vectors' JSON form (SPEC §11)."""
    if isinstance(item, cbor2.CBORTag):
        return {"tag": item.tag, "value": as_json(item.value)}
    if isinstance(item, bytes):
        return {"bytes": item.hex()}
    if isinstance(item, float):
        return {"float": item}
    if isinstance(item, list):
        return [as_json(i) for i in item]
    if isinstance(item, dict):
        return {"map": [[as_json(k), as_json(v)] for k, v in item.items()]}
    return item


# ------------------------------------------------------------------ SPEC §6, read as text


def _tables() -> tuple[dict[str, list[tuple[int, str, str]]], dict[str, int], dict[str, dict]]:
    """Rows (key, field, type) per message, the type code of each event and command, and
    the code tables: all from SPEC.md's §6."""
    text = SPEC.split("<!-- tables:begin -->")[1].split("<!-- tables:end -->")[0]
    rows: dict[str, list[tuple[int, str, str]]] = {}
    type_codes: dict[str, int] = {}
    codes: dict[str, dict[int, str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("#### "):  # "#### Birth — channel `birth`"
            current = line[5:].split(" — ")[0]
            rows[current] = []
        elif line.startswith("**") and ("(EventType " in line or "(CommandType " in line):
            current = line.split("**")[1]
            type_codes[current] = int(line.rsplit(" ", 1)[1].rstrip(")"))
            rows[current] = []
        elif line.startswith("**") and "**: " in line:  # "**DeviceKind**: 1 `STATION`, …"
            name, entries = line[2:].split("**: ")
            codes[name] = {}
            for entry in entries.split(", "):
                code, word = entry.split(" ", 1)
                codes[name][int(code)] = word.strip("`")
        elif line.startswith("| ") and current:
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[0].isdigit() and cells[1].startswith("`"):
                rows[current].append((int(cells[0]), cells[1].strip("`"), cells[2]))
    return rows, type_codes, codes


ROWS, TYPE_CODES, CODES = _tables()


def _scale(type_text: str) -> int | None:
    """``int, 1/10 units (…)`` → 10."""
    if "1/" not in type_text:
        return None
    return int(type_text.split("1/")[1].split(" ")[0].rstrip(":"))


def _same(value: Any, wire: Any, type_text: str) -> bool:
    """Does the decoded ``value`` say what the ``wire`` item (JSON form) says?"""
    scale = _scale(type_text)
    if isinstance(value, dict) and "type" in value:  # a record: its fields in order
        fields = [v for k, v in value.items() if k != "type"]
        return (
            type(wire) is list
            and len(wire) == len(fields)
            and all(_same(f, w, type_text) for f, w in zip(fields, wire, strict=True))
        )
    if isinstance(value, list):
        return (
            type(wire) is list
            and len(wire) == len(value)
            and all(_same(v, w, type_text) for v, w in zip(value, wire, strict=True))
        )
    if isinstance(value, dict):  # Config values: text keys
        return isinstance(wire, dict) and value == {
            k: (v["float"] if isinstance(v, dict) else v) for k, v in wire["map"]
        }
    if isinstance(wire, dict) and "bytes" in wire:
        return value == wire["bytes"]
    if type(value) is float and type(wire) is int and scale:
        return abs(wire / scale - value) < 1e-9
    if isinstance(value, str) and type(wire) is int:  # an enum code by its name
        named = [name for name in CODES if name in type_text]
        return any(CODES[name].get(wire) == value for name in named)
    return type(value) is type(wire) and value == wire


def _check_body(name: str, decoded: dict[str, Any], wire: dict[str, Any]) -> None:
    entries = dict((k, v) for k, v in wire["map"])
    for key, field, type_text in ROWS[name]:
        value = decoded[field]
        # SPEC §6: "absent: <json>" in a type is the value a missing key stands for.
        absent = json.loads(type_text.split("absent: ", 1)[1]) if "absent: " in type_text else None
        if value is None or value == [] or (absent is not None and value == absent):
            assert key not in entries, f"{name}.{field}: absent in decoded, key {key} on wire"
            continue
        assert key in entries, f"{name}.{field}: key {key} missing on the wire"
        if field == "state" and name == "Status":  # SpotState, or DeviceState on spot 0
            enum = "DeviceState" if decoded["spot"] == 0 else "SpotState"
            assert CODES[enum][entries[key]] == value
            continue
        assert _same(value, entries[key], type_text), (
            f"{name}.{field}: {value!r} vs {entries[key]!r}"
        )


# ------------------------------------------------------------------ the tests


@pytest.mark.parametrize("vec", VALID, ids=lambda v: v["name"])
def test_plain_cbor2_reads_the_vectors_cbor_form(vec: dict[str, Any]) -> None:
    item = cbor2.loads(bytes.fromhex(vec["hex"]))
    assert as_json(item) == vec["cbor"]


@pytest.mark.parametrize(
    "vec", [v for v in VALID if v["channel"] != "cmd"], ids=lambda v: v["name"]
)
def test_the_decoded_form_is_what_spec_tables_say_the_bytes_mean(vec: dict[str, Any]) -> None:
    decoded, wire = vec["decoded"], vec["cbor"]
    if decoded["type"] == "UpMessage":  # [boot_id, seq, ts_ms, body] (SPEC §3)
        stamp = decoded["stamp"]
        assert wire[:3] == [stamp["boot_id"], stamp["seq"], stamp["ts_ms"]]
        decoded, wire = decoded["body"], wire[3]
    if vec["channel"] == "evt":  # key 0: the EventType (SPEC §6)
        assert wire["map"][0] == [0, TYPE_CODES[decoded["type"]]]
    _check_body(decoded["type"], decoded, wire)


@pytest.mark.parametrize(
    "vec", [v for v in VALID if v["channel"] == "cmd"], ids=lambda v: v["name"]
)
def test_commands_are_cose_sign1_over_the_tabled_payload(vec: dict[str, Any]) -> None:
    item = cbor2.loads(bytes.fromhex(vec["hex"]))
    assert isinstance(item, cbor2.CBORTag) and item.tag == 18
    protected, unprotected, payload, signature = item.value
    assert cbor2.loads(protected) == {1: -8, 4: bytes.fromhex(FILE["test_keys"]["kid_hex"])}
    assert unprotected == {} and len(signature) == 64
    assert as_json(cbor2.loads(payload)) == vec["payload_cbor"]
    body = dict(cbor2.loads(payload))
    envelope = vec["decoded"]
    assert body[0].hex() == envelope["command_id"]
    assert body[1] == envelope["device_id"]
    assert (body[3], body[4]) == (envelope["issued_at_ms"], envelope["expires_at_ms"])
    command = envelope["command"]
    assert body[2] == TYPE_CODES[command["type"]]
    _check_body(command["type"], command, as_json(body[5]))


def crc16(data: bytes) -> int:
    """SPEC §9.2's C function, line for line."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


@pytest.mark.parametrize(
    "vec", [v for v in FILE["spotbus"] if "frame" in v], ids=lambda v: v["name"]
)
def test_spot_bus_frames_by_the_spec_alone(vec: dict[str, Any]) -> None:
    data = bytes.fromhex(vec["hex"])
    frame = vec["frame"]
    payload = bytes.fromhex(frame["payload"])
    assert data[0] == 0xA5 and data[1:4] == bytes((frame["addr"], frame["cmd"], len(payload)))
    assert data[4:-2] == payload and len(payload) <= 64
    assert int.from_bytes(data[-2:], "little") == crc16(data[1:-2])


def test_spec_check_value_and_worked_example() -> None:
    assert crc16(b"123456789") == 0x4B37
    example = next(v for v in FILE["spotbus"] if v["name"] == "get-status-docked")
    assert " ".join(f"{b:02x}" for b in bytes.fromhex(example["hex"])) in SPEC


def test_every_class_named_is_defined() -> None:
    used = {v["error"] for v in FILE["vectors"] if not v["valid"]}
    used |= {v["error"] for v in FILE["spotbus"] if not v["valid"]}
    assert used == set(FILE["classes"])
    for name in used:
        assert f"`{name}`" in SPEC.split("## 11.")[1], f"class {name} is not defined in SPEC §11"


# ------------------------------------------------------------------ SPEC §13, firmware manifests

MANIFEST_KEYS = {
    "target": 1, "version": 2, "size": 3, "sha256": 4,
    "url": 5, "min_hardware": 6, "min_bootloader": 7, "issued_at": 8,
}


@pytest.mark.parametrize(
    "vec", [v for v in FILE["firmware"]["manifests"] if v["valid"]], ids=lambda v: v["name"]
)
def test_signed_manifests_by_the_spec_alone(vec: dict[str, Any]) -> None:
    body, signature, key_id = cbor2.loads(bytes.fromhex(vec["hex"]))
    assert len(signature) == 64 and key_id.hex() == FILE["firmware"]["key"]["key_id_hex"]
    manifest = cbor2.loads(body)
    assert cbor2.dumps(manifest, canonical=True) == body  # §13.1: canonical encoding
    assert as_json(manifest) == vec["manifest_cbor"]
    decoded = vec["decoded"]
    for field, key in MANIFEST_KEYS.items():
        wire = manifest[key]
        assert (wire.hex() if isinstance(wire, bytes) else wire) == decoded[field], field
