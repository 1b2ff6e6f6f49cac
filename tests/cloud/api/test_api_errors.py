"""One error envelope for everything the API refuses, and no 500 from bad input: the code
table served, FastAPI's own errors, ids above 2**31 - 1, NUL characters, absurd tokens,
and the database down (503 + Retry-After)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from kickstand.cloud.api import create_app
from kickstand.cloud.api.errors import CODES, ERRORS, ErrorCode
from kickstand.cloud.config import Settings
from kickstand.cloud.security import ALGORITHM, create_access_token
from tests.cloud.api.support import BOTH_DATABASES, Api

TOO_BIG = 2**31  # one above the largest PostgreSQL integer


def assert_envelope(r: httpx.Response, status: int, code: ErrorCode) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["code"] == code and isinstance(body["message"], str) and body["message"]
    return body


async def operator_headers(api: Api) -> dict[str, str]:
    return await api.login("operator@example.com")


async def test_error_code_table_is_served_and_complete(api: Api) -> None:
    assert set(CODES) == set(ErrorCode), "every code needs its row in CODES"
    r = await api.client.get("/v1/errors")
    assert r.status_code == 200
    rows = {row["code"]: row for row in r.json()["data"]}
    assert set(rows) == {int(c) for c in ErrorCode}
    assert rows[22]["name"] == "UNAVAILABLE" and rows[22]["http_status"] == [503]
    assert all(row["description"] for row in rows.values())


async def test_framework_errors_use_the_envelope(api: Api) -> None:
    body = assert_envelope(await api.client.get("/v1/no-such-route"), 404, ErrorCode.NOT_FOUND)
    assert body["reason"] == "no-route"
    assert_envelope(await api.client.delete("/v1/networks"), 405, ErrorCode.METHOD_NOT_ALLOWED)
    headers = await api.login()
    r = await api.client.get("/v1/trips", params={"page_size": "many"}, headers=headers)
    body = assert_envelope(r, 422, ErrorCode.VALIDATION)
    assert body["errors"] == [
        {
            "field": "page_size",
            "message": "Input should be a valid integer, unable to parse string as an integer",
        }
    ]
    assert_envelope(await api.client.get("/v1/trips"), 401, ErrorCode.UNAUTHENTICATED)
    r = await api.client.get("/v1/dashboard/webhooks/topics", headers=headers)
    assert_envelope(r, 403, ErrorCode.FORBIDDEN)


@BOTH_DATABASES
async def test_ids_above_the_integer_range_are_422_not_500(api: Api) -> None:
    rider = await api.login()
    operator = await operator_headers(api)
    for path, headers, field in [
        (f"/v1/trips/{TOO_BIG}", rider, "trip_id"),
        (f"/v1/clusters/{TOO_BIG}", rider, "cluster_id"),
        (f"/v1/networks/{TOO_BIG}", rider, "network_id"),
        (f"/v1/trips?last_primary_key={TOO_BIG}", rider, "last_primary_key"),
        (f"/v1/dashboard/webhooks/endpoints/{TOO_BIG}", operator, "endpoint_id"),
        (f"/v1/dashboard/fleet-alerts?networks={TOO_BIG}", operator, "networks"),
        (
            f"/v1/dashboard/fleet-alerts/history?networks=1&vehicle_id={TOO_BIG}",
            operator,
            "vehicle_id",
        ),
    ]:
        body = assert_envelope(await api.client.get(path, headers=headers), 422, ErrorCode(2))
        assert [e["field"] for e in body["errors"]] == [field], path
    r = await api.client.patch(f"/v1/badges/{TOO_BIG}", json={"name": "x"}, headers=rider)
    assert_envelope(r, 422, ErrorCode.VALIDATION)
    # the largest id is a valid id: simply not found
    r = await api.client.get(f"/v1/trips/{TOO_BIG - 1}", headers=rider)
    assert_envelope(r, 404, ErrorCode.NOT_FOUND)


@BOTH_DATABASES
async def test_nul_characters_are_422_on_both_databases(api: Api) -> None:
    rider = await api.login()
    cluster_id = next(iter(api.demo.cluster_ids.values()))
    r = await api.client.post(
        "/v1/badges", json={"cluster_id": cluster_id, "name": "a\x00b"}, headers=rider
    )
    body = assert_envelope(r, 422, ErrorCode.VALIDATION)
    assert body["errors"][0]["field"] == "name"
    r = await api.client.post(
        "/v1/badges", json={"cluster_id": cluster_id, "name": "mine"}, headers=rider
    )
    assert r.status_code == 201, r.text
    badge_id = r.json()["data"]["badge_id"]
    r = await api.client.patch(f"/v1/badges/{badge_id}", json={"name": "nul\x00"}, headers=rider)
    body = assert_envelope(r, 422, ErrorCode.VALIDATION)
    assert body["errors"][0]["field"] == "name"
    operator = await operator_headers(api)
    r = await api.client.get(
        "/v1/dashboard/fleet-alerts/history",
        params={"networks": "1", "email": "a\x00@b.c"},
        headers=operator,
    )
    assert_envelope(r, 422, ErrorCode.VALIDATION)


async def test_signed_tokens_with_absurd_claims_are_401(api: Api, tmp_path: Path) -> None:
    secret = "test-secret-" + "x" * 40  # the api fixture's
    alice = api.demo.user_ids["alice@example.com"]
    for claims in [
        {"sub": str(alice), "typ": "access", "exp": 10**20},  # past year 9999
        {"sub": str(alice), "typ": "access", "exp": -(10**20)},
        {"sub": str(2**40), "typ": "access", "exp": 2_000_000_000},
        {"sub": "0", "typ": "access", "exp": 2_000_000_000},
        {"sub": str(alice), "typ": "access", "exp": 2_000_000_000, "gen": 2**40},
    ]:
        token = jwt.encode(claims, secret, algorithm=ALGORITHM)
        r = await api.client.get("/v1/trips", headers={"Authorization": f"Bearer {token}"})
        assert_envelope(r, 401, ErrorCode.UNAUTHENTICATED)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: nothing listens there


@pytest.fixture
async def down_client(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    url = f"postgresql+asyncpg://kickstand:x@127.0.0.1:{_closed_port()}/kickstand"
    settings = Settings(DATABASE_URL=url, VAR_DIR=tmp_path, JWT_SECRET="s" * 48)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kickstand.test") as c:
        yield c, settings


async def test_database_down_answers_503_with_retry_after(
    down_client: tuple[httpx.AsyncClient, Settings],
) -> None:
    client, settings = down_client
    rider = {"Authorization": f"Bearer {create_access_token(settings, 1, [], 0)}"}
    login = {"email": "a@b.co", "password": "x" * 12}
    for method, path, headers, body_json in [
        ("GET", "/v1/networks", None, None),
        ("GET", "/v1/trips", rider, None),
        ("GET", "/v1/badges", rider, None),
        ("POST", "/v1/auth/login", None, login),
    ]:
        r = await client.request(method, path, headers=headers, json=body_json)
        body = assert_envelope(r, 503, ErrorCode.UNAVAILABLE)
        assert int(r.headers["Retry-After"]) > 0 and body["reason"] == "unavailable", path
    # what needs no database still answers
    assert (await client.get("/v1/errors")).status_code == 200


def test_every_status_and_code_pairing_in_the_code_is_in_the_table() -> None:
    """The served table (CODES) says which statuses each code travels with: every
    ``ApiError(<status>, ErrorCode.X, …)`` agrees with it, and only ``cloud/api/errors.py``
    writes one: elsewhere in the cloud no ``ApiError(``, ``ErrorCode.`` or ``HTTPException``
    (an error built by hand), with no file excepted."""
    import re

    root = Path(__file__).parents[3] / "cloud"
    the_table = root / "api" / "errors.py"
    pairing = re.compile(r"ApiError\(\s*(\d{3}),\s*ErrorCode\.([A-Z_]+)")
    by_hand = re.compile(r"ApiError\(|ErrorCode\.|HTTPException")
    found = [
        (the_table.name, int(s), ErrorCode[n]) for s, n in pairing.findall(the_table.read_text())
    ]
    assert len(found) > 10
    elsewhere = [
        f"{source.relative_to(root)}:{text[: m.start()].count(chr(10)) + 1}: {m.group(0)}"
        for source in root.rglob("*.py")
        if source != the_table
        for text in [source.read_text()]
        for m in by_hand.finditer(text)
    ]
    assert not elsewhere, elsewhere
    found += [(cls.__name__, status, code) for cls, (status, code) in ERRORS.items()]
    wrong = [f for f in found if f[1] not in CODES[f[2]][0]]
    assert not wrong, wrong


def test_database_failures_map_by_sqlstate_class() -> None:
    """The backstop of the one mapper: transient (cloud/transient.py) -> 503 + Retry-After,
    a value the database refused (class 22) -> 422, anything else -> None (a 500)."""
    import asyncpg
    from sqlalchemy.exc import DataError, ProgrammingError

    from kickstand.cloud.api.errors import database_error

    starting_up = asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
    refused = database_error(ConnectionRefusedError(111, "refused"))
    assert refused is not None and refused.status == 503
    assert refused.headers == {"Retry-After": "5"}
    err = database_error(starting_up)
    assert err is not None and (err.status, err.code) == (503, ErrorCode.UNAVAILABLE)
    nul = asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence: 0x00")
    err = database_error(DataError("INSERT …", {}, nul))
    assert err is not None and (err.status, err.code) == (422, ErrorCode.VALIDATION)
    syntax = asyncpg.exceptions.PostgresSyntaxError("syntax error")
    assert database_error(ProgrammingError("SELECT …", {}, syntax)) is None
