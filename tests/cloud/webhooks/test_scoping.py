"""Webhook network scoping: an operator's endpoint gets every event of its networks, none
of another's — real rides through the trip engine, then the real worker to real receivers.

Before the event catalogue, scoping read an undocumented ``network_id`` key that
``dock.updated``, ``rent.*`` and ``station.updated`` did not carry: a network-scoped
endpoint received none of them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from kickstand.cloud import outbox, rents, trips
from kickstand.cloud.events import CATALOGUE, definition, networks_of
from kickstand.cloud.ingest import repository as repo
from kickstand.cloud.ingest.handlers.session import emit_online
from kickstand.cloud.models import (
    Cluster,
    Network,
    OutboxEvent,
    PricingRule,
    Spot,
    Station,
    Vehicle,
)
from kickstand.cloud.rent_gateway import UnlockOutcome
from kickstand.cloud.webhooks import service
from kickstand.cloud.webhooks.delivery import WebhookWorker, event_id_for
from kickstand.cloud.webhooks.receiver import Receiver

from ..events.examples import example
from .conftest import FAST, PgEnv, run_until

#: What a ride and a station coming online write (the topics that never reached a
#: network-scoped endpoint are among them).
RIDE_TOPICS = {
    "rent.created",
    "rent.updated",
    "dock.updated",
    "trip.created",
    "trip.terminated",
    "vehicule.updated",
    "station.updated",
}


async def _second_network(env: PgEnv) -> int:
    """Perrache (st-0004, its vehicles and Lyon's prices) moves to a new network."""
    async with env.sessionmaker() as session, session.begin():
        lyon = await session.get_one(Network, env.demo.network_id)
        other = Network(name="Villeurbanne", currency=lyon.currency, timezone=lyon.timezone)
        session.add(other)
        await session.flush()
        cluster = await session.get_one(Cluster, env.demo.cluster_ids["Perrache"])
        cluster.network_id = other.id
        docked = await session.scalars(
            select(Vehicle)
            .join(Spot, Spot.id == Vehicle.spot_id)
            .join(Station, Station.id == Spot.station_id)
            .where(Station.cluster_id == cluster.id)
        )
        for vehicle in docked:
            vehicle.network_id = other.id
        for rule in await session.scalars(
            select(PricingRule).where(PricingRule.network_id == lyon.id)
        ):
            columns = {c.key: getattr(rule, c.key) for c in PricingRule.__table__.columns}
            session.add(PricingRule(**{**columns, "id": None, "network_id": other.id}))
        return other.id


async def _ride(env: PgEnv, station_device_id: str, rider: str, start: datetime) -> None:
    """Online station, a rent by the app, the vehicle of spot 1 taken, docked in spot 6."""
    maker = env.sessionmaker
    async with maker() as session, session.begin():
        infos = await repo.load_devices(session, {station_device_id})
        await emit_online(session, infos[station_device_id], True, start)
        spot = await session.scalar(
            select(Spot)
            .join(Station, Station.id == Spot.station_id)
            .where(Station.device_id == station_device_id, Spot.displayed_number == 1)
        )
        assert spot is not None
        serial = await session.scalar(
            select(Vehicle.serial_number).where(Vehicle.spot_id == spot.id)
        )
        opened = await rents.open_rent(
            session, env.demo.user_ids[rider], spot_id=spot.id, now=start
        )
        rent_id = opened.rent.id
    async with maker() as session, session.begin():
        await rents.apply_unlock_outcome(session, rent_id, UnlockOutcome.unlocked(start), now=start)
    taken = start + timedelta(seconds=5)
    async with maker() as session, session.begin():
        removed = await trips.vehicle_removed(
            session, station_device_id, 1, str(serial), taken, rent_id=rent_id
        )
        assert removed.action == "created", removed
    async with maker() as session, session.begin():
        docked = await trips.vehicle_docked(
            session, station_device_id, 6, str(serial), taken + timedelta(minutes=12)
        )
        assert docked.action == "ended", docked


async def _every_topic(env: PgEnv, network_ids: list[int]) -> None:
    """One event of every catalogue topic about each network (alerts, zones, passes…)."""
    async with env.sessionmaker() as session, session.begin():
        for network_id in network_ids:
            for event in CATALOGUE.values():
                outbox.emit(session, event, f"example-{network_id}", example(event, network_id))


async def test_an_endpoint_gets_every_event_of_its_networks_and_none_of_others(
    pg: PgEnv,
) -> None:
    lyon = pg.demo.network_id
    other = await _second_network(pg)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    await _ride(pg, "st-0001", "alice@example.com", start)
    await _ride(pg, "st-0004", "bob@example.com", start)
    await _every_topic(pg, [lyon, other])

    async with pg.sessionmaker() as session:
        rows = list(await session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)))
    # Every row the services wrote validates against its definition (no drift in use).
    for row in rows:
        event = definition(row.topic)
        assert event is not None, row.topic
        event.payload.model_validate(row.payload)
    expected: dict[int, set[str]] = {lyon: set(), other: set()}
    ride_topics: dict[int, set[str]] = {lyon: set(), other: set()}
    for row in rows:
        (network,) = networks_of(row.topic, row.payload)  # every one is about one network
        expected[network].add(event_id_for(row.id))
        if not row.resource_id.startswith("example-"):
            ride_topics[network].add(row.topic)
    assert ride_topics[lyon] == ride_topics[other] == RIDE_TOPICS

    with Receiver() as for_lyon, Receiver() as for_other, Receiver() as for_all:
        async with pg.sessionmaker() as session, session.begin():
            for receiver, networks in ((for_lyon, [lyon]), (for_other, [other]), (for_all, None)):
                endpoint = await service.create_endpoint(
                    session, url=receiver.url, topics=["*"], network_ids=networks
                )
                receiver.secret = endpoint.secret
        async with WebhookWorker(pg.sessionmaker, FAST) as worker:
            await run_until(
                [worker],
                lambda: len(for_lyon.accepted()) >= len(expected[lyon])
                and len(for_other.accepted()) >= len(expected[other])
                and len(for_all.accepted()) >= len(rows),
            )
        got = {name: r.accepted() for name, r in (("lyon", for_lyon), ("other", for_other))}
        everything = for_all.accepted()

    def ids(received: list[Any]) -> set[str]:
        return {r.envelope["id"] for r in received}

    assert ids(got["lyon"]) == expected[lyon]
    assert ids(got["other"]) == expected[other]
    assert ids(everything) == expected[lyon] | expected[other]
    assert {r.envelope["event"] for r in got["lyon"]} == set(CATALOGUE)
    for name, network in (("lyon", lyon), ("other", other)):
        for r in got[name]:
            data = r.envelope["data"]
            assert data.get("network_id", network) == network
            assert data.get("network_ids", [network]) == [network]
