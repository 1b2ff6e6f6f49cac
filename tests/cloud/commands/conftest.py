"""Command-path fixtures: reuse the ingest fixtures (seeded PostgreSQL, workers)."""

from tests.cloud.ingest.conftest import pg_sessionmaker, start_worker

__all__ = ["pg_sessionmaker", "start_worker"]
