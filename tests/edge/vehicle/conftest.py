"""Helpers for the vehicle agent tests."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import pytest

Eventually = Callable[..., Awaitable[None]]


async def _eventually(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    """Poll ``condition`` until true (TimeoutError after ``within_s``)."""
    async with asyncio.timeout(within_s):
        for _ in itertools.count():
            if condition():
                return
            await asyncio.sleep(0.02)


@pytest.fixture
def eventually() -> Eventually:
    return _eventually
