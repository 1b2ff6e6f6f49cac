"""Fixtures of the device-side firmware library tests: a real HTTP image server on loopback,
the simulated installation's firmware key, images of the reference agents' format."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from kickstand.simulators.firmware import ImageServer
from kickstand.simulators.station.cloudpeer import CloudPeer
from kickstand.testing import MosquittoService


@pytest.fixture
def server() -> Iterator[ImageServer]:
    with ImageServer().running() as running:
        yield running


@pytest.fixture
async def cloud(mosquitto: MosquittoService) -> AsyncIterator[CloudPeer]:
    """The cloud's side of the wire for a real agent: signs commands, records what comes."""
    async with CloudPeer(mosquitto.host, mosquitto.port, username=mosquitto.cloud_username,
                         password=mosquitto.cloud_password) as peer:
        yield peer
