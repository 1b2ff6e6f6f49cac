"""Chaos fixtures: one PostgreSQL cluster migrated and seeded per run, kept stopped — each
test starts a copy of its own (`PostgresCluster.clone`), to stop, kill or hold it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from kickstand.testing import PostgresCluster
from tests.chaos.plant import DATABASE


@pytest.fixture(scope="session")
def chaos_golden(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster]:
    """The demo network (`python -m kickstand.cloud seed`: migrations, then the seed) in a
    stopped cluster of the harness's own."""
    with PostgresCluster() as cluster:
        with cluster.connect() as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        url = f"postgresql+asyncpg://postgres@{cluster.host}:{cluster.port}/{DATABASE}"
        env = {**os.environ, "DATABASE_URL": url,
               "VAR_DIR": str(tmp_path_factory.mktemp("chaos-seed"))}
        seeded = subprocess.run([sys.executable, "-m", "kickstand.cloud", "seed"], env=env,
                                capture_output=True, text=True, timeout=120, check=False)
        assert seeded.returncode == 0, seeded.stderr[-3000:]
        cluster.stop()
        yield cluster
