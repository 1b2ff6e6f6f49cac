"""Migration 0012 builds exactly the networks package's tables, on both databases."""

from __future__ import annotations

import pytest

import kickstand.cloud.networks.models  # noqa: F401  (its tables on Base.metadata)
from tests.cloud.test_cloud_migrations import drift


async def test_no_drift_on_sqlite(sqlite_url: str) -> None:
    assert await drift(sqlite_url) == []


@pytest.mark.postgres
async def test_no_drift_on_postgres(pg_seeded_url: str) -> None:
    assert await drift(pg_seeded_url) == []
