"""The API fixtures (app over SQLite or PostgreSQL, fake command gateway) of tests/cloud/api."""

from tests.cloud.api.conftest import api, db_url

__all__ = ["api", "db_url"]
