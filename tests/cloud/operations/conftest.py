"""The API fixtures of tests/cloud/api (the app over the harness's PostgreSQL here)."""

from tests.cloud.api.conftest import api, db_url  # noqa: F401
