"""CloudLink against the harness's real Mosquitto: birth, gating, drain, commands, outage."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from kickstand.edge.core import DeviceClock, DiskQueue, SqliteReplayGuard
from kickstand.edge.core.link import CloudLink, CommandRouter, LinkConfig, Outcome
from kickstand.protocol.signing import CommandVerifier, key_id
from kickstand.protocol.v1.enums import BootStatus, DeviceKind, RejectReason, ResultStatus
from kickstand.protocol.v1.messages import (
    AlarmTriggered,
    Birth,
    CommandEnvelope,
    Lock,
    PowerCut,
    Reboot,
)
from kickstand.simulators.station.cloudpeer import CloudPeer, eventually
from kickstand.testing import MosquittoService

DEVICE = "st-link01"


@contextlib.asynccontextmanager
async def running_link(
    broker: MosquittoService,
    cloud: CloudPeer,
    state: Path,
    device: str = DEVICE,
    clock: DeviceClock | None = None,
    **config: float,
) -> AsyncIterator[CloudLink]:
    clock = clock or DeviceClock()
    queue = DiskQueue(state / "queue.db", clock=clock.now_ms)
    guard = SqliteReplayGuard(state / "replay.db")
    pub = cloud.signer.public_key
    verifier = CommandVerifier(device, {key_id(pub): pub}, guard, clock=clock.now_ms)
    router = CommandRouter()

    @router.on(Lock)
    async def lock(envelope: CommandEnvelope, command: Lock) -> Outcome:
        return Outcome(ResultStatus.DONE, detail=f"spot {command.spot}")

    link = CloudLink(
        LinkConfig(device, broker.host, broker.port, reconnect_min_s=0.1, reconnect_max_s=0.5,
                   boot_timeout_s=2, **config),
        queue=queue,
        birth=lambda: Birth(DeviceKind.STATION, "1.0", "sim"),
        verifier=verifier,
        router=router,
        clock=clock,
    )
    task = asyncio.create_task(link.run())
    try:
        yield link
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        queue.close()
        guard.close()


async def test_birth_gating_drain_and_commands(mosquitto: MosquittoService, tmp_path: Path) -> None:
    async with CloudPeer(
        mosquitto.host,
        mosquitto.port,
        username=mosquitto.cloud_username,
        password=mosquitto.cloud_password,
        boot_status=BootStatus.PENDING,
    ) as cloud:
        async with running_link(mosquitto, cloud, tmp_path) as link:
            link.emit(PowerCut())  # queued before acceptance
            await cloud.wait_birth(DEVICE, count=2, within=5)  # PENDING: birth repeated
            assert not link.accepted.is_set()
            assert cloud.bodies(DEVICE) == []  # gated: nothing else sent
            cloud.boot_status = BootStatus.ACCEPTED
            await asyncio.wait_for(link.accepted.wait(), 5)
            await cloud.wait_for(DEVICE, lambda r: isinstance(r.body, PowerCut))
            await eventually(lambda: link.queue.depth() == 0)

            cid = await cloud.send_command(DEVICE, Lock(spot=2))
            assert (await cloud.wait_result(DEVICE, cid)).status is ResultStatus.DONE
            cid = await cloud.send_command(DEVICE, Reboot())
            res = await cloud.wait_result(DEVICE, cid)
            assert (res.status, res.reason) == (ResultStatus.REJECTED, RejectReason.NOT_SUPPORTED)
            # wrong signer
            other = CloudPeer(mosquitto.host, mosquitto.port)
            env = cloud.envelope(DEVICE, Lock(spot=1))
            await cloud.send_raw(DEVICE, other.signer.sign(env))
            res = await cloud.wait_result(DEVICE, env.command_id)
            assert res.reason is RejectReason.UNKNOWN_KEY
            await cloud.send_raw(DEVICE, b"\xa1\x00garbage")
            res = await cloud.wait_result(DEVICE, bytes(16))
            assert res.reason is RejectReason.MALFORMED


async def test_broker_outage_nothing_lost(mosquitto_private: MosquittoService,
                                          tmp_path: Path) -> None:
    broker = mosquitto_private
    async with CloudPeer(broker.host, broker.port, username=broker.cloud_username,
                         password=broker.cloud_password) as cloud:
        async with running_link(broker, cloud, tmp_path) as link:
            await asyncio.wait_for(link.accepted.wait(), 5)
            for i in range(5):
                link.emit(AlarmTriggered(f"a{i}"))
            await cloud.wait_until(lambda: len(cloud.bodies(DEVICE)) == 5)
    broker.stop()
    # The link runs on without a broker: events pile up on disk.
    cloud2 = CloudPeer(broker.host, broker.port, username=broker.cloud_username,
                       password=broker.cloud_password, signer=cloud.signer)
    state = tmp_path
    clock_link = running_link(broker, cloud2, state)
    link = await clock_link.__aenter__()
    try:
        for i in range(5, 15):
            link.emit(AlarmTriggered(f"a{i}"))
        await asyncio.sleep(0.5)
        assert not link.connected.is_set() and link.queue.depth() == 10
        broker.start()
        async with cloud2:
            await cloud2.wait_until(lambda: len(cloud2.bodies(DEVICE)) == 10, within=10)
            reasons = [b.reason for b in cloud2.bodies(DEVICE)]
            assert reasons == [f"a{i}" for i in range(5, 15)]
            await eventually(lambda: link.queue.depth() == 0)
    finally:
        await clock_link.__aexit__(None, None, None)


async def test_a_message_queued_meanwhile_does_not_wait_for_earlier_pubacks(
    mosquitto_private: MosquittoService, tmp_path: Path
) -> None:
    broker = mosquitto_private
    async with CloudPeer(broker.host, broker.port, username=broker.cloud_username,
                         password=broker.cloud_password) as cloud:
        async with running_link(broker, cloud, tmp_path) as link:
            await asyncio.wait_for(link.accepted.wait(), 5)

            def awaiting_puback() -> int:
                count: int = link.snapshot()["link"]["awaiting_puback"]
                return count

            broker.pause()  # frozen: no PUBACK can come back
            try:
                link.emit(AlarmTriggered("first"))
                await eventually(lambda: awaiting_puback() == 1)
                link.emit(AlarmTriggered("second"))  # e.g. a command result
                await eventually(lambda: awaiting_puback() == 2)
                assert link.queue.depth() == 2  # deleted only on their PUBACKs
            finally:
                broker.resume()
            await cloud.wait_until(lambda: len(cloud.bodies(DEVICE)) == 2)
            assert [b.reason for b in cloud.bodies(DEVICE)] == ["first", "second"]
            await eventually(lambda: link.queue.depth() == 0 and awaiting_puback() == 0)


async def test_rejected_device_sends_nothing_but_births(
    mosquitto: MosquittoService, tmp_path: Path
) -> None:
    async with CloudPeer(mosquitto.host, mosquitto.port, username=mosquitto.cloud_username,
                         password=mosquitto.cloud_password,
                         boot_status=BootStatus.REJECTED) as cloud:
        async with running_link(mosquitto, cloud, tmp_path, "st-reject1",
                                rejected_retry_s=0.3) as link:
            link.emit(PowerCut())
            await cloud.wait_birth("st-reject1", count=3, within=5)  # retried, slowly
            assert cloud.bodies("st-reject1") == [] and link.queue.depth() == 1
            assert link.boot_status is BootStatus.REJECTED and not link.accepted.is_set()


async def test_clock_is_synced_from_the_cloud(mosquitto: MosquittoService, tmp_path: Path) -> None:
    async with CloudPeer(mosquitto.host, mosquitto.port, username=mosquitto.cloud_username,
                         password=mosquitto.cloud_password, heartbeat_s=1) as cloud:
        skewed = DeviceClock(offset_ms=3_600_000)  # an hour ahead: every command "expired"?
        async with running_link(mosquitto, cloud, tmp_path, "st-clock1", clock=skewed) as link:
            await asyncio.wait_for(link.accepted.wait(), 5)
            assert abs(skewed.offset_ms) < 2_000  # corrected by the BootReply
            await cloud.wait_until(lambda: cloud.view("st-clock1").heartbeats >= 1, within=5)
            await eventually(lambda: skewed.last_rtt_ms is not None and link.counters.heartbeats)
            cid = await cloud.send_command("st-clock1", Lock(spot=1))
            assert (await cloud.wait_result("st-clock1", cid)).status is ResultStatus.DONE
