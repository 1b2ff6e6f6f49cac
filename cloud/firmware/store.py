"""The content-addressed image store: a local directory, one file per SHA-256.

    store = ImageStore(settings.FIRMWARE_STORE_DIR or settings.VAR_DIR / "firmware")
    staged = await store.receive(request.stream(), max_bytes)   # hashed while written
    path = store.keep(staged)                                   # <root>/ab/ab12…

An image is streamed to a temporary file while its digest is computed, never held whole
in memory, then moved to its name: a name always holds the bytes of its digest, and two
uploads of one image are one file. Downloads read the file in chunks (the API's
``FileResponse``, with ranges).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path

from kickstand.cloud.firmware.errors import ImageRefusedError

#: Writes are batched to this size before going to the file (the request's chunks are small).
WRITE_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Staged:
    """An upload written to a temporary file of the store, not named yet."""

    path: Path
    sha256: str
    size: int


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, sha256_hex: str) -> Path:
        return self.root / sha256_hex[:2] / sha256_hex

    def exists(self, sha256_hex: str) -> bool:
        return self.path_of(sha256_hex).is_file()

    async def receive(self, chunks: AsyncIterable[bytes], max_bytes: int) -> Staged:
        """Write ``chunks`` to a temporary file in the store, hashing them; refused (and the
        file removed) when empty or over ``max_bytes``."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".upload-", dir=self.root)
        path = Path(name)
        digest = hashlib.sha256()
        size = 0
        pending = bytearray()
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise ImageRefusedError(
                            f"the image is over the limit of {max_bytes} bytes", field="body"
                        )
                    digest.update(chunk)
                    pending += chunk
                    if len(pending) >= WRITE_CHUNK:
                        await asyncio.to_thread(out.write, bytes(pending))
                        pending.clear()
                if pending:
                    await asyncio.to_thread(out.write, bytes(pending))
            if size == 0:
                raise ImageRefusedError("the image is empty", field="body")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return Staged(path, digest.hexdigest(), size)

    def keep(self, staged: Staged) -> Path:
        """The staged file under its digest's name (an existing copy is the same bytes)."""
        target = self.path_of(staged.sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged.path, target)
        return target

    def discard(self, staged: Staged) -> None:
        staged.path.unlink(missing_ok=True)

    def delete(self, sha256_hex: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_of(sha256_hex).unlink()


__all__ = ["ImageStore", "Staged"]
