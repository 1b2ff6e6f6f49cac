"""Fixtures of the device-side firmware library tests: a real HTTP image server on loopback,
the simulated installation's firmware key, images of the reference agents' format."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kickstand.simulators.firmware import ImageServer


@pytest.fixture
def server() -> Iterator[ImageServer]:
    with ImageServer().running() as running:
        yield running
