"""External lock codes at rest: AES-GCM, the key derived from the API's secret.

A code must be shown to the rider again (it opens a physical lock), so it cannot be
hashed; it is sealed instead: a database dump or a backup alone does not reveal it. The key
is HKDF(``JWT_SECRET``, info ``kickstand external lock codes``): separate from the token
signing key, and nothing else to provision. The lock's id is the associated data, so a
sealed code copied onto another lock does not open. Rotating ``JWT_SECRET`` makes the
stored codes unreadable (:class:`LockCodeUnreadableError`): set the codes again.
"""

from __future__ import annotations

import functools
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kickstand.cloud.errors import ConflictError

_INFO = b"kickstand external lock codes"
_NONCE_BYTES = 12


class LockCodeUnreadableError(ConflictError):
    """The sealed code does not open with the current key (secret rotated, row altered)."""

    def __init__(self, lock_id: int) -> None:
        super().__init__(
            f"the code of external lock {lock_id} cannot be read with this key: set it again",
            reason="lock-code-unreadable",
        )
        self.lock_id = lock_id


@functools.lru_cache(maxsize=4)
def key_from_secret(secret: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret.encode())


def _aad(lock_id: int) -> bytes:
    return f"external-lock:{lock_id}".encode()


def seal(key: bytes, lock_id: int, code: str) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, code.encode(), _aad(lock_id))


def unseal(key: bytes, lock_id: int, sealed: bytes) -> str:
    try:
        clear = AESGCM(key).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _aad(lock_id))
    except InvalidTag as exc:
        raise LockCodeUnreadableError(lock_id) from exc
    return clear.decode()
