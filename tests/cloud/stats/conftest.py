"""The API fixtures (SQLite or PostgreSQL through ``BOTH_DATABASES``)."""

from tests.cloud.api.conftest import api, db_url

__all__ = ["api", "db_url"]
