"""COSE_Sign1 (RFC 9052 §4.2, §4.4) with EdDSA over Ed25519: the one COSE profile the
protocol uses (SPEC §7.1), from ``cbor2`` and ``cryptography``.

Why not a general COSE library: a station agent runs in a 60 MB memory budget and only ever
verifies this one structure; pycose (with ``ecdsa``, ``attrs`` and its key registry) cost the
agent ~4 MB of resident memory for it. The tests cross-check this module against pycose both
ways (``tests/protocol/test_cose.py``), so the bytes are the ones a COSE library makes and
accepts.

Wire form (SPEC §7.1): ``#6.18([protected: bstr .cbor {1: -8, 4: kid}, unprotected: {},
payload: bstr, signature: bstr .size 64])``; the signature is over
``["Signature1", protected, h'', payload]`` (the Sig_structure, no external AAD).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

#: CBOR tag of a COSE_Sign1 message.
SIGN1_TAG = 18
#: Header labels (RFC 9052 §3.1) and the EdDSA algorithm id (RFC 9053 §2.2).
ALG = 1
KID = 4
EDDSA = -8


class CoseError(ValueError):
    """Not a COSE_Sign1 message this profile reads (the message says what is wrong)."""


@dataclass(frozen=True, slots=True)
class Sign1:
    """A decoded COSE_Sign1, signature not yet checked."""

    protected: bytes  # the serialized protected header, as signed
    header: dict[Any, Any]  # the protected header, decoded
    payload: bytes
    signature: bytes

    @property
    def algorithm(self) -> Any:
        return self.header.get(ALG)

    @property
    def kid(self) -> Any:
        return self.header.get(KID)

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        """True if the signature holds for ``public_key``."""
        try:
            public_key.verify(self.signature, _to_be_signed(self.protected, self.payload))
        except InvalidSignature:
            return False
        return True


def _to_be_signed(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload])


def sign1(private_key: Ed25519PrivateKey, kid: bytes, payload: bytes) -> bytes:
    """The tagged COSE_Sign1 of ``payload``, signed with EdDSA, ``kid`` protected."""
    protected = cbor2.dumps({ALG: EDDSA, KID: kid})
    signature = private_key.sign(_to_be_signed(protected, payload))
    return cbor2.dumps(cbor2.CBORTag(SIGN1_TAG, [protected, {}, payload, signature]))


def decode_sign1(data: bytes) -> Sign1:
    """The message's parts, or CoseError (the signature is checked by :meth:`Sign1.verify`)."""
    try:
        message = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types for bad input
        raise CoseError(f"not CBOR: {exc}") from None
    if isinstance(message, cbor2.CBORTag):
        if message.tag != SIGN1_TAG:
            raise CoseError(f"tag {message.tag} is not COSE_Sign1 ({SIGN1_TAG})")
        message = message.value
    if not isinstance(message, list) or len(message) != 4:
        raise CoseError("a COSE_Sign1 is an array of 4")
    protected, unprotected, payload, signature = message
    if not isinstance(protected, bytes) or not isinstance(unprotected, dict):
        raise CoseError("headers are a bstr and a map")
    if not isinstance(payload, bytes):
        raise CoseError("COSE_Sign1 without a payload")
    if not isinstance(signature, bytes) or len(signature) != 64:
        raise CoseError("an Ed25519 signature is 64 bytes")
    try:
        header = cbor2.loads(protected) if protected else {}
    except Exception as exc:
        raise CoseError(f"protected header is not CBOR: {exc}") from None
    if not isinstance(header, dict):
        raise CoseError("protected header is not a map")
    return Sign1(protected, header, payload, signature)
