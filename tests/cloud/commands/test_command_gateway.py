"""MqttCommandGateway against real Mosquitto and PostgreSQL, devices scripted at the wire."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.commands import MqttCommandGateway, trusted_keys
from kickstand.cloud.ingest.tables import DeviceCommand
from kickstand.cloud.models import Device
from kickstand.cloud.rent_gateway import CommandGateway, UnlockResult
from kickstand.protocol.errors import CommandRejected
from kickstand.protocol.signing import (
    CommandSigner,
    CommandVerifier,
    MemoryReplayGuard,
    generate_private_key,
)
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m
from kickstand.testing import MosquittoService
from tests.cloud.ingest.conftest import WorkerFactory
from tests.cloud.ingest.fakes import FakeDevice, eventually, now_ms

Maker = async_sessionmaker[AsyncSession]


@pytest.fixture(scope="module")
def signer() -> CommandSigner:
    return CommandSigner(generate_private_key())


@pytest.fixture
async def gateways(
    mosquitto: MosquittoService, signer: CommandSigner, pg_sessionmaker: Maker
) -> AsyncIterator[Callable[..., MqttCommandGateway]]:
    made: list[MqttCommandGateway] = []

    def make(**kwargs: object) -> MqttCommandGateway:
        gw = MqttCommandGateway(mosquitto.url, signer, pg_sessionmaker, **kwargs)  # type: ignore[arg-type]
        made.append(gw)
        return gw

    yield make
    for gw in made:
        await gw.close()


def answering(
    device: FakeDevice,
    signer: CommandSigner,
    status: pe.ResultStatus,
    reason: pe.RejectReason | None = None,
    delay_s: float = 0.0,
) -> None:
    """Verify every command like an agent does, then answer with ``status``."""
    verifier = CommandVerifier(device.device_id, trusted_keys(signer), MemoryReplayGuard())
    device.commands = []  # type: ignore[attr-defined]

    async def on_command(data: bytes) -> None:
        try:
            envelope = verifier.verify(data)
        except CommandRejected as exc:
            result = m.CommandResult(
                exc.command_id or bytes(16),
                pe.ResultStatus.REJECTED,
                pe.RejectReason(exc.reject_reason),
            )
        else:
            device.commands.append(envelope)  # type: ignore[attr-defined]
            if status is pe.ResultStatus.DONE:
                await device.send(m.CommandResult(envelope.command_id, pe.ResultStatus.ACCEPTED))
            if delay_s:
                await asyncio.sleep(delay_s)
            result = m.CommandResult(envelope.command_id, status, reason)
        asyncio.get_running_loop().create_task(device.send(result))

    device.on_command = on_command


async def online(device: FakeDevice) -> None:
    await device.send(m.Birth(kind=pe.DeviceKind.STATION, firmware="1.0", hardware="v1"))
    reply = await device.expect(Channel.BOOT)
    assert reply.status is pe.BootStatus.ACCEPTED


async def test_results_correlate_across_two_api_gateways(
    mosquitto: MosquittoService,
    start_worker: WorkerFactory,
    gateways: Callable[..., MqttCommandGateway],
    signer: CommandSigner,
    pg_sessionmaker: Maker,
) -> None:
    await start_worker()
    await start_worker()
    api_a = await gateways().__aenter__()
    api_b = await gateways().__aenter__()
    assert isinstance(api_a, CommandGateway)
    host, port = mosquitto.host, mosquitto.port
    async with (
        FakeDevice(host, port, "st-0001", 1) as s1,
        FakeDevice(host, port, "st-0002", 1) as s2,
    ):
        await online(s1)
        await online(s2)
        answering(s1, signer, pe.ResultStatus.DONE)
        answering(s2, signer, pe.ResultStatus.REJECTED, pe.RejectReason.INVALID_STATE)
        outcomes = await asyncio.gather(
            *[api_a.unlock_spot("st-0001", 1, str(100 + i)) for i in range(5)],
            *[api_b.unlock_spot("st-0002", 2, str(200 + i)) for i in range(5)],
        )
        assert [o.result for o in outcomes[:5]] == [UnlockResult.UNLOCKED] * 5
        assert all(o.unlocked_at is not None for o in outcomes[:5])
        assert [o.result for o in outcomes[5:]] == [UnlockResult.REFUSED] * 5
        assert all("invalid-state" in (o.reason or "") for o in outcomes[5:])
        assert len(s1.commands) == 5 and len(s2.commands) == 5  # type: ignore[attr-defined]
        assert {e.command.rent_id for e in s1.commands} == {str(100 + i) for i in range(5)}  # type: ignore[attr-defined]
    # Every process saw the other's results and ignored them.
    assert api_a.foreign_results >= 5 and api_b.foreign_results >= 5
    assert api_a.pending == 0 and api_b.pending == 0

    async def recorded() -> bool:
        async with pg_sessionmaker() as s:
            rows = (await s.scalars(select(DeviceCommand))).all()
        return len(rows) == 10 and sorted(r.status for r in rows) == ["done"] * 5 + ["rejected"] * 5

    await eventually(recorded)
    async with pg_sessionmaker() as s:
        rents = sorted((await s.scalars(select(DeviceCommand.rent_id))).all())
    assert rents == [*range(100, 105), *range(200, 205)]


async def test_offline_unknown_or_silent_device_fails_fast_and_sends_nothing(
    mosquitto: MosquittoService,
    gateways: Callable[..., MqttCommandGateway],
    signer: CommandSigner,
    pg_sessionmaker: Maker,
) -> None:
    api = await gateways(timeout_s=5.0).__aenter__()
    async with FakeDevice(mosquitto.host, mosquitto.port, "st-0003", 1) as dev:
        answering(dev, signer, pe.ResultStatus.DONE)
        started = time.monotonic()
        outcome = await api.unlock_spot("st-0003", 1, "1")  # never born: offline
        assert outcome.result is UnlockResult.DEVICE_OFFLINE
        assert "offline" in (outcome.reason or "")
        unknown = await api.unlock_spot("st-7777", 1, "1")
        assert unknown.result is UnlockResult.DEVICE_OFFLINE and "unknown" in (unknown.reason or "")
        # Marked online but silent for too long.
        async with pg_sessionmaker() as s, s.begin():
            await s.execute(
                update(Device)
                .where(Device.device_id == "st-0003")
                .values(online=True, last_seen_at=datetime.now(UTC) - timedelta(minutes=10))
            )
        silent = await api.unlock_spot("st-0003", 1, "1")
        assert silent.result is UnlockResult.DEVICE_OFFLINE and "silent" in (silent.reason or "")
        assert time.monotonic() - started < 1.0
        await asyncio.sleep(0.2)
        assert dev.commands == []  # type: ignore[attr-defined]
    assert api.pending == 0


async def test_timeout_and_cancel_clean_up_pending(
    mosquitto: MosquittoService,
    start_worker: WorkerFactory,
    gateways: Callable[..., MqttCommandGateway],
    signer: CommandSigner,
) -> None:
    await start_worker()
    api = await gateways(timeout_s=0.5).__aenter__()
    async with FakeDevice(mosquitto.host, mosquitto.port, "st-0004", 1) as dev:
        await online(dev)  # online, but it never answers commands
        started = time.monotonic()
        sent_ms = now_ms()
        outcome = await api.unlock_spot("st-0004", 1, "9")
        assert outcome.result is UnlockResult.TIMEOUT
        assert 0.45 < time.monotonic() - started < 2.0
        assert api.pending == 0
        envelope_bytes = await dev.expect(Channel.COMMAND)
        verifier = CommandVerifier(
            "st-0004", trusted_keys(signer), MemoryReplayGuard(), clock=lambda: sent_ms + 100
        )
        envelope = verifier.verify(envelope_bytes)
        # Valid on the device far longer than the wait (SPEC §7.1): a device whose clock
        # is a few seconds off still executes it; the caller resolves the late answer.
        assert envelope.expires_at_ms - envelope.issued_at_ms == 30_000

        task = asyncio.create_task(api.unlock_spot("st-0004", 1, "10"))
        await eventually(lambda: _true(api.pending == 1), wait_s=2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert api.pending == 0


async def _true(value: bool) -> bool:
    return value
