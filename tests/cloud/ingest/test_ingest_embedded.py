"""The embedded default: amqtt in-process broker, SQLite, one worker on the plain filter."""

from __future__ import annotations

from sqlalchemy import select

from kickstand.cloud.broker import EmbeddedBroker, MqttUrl
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.ingest import PLAIN_SUBSCRIPTION, IngestWorker
from kickstand.cloud.models import Device
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m
from tests.cloud.ingest.fakes import FakeDevice, eventually


async def test_embedded_broker_with_sqlite_and_one_plain_worker(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    maker = create_sessionmaker(engine)
    try:
        async with EmbeddedBroker() as url:
            broker = MqttUrl.parse(url)
            async with IngestWorker(url, maker, shared=False, client_id="ingest-embedded") as w:
                assert w.topic == PLAIN_SUBSCRIPTION
                async with FakeDevice(broker.host, broker.port, "st-0001", boot_id=4) as dev:
                    birth = m.Birth(kind=pe.DeviceKind.STATION, firmware="2.0", hardware="v1")
                    await dev.send(birth)
                    assert (await dev.expect(Channel.BOOT)).status is pe.BootStatus.ACCEPTED
                    for seq in (1, 2, 1):
                        await dev.send(m.PowerCut(), seq=seq)

                    async def done() -> bool:
                        return w.stats.applied + w.stats.duplicates >= 4

                    await eventually(done)
                assert w.stats.duplicates == 1
        async with maker() as s:
            device = (await s.scalars(select(Device).where(Device.device_id == "st-0001"))).one()
        assert device.online and device.boot_id == "4" and device.firmware_version == "2.0"
    finally:
        await engine.dispose()
