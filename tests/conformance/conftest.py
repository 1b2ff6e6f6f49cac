"""Conformance fixtures: the seeded PostgreSQL template of the cloud tests."""

from tests.cloud.conftest import pg_template

__all__ = ["pg_template"]
