"""Test helpers of the API tests: a fake command gateway and a client wrapper."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.rent_gateway import DevicePresence, IssuedCommand, UnlockOutcome
from kickstand.cloud.seed import DemoRefs
from kickstand.protocol.v1 import messages as m


@dataclass
class FakeGateway:
    """Answers unlocks with ``outcome`` after ``delay`` seconds and records the calls."""

    outcome: UnlockOutcome = field(default_factory=UnlockOutcome.unlocked)
    delay: float = 0.0
    calls: list[tuple[str, ...]] = field(default_factory=list)
    #: Commands other than unlocks, as sent.
    sent: list[IssuedCommand] = field(default_factory=list)

    def unlock_command(
        self, device_id: str, spot_number: int, rent_id: int | None
    ) -> IssuedCommand:
        command = m.Unlock(spot=spot_number, window_s=60, rent_id=str(rent_id))
        return IssuedCommand.new(device_id, command, timeout_s=5.0, rent_id=rent_id)

    async def send_unlock(
        self, issued: IssuedCommand, *, presence: DevicePresence | None = None
    ) -> UnlockOutcome:
        command = issued.command
        assert isinstance(command, m.Unlock)
        rent_id = str(issued.rent_id)
        if command.spot:
            self.calls.append(("spot", issued.device_id, str(command.spot), rent_id))
        else:
            self.calls.append(("vehicle", issued.device_id, rent_id))
        await asyncio.sleep(self.delay)
        return self.outcome

    async def unlock_vehicle(
        self, vehicle_device_id: str, rent_id: str, *, presence: DevicePresence | None = None
    ) -> UnlockOutcome:
        self.calls.append(("vehicle", vehicle_device_id, rent_id))
        await asyncio.sleep(self.delay)
        return self.outcome

    def issue_command(self, device_id: str, command: m.CommandBody) -> IssuedCommand:
        return IssuedCommand.new(device_id, command, timeout_s=30.0)

    async def send_command(
        self, issued: IssuedCommand, *, presence: DevicePresence | None = None
    ) -> UnlockOutcome:
        self.calls.append(("command", issued.device_id, type(issued.command).__name__))
        self.sent.append(issued)
        await asyncio.sleep(self.delay)
        return self.outcome


@dataclass
class Api:
    client: httpx.AsyncClient
    gateway: FakeGateway
    sessionmaker: async_sessionmaker[AsyncSession]
    demo: DemoRefs
    backend: str

    async def login(self, email: str = "alice@example.com") -> dict[str, str]:
        r = await self.client.post(
            "/v1/auth/login", json={"email": email, "password": self.demo.passwords[email]}
        )
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['data']['token']}"}


#: Run a test on SQLite and on the harness's PostgreSQL.
BOTH_DATABASES = pytest.mark.parametrize(
    "db_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
