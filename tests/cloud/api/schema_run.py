"""Schema-driven testing of the API against its own OpenAPI document (schemathesis).

The real app is served by uvicorn on loopback over the harness's PostgreSQL (the
database that refuses what SQLite lets through: ids beyond int32, NUL characters).
For every operation, with a rider's token and with an operator's: no server error, the
status code is documented, the body matches the documented schema, the content type too.
Bounded: a few examples per operation, derandomized (the same cases every run); the
rider's and the operator's runs are separate test files so the two workers share them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from kickstand.cloud.api import create_app
from kickstand.cloud.config import Settings
from kickstand.testing import PostgresServer
from tests.cloud.conftest import demo_refs

#: Not schemathesis' not_a_server_error: a documented 503 (a device offline, the database
#: restarting) or 504 is an honest answer; a 500 or an INTERNAL code is not (see run()).
CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
#: Cases per operation and generation mode (valid, invalid): ~255 operations, two
#: tokens. A rider is refused every dashboard operation by the one access check (proved
#: operation by operation in tests/cloud/access): a couple of cases say it is answered.
EXAMPLES = 5
RIDER_EXAMPLES = 10
REFUSED_EXAMPLES = 2


@dataclass
class Served:
    base_url: str
    tokens: dict[str, str]
    spec: dict[str, object]
    #: (method, path, status) -> how many answers (a run that called nothing fails).
    seen: Counter[tuple[str, str, int]] = field(default_factory=Counter)


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # a thread of the test process
        pass


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """The app on a loopback port (uvicorn in a thread, lifespan included): its base URL."""
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def served_app(
    pg_server: PostgresServer, pg_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """The demo city's app on loopback over a fresh PostgreSQL database, with tokens."""
    database = pg_server.new_database(template=pg_template)
    var = tmp_path_factory.mktemp("schema-var")
    app_settings = Settings(
        DATABASE_URL=database.url, VAR_DIR=Path(var), JWT_SECRET="schema-" + "k" * 48
    )
    demo = demo_refs(database.url)
    tokens = {}
    try:
        with (
            serve(create_app(app_settings)) as base_url,
            httpx.Client(base_url=base_url, timeout=120) as c,
        ):
            for who, email in (
                ("rider", "alice@example.com"),
                ("operator", "operator@example.com"),
            ):
                r = c.post(
                    "/v1/auth/login", json={"email": email, "password": demo.passwords[email]}
                )
                assert r.status_code == 200, r.text
                tokens[who] = r.json()["data"]["token"]
            yield Served(base_url, tokens, c.get("/openapi.json").json())
    finally:
        pg_server.drop_database(database.name)


#: Hypothesis settings of every operation: bounded and the same cases every run.
BOUNDED = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def runner(
    served: Served,
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    who: str,
    examples: int = EXAMPLES,
) -> Callable[[], None]:
    """A bounded hypothesis test of one operation, recording every status answered."""
    headers = {"Authorization": f"Bearer {served.tokens[who]}"}
    key = (operation.method.upper(), operation.path)

    @settings(BOUNDED, max_examples=examples)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        response = case.call_and_validate(
            base_url=served.base_url, headers=headers, checks=CHECKS, timeout=30
        )
        served.seen[(*key, response.status_code)] += 1
        if response.status_code >= 500:
            body = response.json()
            assert response.status_code != 500 and body["code"] != 1, (key, body)
        if response.status_code == 503:
            retry_after = {k.lower(): v for k, v in response.headers.items()}["retry-after"]
            assert int(retry_after[0] if isinstance(retry_after, list) else retry_after) > 0

    return run


def failures_of(served: Served, who: str) -> list[str]:
    """Run every operation (valid and invalid inputs); one line per failing operation."""
    schema = schemathesis.openapi.from_dict(served.spec)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # our own spec: all valid
        if "/logout" in operation.path:
            continue  # it ends the token's session: the cases after it would all be 401
        examples = EXAMPLES
        if who == "rider":
            dashboard = operation.path.startswith("/v1/dashboard")
            examples = REFUSED_EXAMPLES if dashboard else RIDER_EXAMPLES
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                runner(served, operation, mode, who, examples)()
            except Unsatisfiable:
                continue  # no parameters and no body: there is no invalid input to make
            except Exception as exc:  # a check failed: keep going, report them all
                first = str(exc).strip().splitlines()[:12]
                failures.append(
                    f"{operation.method.upper()} {operation.path} [{mode.value}]: "
                    + " | ".join(first)
                )
    return failures


def undocumented(served: Served) -> list[str]:
    """Statuses answered that the operation does not list by number (``default`` aside)."""
    paths: dict[str, dict[str, dict[str, Any]]] = served.spec["paths"]  # type: ignore[assignment]
    return [
        f"{method} {path} answered {status} ({n}x), documents {sorted(documented)}"
        for (method, path, status), n in sorted(served.seen.items())
        if str(status) not in (documented := set(paths[path][method.lower()]["responses"]))
    ]


def by_status(served: Served) -> Counter[int]:
    statuses: Counter[int] = Counter()
    for (_method, _path, status), n in served.seen.items():
        statuses[status] += n
    return statuses
