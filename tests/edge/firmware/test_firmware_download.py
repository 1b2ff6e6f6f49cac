"""Downloads over a real HTTP server on loopback: resume after a cut costs only the rest,
a corrupt image is refused by its digest, a longer one by the manifest's size."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from kickstand.edge.core.firmware.download import Downloader
from kickstand.edge.core.firmware.errors import FirmwareError
from kickstand.edge.core.link import ReconnectBackoff
from kickstand.protocol.v1.enums import FirmwareState
from kickstand.simulators.firmware import Faults, ImageServer

SIZE = 1_000_000
IMAGE = hashlib.shake_256(b"kickstand image").digest(SIZE)
DIGEST = hashlib.sha256(IMAGE).hexdigest()


def _fast() -> ReconnectBackoff:
    return ReconnectBackoff(0.01, 0.05, float("inf"))


def downloader(url: str, dest: Path, **kw: object) -> Downloader:
    return Downloader(url, dest, SIZE, hashlib.sha256(IMAGE).digest(), backoff=_fast(),
                      **kw)  # type: ignore[arg-type]


async def test_resume_after_a_cut_fetches_only_the_rest(tmp_path: Path,
                                                        server: ImageServer) -> None:
    url = server.add(IMAGE)
    server.faults = Faults(cut_after=300_000, cuts=2)
    progress: list[int] = []
    dl = downloader(url, tmp_path / "image.part", progress=progress.append)
    stats = await dl.run()
    await dl.verify()
    assert (tmp_path / "image.part").read_bytes() == IMAGE
    # Two cuts after 300 kB each, then the rest. Each attempt resumes where the bytes that
    # arrived end: what the cut swallowed in flight (socket and parser buffers) is fetched
    # again, nothing else. Starting over would cost SIZE + 2 * 300 kB.
    starts = [int(r.removeprefix("GET bytes=").rstrip("-")) for r in server.requests[1:]]
    assert server.requests[0] == "GET -" and len(starts) == 2
    assert 0 < starts[0] <= 300_000 and starts[0] < starts[1] <= starts[0] + 300_000
    in_flight = 2 * 300_000 - starts[1]
    assert server.bytes_sent[DIGEST] == SIZE + in_flight
    assert in_flight < 200_000
    assert stats.attempts == 3 and stats.fetched == SIZE
    assert progress == sorted(progress) and progress[-1] <= SIZE


async def test_a_new_call_resumes_what_a_killed_one_left(tmp_path: Path,
                                                         server: ImageServer) -> None:
    url = server.add(IMAGE)
    (tmp_path / "image.part").write_bytes(IMAGE[:700_000])  # the last process got this far
    dl = downloader(url, tmp_path / "image.part")
    stats = await dl.run()
    await dl.verify()
    assert stats.resumed_from == 700_000 and server.bytes_sent[DIGEST] == SIZE - 700_000
    assert server.requests == ["GET bytes=700000-"]


async def test_a_corrupt_image_is_refused_and_not_kept(tmp_path: Path,
                                                       server: ImageServer) -> None:
    url = server.add(IMAGE)
    server.faults = Faults(flip_byte=123_456)
    dl = downloader(url, tmp_path / "image.part")
    await dl.run()
    with pytest.raises(FirmwareError) as failed:
        await dl.verify()
    assert failed.value.state is FirmwareState.VERIFY_FAILED
    assert not (tmp_path / "image.part").exists()  # the next try starts clean


async def test_an_image_longer_than_the_manifest_says_is_cut_off(tmp_path: Path,
                                                                server: ImageServer) -> None:
    url = server.add(IMAGE + b"more")
    dl = downloader(url, tmp_path / "image.part")
    with pytest.raises(FirmwareError, match="longer") as failed:
        await dl.run()
    assert failed.value.state is FirmwareState.DOWNLOAD_FAILED


async def test_attempts_are_spent_then_download_failed(tmp_path: Path,
                                                       server: ImageServer) -> None:
    url = server.add(IMAGE)
    server.faults = Faults(cut_after=1000, cuts=10)
    dl = downloader(url, tmp_path / "image.part", attempts=3)
    with pytest.raises(FirmwareError, match="3 attempts") as failed:
        await dl.run()
    assert failed.value.state is FirmwareState.DOWNLOAD_FAILED
    assert (tmp_path / "image.part").stat().st_size <= 3000  # kept for the next try


async def test_a_missing_image_fails_at_once(tmp_path: Path, server: ImageServer) -> None:
    server.add(IMAGE)
    dl = downloader(server.url_of("00" * 32), tmp_path / "image.part")
    with pytest.raises(FirmwareError, match="HTTP 404"):
        await dl.run()
    assert server.requests == ["GET -"]
