"""The cloud's command signing key, and its public half for provisioning devices.

    signer = load_signer(settings)             # CommandSigner (Ed25519, COSE_Sign1)
    doc = provisioning_document(signer)         # {"kid": hex, "public_key": hex, ...}

Devices trust the raw public key: put ``doc["public_key"]`` in the agent's
``command_keys`` (``KICKSTAND_COMMAND_KEYS='["<hex>"]'``). ``python -m
kickstand.cloud.commands`` prints the document (``--help``: the formats; it creates the
key in development). SPEC §7.6 says what a device is provisioned with, and how to rotate.

The key file is ``COMMAND_SIGNING_KEY_FILE``; when unset, development uses
``VAR_DIR/command-signing.key`` (created on first use, mode 0600) and production refuses.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kickstand.cloud.commands.errors import CommandKeyError
from kickstand.cloud.config import Settings
from kickstand.protocol.signing import CommandSigner, load_or_create_private_key, load_private_key

DEV_KEY_NAME = "command-signing.key"
PUBLIC_DOC_NAME = "command-signing.pub.json"


def signing_key_path(settings: Settings) -> Path:
    if settings.COMMAND_SIGNING_KEY_FILE is not None:
        return settings.COMMAND_SIGNING_KEY_FILE
    if settings.ENVIRONMENT != "development":
        raise CommandKeyError(None, "COMMAND_SIGNING_KEY_FILE must be set outside development")
    return settings.VAR_DIR / DEV_KEY_NAME


def load_signer(settings: Settings) -> CommandSigner:
    path = signing_key_path(settings)
    try:
        if settings.ENVIRONMENT == "development":
            key = load_or_create_private_key(path)
        else:
            key = load_private_key(path)
    except (OSError, ValueError) as exc:
        raise CommandKeyError(path, str(exc)) from exc
    return CommandSigner(key)


def trusted_keys(signer: CommandSigner) -> dict[bytes, bytes]:
    """What a device's CommandVerifier takes: {kid: raw public key}."""
    return {signer.kid: signer.public_key}


def provisioning_document(signer: CommandSigner) -> dict[str, Any]:
    return {
        "alg": "EdDSA",
        "crv": "Ed25519",
        "kid": signer.kid.hex(),
        "public_key": signer.public_key.hex(),
    }


def publish_public_key(settings: Settings, path: Path | None = None) -> Path:
    """Write the provisioning document next to the key (for the demo launcher, rigs)."""
    target = path or settings.VAR_DIR / PUBLIC_DOC_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(provisioning_document(load_signer(settings)), indent=2) + "\n")
    return target


def render(doc: dict[str, Any], fmt: str) -> str:
    """The document as JSON, or as the line an agent's settings take (TOML or environment)."""
    keys = json.dumps([doc["public_key"]])
    if fmt == "toml":
        return f"command_keys = {keys}  # kid {doc['kid']}"
    if fmt == "env":
        return f"KICKSTAND_COMMAND_KEYS='{keys}'"
    return json.dumps(doc, indent=2)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kickstand.cloud.commands",
        description="Print the public half of the cloud's command signing key: what every "
        "station and vehicle must trust to obey commands (protocol/SPEC.md §7.6). "
        "The key is COMMAND_SIGNING_KEY_FILE (an Ed25519 seed as hex, or a PEM PKCS#8 key); "
        "in development, when unset, VAR_DIR/command-signing.key is created on first use.",
        epilog="A device is provisioned with its device id, the broker URL and credentials, "
        "and the command keys printed here (several during a key rotation: see SPEC §7.6).",
    )
    parser.add_argument(
        "--format",
        choices=("json", "toml", "env"),
        default="json",
        help="json: the document {alg, crv, kid, public_key} (default); toml: the "
        "command_keys line of an agent's settings file; env: KICKSTAND_COMMAND_KEYS for an "
        "agent's environment",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="write to FILE instead of printing",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    from kickstand.cloud.config import get_settings

    args = _parser().parse_args(argv)
    try:
        text = render(provisioning_document(load_signer(get_settings())), args.format)
    except CommandKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
