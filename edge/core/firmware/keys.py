"""The firmware public keys a device trusts (SPEC §13.2): provisioned like command keys."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from kickstand.edge.core.errors import ConfigError


def _raw(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"firmware key {text!r} is not hex") from None
    if len(raw) != 32:
        raise ConfigError(f"firmware key {text!r} is not 32 bytes")
    return raw


def firmware_keys(entries: Iterable[str]) -> list[bytes]:
    """Raw Ed25519 public keys of ``entries``: each the key as hex, or the path of a file of
    such keys (one per line, ``#`` comments), the provisioning document's form."""
    keys: list[bytes] = []
    for entry in entries:
        text = entry.strip()
        if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
            keys.append(_raw(text))
            continue
        try:
            lines = Path(text).read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"firmware key file {text!r}: {exc}") from None
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if line:
                keys.append(_raw(line))
    return keys
