"""The installation's firmware signing key (Ed25519), kept apart from the command key.

    key = load_firmware_key(settings)          # Ed25519PrivateKey
    doc = public_document(key)                  # {"key_id": hex, "public_key": hex, ...}

A leaked command key must not install software, so manifests are signed with this key
only (protocol/SPEC.md §13). Devices are provisioned with its public half in
``firmware_public_keys`` (agent settings, as ``command_keys``, SPEC §7.6).
``python -m kickstand.cloud pki firmware-key --file PATH`` creates it (mode 0600) and
prints that line; the cloud reads it from ``FIRMWARE_SIGNING_KEY_FILE``. In development,
when unset, ``VAR_DIR/firmware-signing.key`` is created on first use; production refuses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kickstand.cloud.config import Settings
from kickstand.cloud.firmware.errors import FirmwareKeyError
from kickstand.protocol.firmware import firmware_key_id
from kickstand.protocol.signing import (
    generate_private_key,
    load_or_create_private_key,
    load_private_key,
    private_key_bytes,
    public_key_bytes,
)

DEV_KEY_NAME = "firmware-signing.key"


def signing_key_path(settings: Settings) -> Path:
    if settings.FIRMWARE_SIGNING_KEY_FILE is not None:
        return settings.FIRMWARE_SIGNING_KEY_FILE
    if settings.ENVIRONMENT != "development":
        raise FirmwareKeyError(None, "FIRMWARE_SIGNING_KEY_FILE must be set outside development")
    return settings.VAR_DIR / DEV_KEY_NAME


def load_firmware_key(settings: Settings) -> Ed25519PrivateKey:
    path = signing_key_path(settings)
    try:
        if settings.ENVIRONMENT == "development":
            return load_or_create_private_key(path)
        return load_private_key(path)
    except (OSError, ValueError) as exc:
        raise FirmwareKeyError(path, str(exc)) from exc


def create_key(path: Path, *, force: bool = False) -> Ed25519PrivateKey:
    """A new key written to ``path`` (mode 0600); an existing one is kept unless ``force``
    (every device provisioned with its public half would refuse the next manifests)."""
    if path.exists() and not force:
        raise FirmwareKeyError(path, "exists (pass --force to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_private_key()
    path.write_text(private_key_bytes(key).hex() + "\n")
    path.chmod(0o600)
    return key


def public_document(key: Ed25519PrivateKey) -> dict[str, Any]:
    public = public_key_bytes(key)
    return {
        "alg": "EdDSA",
        "crv": "Ed25519",
        "key_id": firmware_key_id(public).hex(),
        "public_key": public.hex(),
    }


def render(doc: dict[str, Any], fmt: str) -> str:
    """The document as JSON, or as the line an agent's settings take (TOML or environment)."""
    keys = json.dumps([doc["public_key"]])
    if fmt == "toml":
        return f"firmware_public_keys = {keys}  # key id {doc['key_id']}"
    if fmt == "env":
        return f"KICKSTAND_FIRMWARE_PUBLIC_KEYS='{keys}'"
    return json.dumps(doc, indent=2)


__all__ = [
    "create_key",
    "load_firmware_key",
    "public_document",
    "render",
    "signing_key_path",
]
