"""Every operation answered as documented to an operator (see
:mod:`tests.cloud.api.schema_run`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kickstand.testing import PostgresServer
from tests.cloud.api.schema_run import Served, by_status, failures_of, served_app, undocumented

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]


@pytest.fixture(scope="module")
def served(
    pg_server: PostgresServer, pg_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    yield from served_app(pg_server, pg_template, tmp_path_factory)


def test_every_operation_answers_as_documented_to_an_operator(served: Served) -> None:
    served.seen.clear()
    failures = failures_of(served, "operator")
    assert not failures, "\n".join(failures)
    assert not undocumented(served), "\n".join(undocumented(served))
    statuses = by_status(served)
    assert sum(statuses.values()) > 500 and statuses[200] > 100 and statuses[422] > 50
