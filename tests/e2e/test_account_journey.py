"""A new rider, end to end: sign-up → the confirmation mail, read from a real SMTP server
(the in-process sink) → confirm → log in → rent a bike at a station.

Real API over HTTP (uvicorn, its lifespan and mail relay), PostgreSQL, Mosquitto, the
real station agent over simulated spot boards (tests/e2e/city.py).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import update

from kickstand.cloud.models import User
from kickstand.testing import MosquittoService, PostgresServer
from kickstand.testing.mailsink import MailSink
from tests.e2e.city import eventually, seeded_city

pytestmark = [pytest.mark.slow, pytest.mark.mqtt, pytest.mark.postgres]

EMAIL, PASSWORD = "new.rider@example.com", "my-password-1"


async def test_sign_up_confirm_log_in_and_rent(
    mosquitto: MosquittoService, pg_server: PostgresServer, pg_template: str, tmp_path: Path
) -> None:
    with MailSink(directory=tmp_path / "mail") as sink:
        async with seeded_city(
            mosquitto,
            pg_server,
            pg_template,
            tmp_path / "city",
            stations={"st-0001": {1: "LY0001"}},
            unlock_window_s=3,
            settings={"SMTP_HOST": sink.host, "SMTP_PORT": sink.port},
        ) as city:
            api = city.client()
            r = await api.post(
                "/v1/auth/signup",
                json={"email": EMAIL, "password": PASSWORD, "accept_terms": True},
            )
            assert r.status_code == 201, r.text
            # Logging in before confirming: seed 001's code 7.
            early = await api.post("/v1/auth/login", json={"email": EMAIL, "password": PASSWORD})
            assert early.status_code == 403 and early.json()["code"] == 7

            mail = await sink.wait_for(EMAIL, kind="email-confirm")
            assert list((tmp_path / "mail").glob("*.eml")), "the sink keeps the mail as a file"
            token = sink.token_in(mail)
            confirmed = await api.post("/v1/auth/email/confirm", json={"token": token})
            assert confirmed.status_code == 200, confirmed.text

            headers = await city.login(EMAIL, PASSWORD)
            # No top-up operation exists yet: the wallet is credited as an operator would.
            assert city.sessionmaker is not None
            async with city.sessionmaker() as s, s.begin():
                await s.execute(
                    update(User).where(User.email == EMAIL).values(wallet_balance=Decimal("5"))
                )
            spot = await city.spot_id("st-0001", 1)
            rent = await api.post(
                "/v1/rents",
                json={"spot_id": spot},
                headers={**headers, "Idempotency-Key": f"journey-{uuid.uuid4()}"},
            )
            assert rent.status_code == 201, rent.text
            assert rent.json()["data"]["serial_number"] == "LY0001"
            board = city.rigs["st-0001"].sim.boards[1]
            assert board.lock.name == "OPEN", "the command reached the spot board"
            assert city.rigs["st-0001"].sim.take(1) == "LY0001"

            async def trip_running() -> bool:
                r = await api.get("/v1/trips", headers=headers)
                return any(t["state"] == "running" for t in r.json()["data"])

            await eventually(trip_running)
