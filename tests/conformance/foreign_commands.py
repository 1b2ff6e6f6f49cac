"""Signed commands for the foreign station: the provisioning document (SPEC §7.6), the
COSE_Sign1 checks of §7.2 in their order, the arguments of §6. Written from the documents
alone: ``cbor2`` and ``cryptography`` (Ed25519 verify), nothing of ``kickstand``."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.conformance.foreign_cbor import (
    Malformed,
    Schema,
    a_map,
    boolean,
    bytes_in,
    int_in,
    need,
    strict_loads,
    text_in,
    uids_in,
)
from tests.conformance.foreign_wire import (
    AUTH_DIFF,
    AUTH_FULL,
    MAX_COMMAND,
    SKEW_MS,
    U63,
    V31,
    ZERO_ID,
    Command,
    Reject,
    Trigger,
)


def _check_args(ctype: int, args: dict[Any, Any]) -> None:
    """The arguments of §6 "Command arguments"; unknown keys are ignored (§8)."""
    opt = args.get
    if ctype == Command.UNLOCK:
        if 0 in args:
            int_in(opt(0), 0, 255)
        if 1 in args:
            int_in(opt(1), 0, 600)
        if 2 in args:
            text_in(opt(2), 0, 40)
    elif ctype == Command.LOCK:
        if 0 in args:
            int_in(opt(0), 0, 255)
    elif ctype == Command.SET_SPEED_LIMIT:
        int_in(need(args, 0), 0, 100)
    elif ctype == Command.SET_MAINTENANCE:
        int_in(need(args, 0), 0, 255)
        boolean(need(args, 1))
        if 2 in args:
            text_in(opt(2), 0, 64)
    elif ctype == Command.AUTH_LIST_UPDATE:
        if int_in(need(args, 0), 0, 255) not in (AUTH_FULL, AUTH_DIFF):
            raise Schema("unknown AuthListKind")
        int_in(need(args, 1), 0, V31)
        if 2 in args:
            int_in(opt(2), 0, V31)
        for k in (3, 4):
            if k in args:
                uids_in(args[k])
    elif ctype == Command.CONFIG:
        int_in(need(args, 0), 0, V31)
        if 1 in args:
            values = a_map(opt(1))
            if len(values) > 64:
                raise Schema("more than 64 Config values")
            for k, v in values.items():
                text_in(k, 0, 64)
                if isinstance(v, float):
                    if not math.isfinite(v):
                        raise Schema("a Config float must be finite")
                elif isinstance(v, str):
                    text_in(v, 0, 2**31)
                elif not isinstance(v, bool):
                    int_in(v, -(2**63), U63)
    elif ctype == Command.REBOOT:
        if 0 in args:
            boolean(opt(0))
    elif ctype == Command.TRIGGER_MESSAGE:
        if int_in(need(args, 0), 0, 255) not in set(Trigger):
            raise Schema("unknown TriggerKind")
        if 1 in args:
            int_in(opt(1), 0, 255)
    elif ctype == Command.FIRMWARE_UPDATE:  # §6: the signed manifest (§13) and the spot
        bytes_in(need(args, 5), 1, 1120)
        if 4 in args:
            int_in(opt(4), 0, 255)
    elif ctype == Command.CERT_ISSUED:  # §6 CertIssued: the certificate's DER
        bytes_in(need(args, 0), 64, 4096)


# -- command verification (SPEC §7.1, §7.2) ------------------------------------------------


@dataclass(frozen=True)
class Verified:
    command_id: bytes
    ctype: Command
    issued_at: int
    expires_at: int
    args: dict[Any, Any]


@dataclass(frozen=True)
class Refused:
    command_id: bytes
    reason: Reject
    detail: str


def kid_of(public_key: bytes) -> bytes:
    """§7.1: the key id is the first 8 bytes of the raw public key."""
    return public_key[:8]


class Verifier:
    """The checks of §7.2, in that order. ``executed`` is the device's non-volatile set of
    command ids (kept at least until their ``expires_at``)."""

    def __init__(self, device_id: str, public_keys: Iterable[bytes]) -> None:
        self.device_id = device_id
        self.keys = {kid_of(k): Ed25519PublicKey.from_public_bytes(k) for k in public_keys}
        self.executed: dict[bytes, int] = {}

    def verify(self, raw: bytes, now_ms: int) -> Verified | Refused:
        cid = _readable_command_id(raw)
        # 1. size, COSE_Sign1 structure, alg
        if len(raw) > MAX_COMMAND:
            return Refused(cid, Reject.MALFORMED, "over 256 KiB")
        try:
            item = strict_loads(raw)
            if not isinstance(item, cbor2.CBORTag) or item.tag != 18:
                raise Schema("not a COSE_Sign1 (tag 18)")
            parts = item.value
            if not isinstance(parts, list | tuple) or len(parts) != 4:
                raise Schema("COSE_Sign1 is an array of 4")
            protected_raw, unprotected, payload, signature = parts
            bytes_in(protected_raw, 0, MAX_COMMAND)
            a_map(unprotected)
            bytes_in(payload, 0, MAX_COMMAND)
            bytes_in(signature, 64, 64)
            protected = a_map(strict_loads(protected_raw)) if protected_raw else {}
        except (Malformed, Schema) as e:
            return Refused(cid, Reject.MALFORMED, str(e)[:128])
        if protected.get(1) != -8:
            return Refused(cid, Reject.BAD_SIGNATURE, "alg is not EdDSA")
        # 2. a trusted kid
        kid = protected.get(4)
        key = self.keys.get(kid) if isinstance(kid, bytes) else None
        if key is None:
            return Refused(cid, Reject.UNKNOWN_KEY, "untrusted kid")
        # 3. the signature, over Sig_structure (RFC 9052 §4.4)
        to_sign = cbor2.dumps(["Signature1", protected_raw, b"", payload])
        try:
            key.verify(signature, to_sign)
        except InvalidSignature:
            return Refused(cid, Reject.BAD_SIGNATURE, "signature does not verify")
        # 4. the payload decodes, its type is known
        try:
            body = a_map(strict_loads(payload))
            cid = bytes_in(need(body, 0), 16, 16)
            device_id = text_in(need(body, 1), 1, 32)
            ctype_code = int_in(need(body, 2), 0, 255)
            issued_at = int_in(need(body, 3), 0, U63)
            expires_at = int_in(need(body, 4), 0, U63)
            args = a_map(need(body, 5))
            if any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in args):
                raise Schema("argument keys are uints")
        except (Malformed, Schema) as e:
            return Refused(cid, Reject.MALFORMED, str(e)[:128])
        if ctype_code not in set(Command):
            return Refused(cid, Reject.NOT_SUPPORTED, f"command type {ctype_code}")
        ctype = Command(ctype_code)
        try:
            _check_args(ctype, args)
        except Schema as e:
            return Refused(cid, Reject.MALFORMED, str(e)[:128])
        # 5.-8. device, time, replay
        if device_id != self.device_id:
            return Refused(cid, Reject.WRONG_DEVICE, f"for {device_id}")
        if now_ms > expires_at:
            return Refused(cid, Reject.EXPIRED, f"expired {now_ms - expires_at} ms ago")
        if issued_at > now_ms + SKEW_MS:
            return Refused(cid, Reject.NOT_YET_VALID, "issued in the future")
        if cid in self.executed:
            return Refused(cid, Reject.REPLAYED, "already executed")
        self.executed[cid] = expires_at
        for old, exp in list(self.executed.items()):
            if exp < now_ms - 3_600_000:  # long past its expiry: cannot verify again
                del self.executed[old]
        return Verified(cid, ctype, issued_at, expires_at, args)


def _readable_command_id(raw: bytes) -> bytes:
    """§11: a refusal carries the payload's command_id when it can be read (even
    unverified), else 16 zero bytes."""
    try:
        item = cbor2.loads(raw)
        payload = cbor2.loads(item.value[2])
        cid = payload[0]
        if isinstance(cid, bytes) and len(cid) == 16:
            return cid
    except Exception:
        pass
    return ZERO_ID


def decode_json_key(document: str) -> bytes:
    """The provisioning document of §7.6 (``{"alg", "crv", "kid", "public_key"}``)."""
    doc = json.loads(document)
    key = bytes.fromhex(doc["public_key"])
    if doc.get("kid") and bytes.fromhex(doc["kid"]) != kid_of(key):
        raise ValueError("the document's kid is not its key's first 8 bytes")
    return key
