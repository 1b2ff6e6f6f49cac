"""Our COSE_Sign1 (kickstand.protocol.cose) against a COSE library (pycose), both ways: the
bytes we sign are what pycose makes and verifies, and what pycose signs we verify."""

from __future__ import annotations

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pycose.algorithms import EdDSA
from pycose.headers import KID, Algorithm
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import Sign1Message

from kickstand.protocol import cose
from kickstand.protocol.signing import private_key_bytes, public_key_bytes

KID_BYTES = b"kid-0001"
PAYLOAD = cbor2.dumps({0: b"\x01" * 16, 1: "st-0001", 5: {1: 3}})


def _pycose_key(key: Ed25519PrivateKey) -> OKPKey:
    return OKPKey(crv=Ed25519, d=private_key_bytes(key), x=public_key_bytes(key))


def _pycose_sign(key: Ed25519PrivateKey, payload: bytes = PAYLOAD) -> bytes:
    msg = Sign1Message(phdr={Algorithm: EdDSA, KID: KID_BYTES}, payload=payload)
    msg.key = _pycose_key(key)
    encoded: bytes = msg.encode(tag=True)
    return encoded


def test_our_signature_is_the_librarys_byte_for_byte_and_verifies_there() -> None:
    key = Ed25519PrivateKey.generate()
    ours = cose.sign1(key, KID_BYTES, PAYLOAD)
    assert ours == _pycose_sign(key)  # Ed25519 is deterministic: same bytes
    decoded = Sign1Message.decode(ours)
    decoded.key = _pycose_key(key)
    assert decoded.verify_signature()


def test_we_verify_what_the_library_signs_and_refuse_what_was_changed() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    message = cose.decode_sign1(_pycose_sign(key))
    assert message.algorithm == cose.EDDSA and message.kid == KID_BYTES
    assert message.payload == PAYLOAD
    assert message.verify(key.public_key())
    assert not message.verify(other.public_key())
    tampered = bytearray(_pycose_sign(key))
    tampered[-70] ^= 0x01  # a payload byte
    assert not cose.decode_sign1(bytes(tampered)).verify(key.public_key())


@pytest.mark.parametrize(
    ("wire", "complaint"),
    [
        (b"\x58\x10", "not CBOR"),  # a 16-byte string cut short
        (cbor2.dumps(cbor2.CBORTag(98, [b"", {}, b"", b"\0" * 64])), "tag 98"),
        (cbor2.dumps([b"", {}, b""]), "array of 4"),
        (cbor2.dumps([b"", {}, None, b"\0" * 64]), "without a payload"),
        (cbor2.dumps([b"", {}, b"", b"\0" * 63]), "64 bytes"),
        (cbor2.dumps([b"\x58\x10", {}, b"", b"\0" * 64]), "not CBOR"),
        (cbor2.dumps([cbor2.dumps([1]), {}, b"", b"\0" * 64]), "not a map"),
    ],
)
def test_what_is_not_a_sign1_is_a_typed_error(wire: bytes, complaint: str) -> None:
    with pytest.raises(cose.CoseError, match=complaint):
        cose.decode_sign1(wire)
