"""Alembic migrations of the cloud database, run programmatically.

``await upgrade(url)`` (or ``python -m kickstand.cloud migrate``) brings a database to head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

from kickstand.cloud.db import create_engine

HERE = Path(__file__).resolve().parent


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(HERE / "versions"))
    return cfg


async def upgrade(url_or_engine: str | AsyncEngine, revision: str = "head") -> None:
    engine = create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run, "upgrade", revision)
    finally:
        if isinstance(url_or_engine, str):
            await engine.dispose()


async def downgrade(url_or_engine: str | AsyncEngine, revision: str = "base") -> None:
    engine = create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run, "downgrade", revision)
    finally:
        if isinstance(url_or_engine, str):
            await engine.dispose()


def _run(connection: Any, action: str, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    getattr(command, action)(cfg, revision)
