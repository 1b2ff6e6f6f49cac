"""The Alembic migrations build exactly the models' schema (core tables), on both databases."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from kickstand.cloud.db import create_engine
from kickstand.cloud.models import Base


async def drift(url: str) -> list[Any]:
    mine = set(Base.metadata.tables)

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        # Other packages' tables live in the same database; compare only the core's.
        table = obj if type_ == "table" else getattr(obj, "table", None)
        return table is None or table.name in mine

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(
                        c, opts={"compare_type": True, "include_object": include}
                    ),
                    Base.metadata,
                )
            )
    finally:
        await engine.dispose()


async def test_no_drift_on_sqlite(sqlite_url: str) -> None:
    assert await drift(sqlite_url) == []


@pytest.mark.postgres
async def test_no_drift_on_postgres(pg_seeded_url: str) -> None:
    assert await drift(pg_seeded_url) == []
