"""Login throttling: counters in the database, per account and per client address, shared
by every API process; 429 + Retry-After (code 30) while locked."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from kickstand.cloud.api import create_app
from kickstand.cloud.db import create_engine
from kickstand.testing.mailsink import MailSink
from tests.cloud.accounts.conftest import Accounts, account_settings
from tests.cloud.api.support import BOTH_DATABASES

ALICE = "alice@example.com"


def _login(client: httpx.AsyncClient, email: str, password: str) -> Any:
    return client.post("/v1/auth/login", json={"email": email, "password": password})


@BOTH_DATABASES
async def test_sixty_wrong_passwords_then_the_right_one_is_refused(accounts: Accounts) -> None:
    """The report of issue 15: 60 wrong passwords in 0.5 s, then the right one succeeded."""
    started = time.monotonic()
    wrong = await asyncio.gather(
        *(_login(accounts.client, ALICE, f"wrong-password-{n}") for n in range(60))
    )
    elapsed = time.monotonic() - started
    statuses = sorted({r.status_code for r in wrong})
    assert set(statuses) <= {401, 429}, statuses
    right = await _login(accounts.client, ALICE, accounts.demo.passwords[ALICE])
    assert right.status_code == 429, right.text
    body = right.json()
    assert body["code"] == 30 and body["reason"] == "too-many-attempts"
    retry_after = int(right.headers["Retry-After"])
    assert 0 < retry_after <= accounts.settings.LOGIN_LOCK_S
    print(f"60 wrong logins in {elapsed:.2f} s; right one: 429, Retry-After {retry_after} s")


@pytest.mark.parametrize(
    "overrides", [{"LOGIN_MAX_FAILURES_ACCOUNT": 3, "LOGIN_LOCK_S": 1}], indirect=True
)
async def test_the_lock_ends_and_a_success_clears_the_account_count(accounts: Accounts) -> None:
    password = accounts.demo.passwords[ALICE]
    for _ in range(2):
        assert (await _login(accounts.client, ALICE, "wrong-password")).status_code == 401
    assert (await _login(accounts.client, ALICE, password)).status_code == 200
    # The success cleared the count: two more failures do not lock.
    for _ in range(2):
        assert (await _login(accounts.client, ALICE, "wrong-password")).status_code == 401
    assert (await _login(accounts.client, ALICE, password)).status_code == 200
    for _ in range(3):
        await _login(accounts.client, ALICE, "wrong-password")
    locked = await _login(accounts.client, ALICE, password)
    assert locked.status_code == 429 and locked.headers["Retry-After"] == "1"
    await asyncio.sleep(1.1)
    assert (await _login(accounts.client, ALICE, password)).status_code == 200


@pytest.mark.parametrize(
    "overrides",
    [{"LOGIN_MAX_FAILURES_ADDRESS": 5, "LOGIN_MAX_FAILURES_ACCOUNT": 100}],
    indirect=True,
)
async def test_one_address_guessing_many_accounts_is_stopped(accounts: Accounts) -> None:
    async with (
        accounts.client_from("203.0.113.7") as guesser,
        accounts.client_from("198.51.100.9") as other,
    ):
        for n in range(5):
            r = await _login(guesser, f"user{n}@example.com", "wrong-password")
            assert r.status_code == 401
        refused = await _login(guesser, ALICE, accounts.demo.passwords[ALICE])
        assert refused.status_code == 429 and refused.json()["code"] == 30
        assert "network address" in refused.json()["message"]
        # Another address, the same account: not concerned.
        assert (await _login(other, ALICE, accounts.demo.passwords[ALICE])).status_code == 200


@BOTH_DATABASES
async def test_two_api_processes_share_the_counters(
    db_url: str, tmp_path: Path, sink: MailSink
) -> None:
    """Two apps, two engines (as two processes would have): failures on either count."""
    settings = account_settings(db_url, tmp_path, sink, LOGIN_MAX_FAILURES_ACCOUNT=6)
    engines = [create_engine(db_url), create_engine(db_url)]
    clients = [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(settings, engine=e)),
            base_url="http://kickstand.test",
        )
        for e in engines
    ]
    try:
        for n in range(6):
            r = await _login(clients[n % 2], ALICE, "wrong-password")
            assert r.status_code == 401
        for client in clients:
            assert (await _login(client, ALICE, "alice-demo-1")).status_code == 429
    finally:
        for client in clients:
            await client.aclose()
        for engine in engines:
            await engine.dispose()
