"""The API fixtures of tests/cloud/api (SQLite, or PostgreSQL with ``BOTH_DATABASES``)."""

from __future__ import annotations

from tests.cloud.api.conftest import api, db_url

__all__ = ["api", "db_url"]
