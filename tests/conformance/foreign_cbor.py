"""Strict CBOR for the foreign station (SPEC §10: one item, unique map keys, any valid
encoding, size limits per channel) and the field checks of §6. Plain ``cbor2`` decodes;
the walk here refuses what cbor2 lets through. Nothing imported from ``kickstand``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cbor2

from tests.conformance.foreign_wire import MAX_COMMAND


class Malformed(Exception):
    """Bytes that are not exactly one well-formed CBOR item with unique map keys (§10)."""


class Schema(Exception):
    """One well-formed item of the wrong shape, type or range (§11)."""


# -- strict CBOR (SPEC §10: one item, unique keys, any valid encoding) --------------------

#: SPEC §10: payload size limits per channel, checked before parsing.
LIMITS = {
    "birth": 4096,
    "status": 512,
    "evt": 512,
    "res": 512,
    "tlm": 1024,
    "hb": 256,
    "death": 256,
    "boot": 256,
    "time": 256,
    "badge": 256,
    "ack": 2048,
    "cmd": MAX_COMMAND,
}


def decode(channel: str, raw: bytes) -> Any:
    """A payload of ``channel``: within its size limit, exactly one CBOR item."""
    if not raw or len(raw) > LIMITS[channel]:
        raise Malformed(f"{len(raw)} bytes on {channel}")
    return strict_loads(raw)


def strict_loads(data: bytes) -> Any:
    """cbor2 decodes; this walk refuses what cbor2 lets through (trailing bytes, a map key
    twice at any depth, reserved or broken heads)."""
    end = _item_end(data, 0, 0)
    if end != len(data):
        raise Malformed("bytes after the item")
    try:
        return cbor2.loads(data)
    except Exception as e:  # cbor2's error classes vary by version
        raise Malformed(str(e)) from e


def _head(data: bytes, i: int) -> tuple[int, int | None, int]:
    """(major type, argument or None for indefinite, index after the head)."""
    if i >= len(data):
        raise Malformed("truncated")
    ib = data[i]
    major, ai = ib >> 5, ib & 0x1F
    if ai < 24:
        return major, ai, i + 1
    if ai in (24, 25, 26, 27):
        n = 1 << (ai - 24)
        if i + 1 + n > len(data):
            raise Malformed("truncated")
        return major, int.from_bytes(data[i + 1 : i + 1 + n], "big"), i + 1 + n
    if ai == 31 and major in (2, 3, 4, 5, 7):
        return major, None, i + 1
    raise Malformed(f"reserved head 0x{ib:02x}")


def _item_end(data: bytes, i: int, depth: int) -> int:
    if depth > 1000:
        raise Malformed("nested too deep")
    major, arg, j = _head(data, i)
    if major in (0, 1):
        return j
    if major in (2, 3):
        if arg is not None:
            if j + arg > len(data):
                raise Malformed("truncated")
            return j + arg
        while True:  # indefinite string: definite chunks of the same major type, then break
            if j >= len(data):
                raise Malformed("truncated")
            if data[j] == 0xFF:
                return j + 1
            m, a, k = _head(data, j)
            if m != major or a is None:
                raise Malformed("bad chunk")
            j = k + a
    if major == 4:
        if arg is not None:
            for _ in range(arg):
                j = _item_end(data, j, depth + 1)
            return j
        while True:
            if j >= len(data):
                raise Malformed("truncated")
            if data[j] == 0xFF:
                return j + 1
            j = _item_end(data, j, depth + 1)
    if major == 5:
        seen: set[str] = set()
        count = 0
        while arg is None or count < arg:
            if arg is None:
                if j >= len(data):
                    raise Malformed("truncated")
                if data[j] == 0xFF:
                    return j + 1
            k = _item_end(data, j, depth + 1)
            key = cbor2.loads(data[j:k])
            # Keys are compared as values: 0 written as 00 and as 18 00 is the same key.
            ident = f"{type(key).__name__}:{key!r}"
            if ident in seen:
                raise Malformed("a map key twice")
            seen.add(ident)
            j = _item_end(data, k, depth + 1)
            count += 1
        return j
    if major == 6:
        return _item_end(data, j, depth + 1)
    # major 7: simple values and floats; a break outside an indefinite item is malformed
    if arg is None:
        raise Malformed("unexpected break")
    return j


# -- field checks (SPEC §6, §10) ----------------------------------------------------------


def int_in(v: Any, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise Schema(f"integer {lo}..{hi} expected, got {v!r}")
    return int(v)


def text_in(v: Any, lo: int, hi: int) -> str:
    if not isinstance(v, str):
        raise Schema(f"text expected, got {v!r}")
    n = len(v.encode())
    if not lo <= n <= hi:
        raise Schema(f"text of {lo}..{hi} bytes expected")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in v):
        raise Schema("control character in text")
    return v


def bytes_in(v: Any, lo: int, hi: int) -> bytes:
    if not isinstance(v, bytes) or not lo <= len(v) <= hi:
        raise Schema(f"byte string of {lo}..{hi} bytes expected")
    return v


def boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise Schema(f"bool expected, got {v!r}")
    return v


def a_map(v: Any) -> dict[Any, Any]:
    if not isinstance(v, dict):
        raise Schema("map expected")
    return v


def need(m: Mapping[Any, Any], key: int) -> Any:
    if key not in m:
        raise Schema(f"key {key} missing")
    return m[key]


def uids_in(v: Any) -> list[bytes]:
    if not isinstance(v, list) or len(v) > 20_000:
        raise Schema("a list of at most 20000 UIDs expected")
    return [bytes_in(u, 4, 10) for u in v]
