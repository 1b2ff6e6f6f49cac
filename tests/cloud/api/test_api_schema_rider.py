"""Every operation answered as documented to a rider, and with the database down (see
:mod:`tests.cloud.api.schema_run`)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from schemathesis import GenerationMode

from kickstand.cloud.api import create_app
from kickstand.cloud.config import Settings
from kickstand.cloud.security import create_access_token
from kickstand.testing import PostgresServer
from tests.cloud.api.schema_run import (
    Served,
    by_status,
    failures_of,
    runner,
    serve,
    served_app,
    undocumented,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]


@pytest.fixture(scope="module")
def served(
    pg_server: PostgresServer, pg_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    yield from served_app(pg_server, pg_template, tmp_path_factory)


def test_every_operation_answers_as_documented_to_a_rider(served: Served) -> None:
    served.seen.clear()
    failures = failures_of(served, "rider")
    assert not failures, "\n".join(failures)
    assert not undocumented(served), "\n".join(undocumented(served))
    statuses = by_status(served)
    assert sum(statuses.values()) > 500 and statuses[200] > 50
    assert statuses[422] > 50 and statuses[403] > 100  # invalid input; operator routes


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: nothing listens there


def test_with_the_database_down_every_operation_answers_503_not_500(
    tmp_path: Path,
) -> None:
    """Every operation, valid inputs, the database unreachable: 503 with Retry-After (or an
    answer that needs no database), as documented, and never a 500."""
    url = f"postgresql+asyncpg://kickstand:x@127.0.0.1:{_closed_port()}/kickstand"
    app_settings = Settings(DATABASE_URL=url, VAR_DIR=tmp_path, JWT_SECRET="down-" + "k" * 48)
    token = create_access_token(app_settings, 1, [], 0)
    app = create_app(app_settings)
    with serve(app) as base_url:
        down = Served(base_url, {"rider": token}, app.openapi())
        schema = schemathesis.openapi.from_dict(down.spec)
        failures = []
        for result in schema.get_all_operations():
            operation = result.ok()  # type: ignore[union-attr]  # our own spec: all valid
            try:
                runner(down, operation, GenerationMode.POSITIVE, "rider", examples=2)()
            except Exception as exc:
                failures.append(f"{operation.method.upper()} {operation.path}: {exc}"[:400])
    assert not failures, "\n".join(failures)
    statuses = by_status(down)
    assert statuses[503] > 60 and set(statuses) <= {200, 400, 401, 404, 422, 503}, statuses
