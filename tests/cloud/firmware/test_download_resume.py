"""The device library's download against the API's image route over real HTTP (uvicorn),
through the simulator's cut fault (``CuttingRelay``, as the campaign benchmark runs it): a
download cut mid-way resumes with ``Range`` and fetches only the rest from the API."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn

from kickstand.cloud.broker import free_port
from kickstand.edge.core.firmware.download import Downloader
from kickstand.edge.core.link import ReconnectBackoff
from kickstand.simulators.firmware import CuttingRelay, Faults
from tests.cloud.firmware.conftest import Fw

IMAGE = os.urandom(700_000)
CUT = 300_000


@contextlib.asynccontextmanager
async def served(fw: Fw) -> AsyncIterator[int]:
    port = free_port()
    config = uvicorn.Config(
        fw.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 15
    while not server.started:
        if task.done():
            task.result()
        assert time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


async def test_a_cut_download_resumes_from_the_api(fw: Fw, tmp_path: Path) -> None:
    r = await fw.upload(IMAGE)
    assert r.status_code == 200, r.text
    digest = r.json()["data"]["sha256"]
    dest = tmp_path / "image.part"
    async with (
        served(fw) as port,
        CuttingRelay(("127.0.0.1", port), Faults(cut_after=CUT, cuts=1)) as relay,
    ):
        download = Downloader(
            f"{relay.base_url}/v1/firmware/images/{digest}",
            dest,
            len(IMAGE),
            hashlib.sha256(IMAGE).digest(),
            backoff=ReconnectBackoff(0.01, 0.02, float("inf")),
        )
        stats = await download.run()
        await download.verify()
    assert dest.read_bytes() == IMAGE
    assert (relay.connections, relay.cut, stats.attempts) == (2, 1, 2)
    # The second request asked for the rest only: what the API sent is the image, the
    # part of the cut response that was lost with the link (under a 64 KiB chunk the
    # device had not written yet, plus what the relay read past the cut) and headers.
    assert len(IMAGE) < relay.bytes_from_server < len(IMAGE) + 2 * 64 * 1024
    assert relay.bytes_to_clients < len(IMAGE) + CUT // 2
