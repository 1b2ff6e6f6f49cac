"""Fixtures: a cloud peer on the harness broker and a station rig (simulator + real agent)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kickstand.simulators.firmware import public_hex as firmware_public_hex
from kickstand.simulators.station.cloudpeer import CloudPeer
from kickstand.simulators.station.sim import StationRig
from kickstand.testing import MosquittoService

_ids = itertools.count(1)


@pytest.fixture
def device_id() -> str:
    return f"st-t{next(_ids):04d}"


@pytest.fixture
async def cloud(mosquitto: MosquittoService) -> AsyncIterator[CloudPeer]:
    async with CloudPeer(
        mosquitto.host,
        mosquitto.port,
        username=mosquitto.cloud_username,
        password=mosquitto.cloud_password,
    ) as peer:
        yield peer


@pytest.fixture
async def rig(
    mosquitto: MosquittoService, cloud: CloudPeer, tmp_path: Path, device_id: str
) -> AsyncIterator[StationRig]:
    async with StationRig(
        device_id,
        mosquitto.host,
        mosquitto.port,
        command_keys=[cloud.public_key_hex],
        workdir=tmp_path,
        spots=4,
        firmware_public_keys=[firmware_public_hex()],
    ) as station:
        await station.accepted()
        yield station
