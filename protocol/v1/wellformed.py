"""Strict CBOR loading: exactly one well-formed item, no duplicate map key anywhere.

cbor2 decodes the first item and ignores what follows it, and a map whose key repeats
becomes a dict holding the last value, so two parsers could read the same bytes
differently (SPEC §1, §11). ``loads_strict`` refuses both.

The check costs one re-encode in the common case: bytes that are the preferred, definite
encoding of their own decoded value (what every encoder of ours emits) can hold neither a
repeated key nor trailing bytes, because parsing is deterministic. Anything else (an
indefinite length, a longer-than-needed integer, a half float, a duplicate, a trailing
byte) takes the walk below, which reads item heads without building values: SPEC §1 lets a
device use any valid encoding, so only the walk may refuse.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import cbor2

_BREAK = 0xFF
_LEFT, _IS_MAP, _KEYS, _WANT_KEY, _START, _CHUNKS = range(6)


class NotOneItem(ValueError):
    """The bytes are not exactly one well-formed CBOR item with unique map keys."""


class _Reencoder(threading.local):
    """One encoder per thread, reused: ``cbor2.dumps`` builds an encoder per call (3.5 us
    against 0.9 us for a status message, measured 2026-12)."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.encoder = cbor2.CBOREncoder(self.buffer)

    def same(self, value: Any, data: bytes) -> bool:
        buffer = self.buffer
        buffer.seek(0)
        buffer.truncate()
        try:
            self.encoder.encode(value)
        except Exception:  # a value cbor2 reads but cannot write (a lone break, a cycle)
            return False
        return buffer.getvalue() == data


_reencoder = _Reencoder()


def loads_strict(data: bytes) -> Any:
    """The one CBOR item ``data`` holds; NotOneItem or cbor2's own errors otherwise."""
    value = cbor2.loads(data)
    if not _reencoder.same(value, data):
        check(data)
    return value


def check(data: bytes) -> None:
    """Raise NotOneItem unless ``data`` is one well-formed item whose maps' keys are unique.

    Iterative (an explicit stack), so nesting depth costs memory, not the call stack. Keys
    compare as the values a decoder builds from them: ``1`` in two encodings is a duplicate.
    """
    n = len(data)
    pos = 0
    # One frame per open container: items left (-1: indefinite), is a map, keys seen,
    # next item is a key, where the container began, major type of an indefinite string.
    stack: list[list[Any]] = []
    start = -1  # where the current item began (at its tag, if tagged)
    while True:
        if pos >= n:
            raise NotOneItem("truncated: the item ends before its last byte")
        if start < 0:
            start = pos
        head = data[pos]
        major, info = head >> 5, head & 0x1F
        pos += 1
        if head == _BREAK:
            if not stack or stack[-1][_LEFT] != -1:
                raise NotOneItem("a break (0xff) outside an indefinite-length item")
            frame = stack.pop()
            if frame[_IS_MAP] and not frame[_WANT_KEY]:
                raise NotOneItem("an indefinite map ends after a key, before its value")
            start = frame[_START]  # the container is complete: one item of its parent
        else:
            if info < 24:
                arg = info
            elif info < 28:
                size = 1 << (info - 24)
                if pos + size > n:
                    raise NotOneItem("truncated: an item head ends early")
                arg = int.from_bytes(data[pos : pos + size], "big")
                pos += size
            elif info == 31 and major in (2, 3, 4, 5):
                arg = -1
            else:
                raise NotOneItem(f"reserved or invalid item head 0x{head:02x}")
            if (
                stack
                and stack[-1][_CHUNKS] is not None
                and (major != stack[-1][_CHUNKS] or arg < 0)
            ):
                raise NotOneItem("an indefinite-length string holds a chunk of another kind")
            if major in (2, 3):
                if arg < 0:
                    stack.append([-1, False, None, True, start, major])
                    start = -1
                    continue
                pos += arg
                if pos > n:
                    raise NotOneItem("truncated: a string ends early")
            elif major in (4, 5) and arg != 0:
                left = arg * 2 if major == 5 and arg > 0 else arg
                if left > n - pos:  # every item takes a byte at least: the count lies
                    raise NotOneItem("truncated: a container holds fewer items than it says")
                keys: set[Any] | None = set() if major == 5 else None
                stack.append([left, major == 5, keys, True, start, None])
                start = -1
                continue
            elif major == 6:
                continue  # a tag: the item it wraps follows and begins at the tag
            # Anything else (ints, simple values, floats, empty containers) ends with its head.

        # An item [start, pos) is complete: count it in its container, and close the
        # containers it completes, each of which is then an item of the one below.
        while stack:
            frame = stack[-1]
            if frame[_IS_MAP]:
                if frame[_WANT_KEY]:
                    key = _key_of(data[start:pos])
                    if key in frame[_KEYS]:
                        raise NotOneItem(f"map key {key!r} appears twice")
                    frame[_KEYS].add(key)
                frame[_WANT_KEY] = not frame[_WANT_KEY]
            if frame[_LEFT] < 0:
                break
            frame[_LEFT] -= 1
            if frame[_LEFT]:
                break
            stack.pop()
            start = frame[_START]
        else:
            if pos != n:
                raise NotOneItem(f"{n - pos} byte(s) after the CBOR item")
            return
        start = -1


def _key_of(raw: bytes) -> Any:
    """A map key as the value cbor2 builds for it in a map (hashable: arrays become tuples)."""
    try:
        (key,) = cbor2.loads(b"\xa1" + raw + b"\xf6")
    except Exception:
        # Only a reference tag (value sharing, string references) fails alone: its bytes.
        return ("raw", raw)
    return key
