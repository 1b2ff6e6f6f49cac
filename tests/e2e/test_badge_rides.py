"""Badge rides end to end: a badge on the simulated NFC reader (nfcpy's udp driver) → the
REAL station agent → Mosquitto → ingest (PostgreSQL) → the signed Unlock and the BadgeReply
back → the board opens, the reader shows the answer; removal and dock → the trip, billed to
the badge's rider. Offline, the agent decides from its local list, kept in step by the
cloud (FULL at birth or after a mismatch, DIFF on link / unlink / block).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import pytest_asyncio
from sqlalchemy import select, update

from kickstand.cloud import badges
from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import AlertType
from kickstand.cloud.authlist import service as authlist
from kickstand.cloud.authlist.tables import AuthListSend
from kickstand.cloud.commands.issuer import CommandIssuer
from kickstand.cloud.commands.keys import load_signer
from kickstand.cloud.models import Badge, Network, Station, Trip, User
from kickstand.cloud.rent_gateway import IssuedCommand
from kickstand.cloud.seed import ALICE_BADGE_UID
from kickstand.edge.transports import BadgeIndication
from kickstand.simulators.station.sim import StationRig
from kickstand.testing import MosquittoService, PostgresServer
from tests.e2e.city import City, eventually

pytestmark = [
    pytest.mark.slow,
    pytest.mark.mqtt,
    pytest.mark.postgres,
    pytest.mark.asyncio(loop_scope="module"),
]

ALICE = ("alice@example.com", "alice-demo-1")
BOB = ("bob@example.com", "bob-demo-1")
ALICE_UID = bytes.fromhex(ALICE_BADGE_UID)
UNKNOWN_UID = bytes.fromhex("0BADBAD0")
BOB_UID = bytes.fromhex("04B0B0B0B0B001")
#: nfcpy reports a badge again only after it left the reader for this long.
DEBOUNCE_S = 2.1


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def city(
    mosquitto: MosquittoService,
    pg_server: PostgresServer,
    pg_template: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[City]:
    database = pg_server.new_database(template=pg_template)
    try:
        async with City(
            mqtt_url=mosquitto.url,
            broker_host=mosquitto.host,
            broker_port=mosquitto.port,
            database_url=database.url,
            workdir=tmp_path_factory.mktemp("badge-city"),
            # The seed docks LY0001-3 at st-0001, LY0004-6 at st-0002, LY0007-9 at st-0003.
            stations={
                "st-0001": {1: "LY0001", 2: "LY0002", 3: "LY0003"},
                "st-0002": {1: "LY0004", 2: "LY0005", 3: "LY0006"},
                "st-0003": {1: "LY0007", 2: "LY0008", 3: "LY0009"},
            },
            unlock_window_s=5,
            nfc=True,
        ) as c:
            yield c
    finally:
        pg_server.drop_database(database.name)


# ---------------------------------------------------------------- helpers

_last_presented: dict[tuple[str, bytes], float] = {}


async def present(rig: StationRig, uid: bytes, within: float = 10.0) -> BadgeIndication:
    """Hold ``uid`` on the station's reader until the agent read it; return what the
    reader shows for it next (the cloud's BadgeReply online, the agent's own offline)."""
    agent = rig.agent
    assert agent is not None and rig.sim.badge is not None
    wait = _last_presented.get((rig.device_id, uid), 0.0) + DEBOUNCE_S - time.monotonic()
    if wait > 0:
        await asyncio.sleep(wait)
    shown_before = len(agent.badge_reader.shown)
    read_before = agent.counters["badges"]
    rig.sim.present_badge(uid, None)
    try:
        await eventually(_true(lambda: agent.counters["badges"] > read_before), within)
    finally:
        rig.sim.badge.remove()
        _last_presented[(rig.device_id, uid)] = time.monotonic()
    await eventually(_true(lambda: len(agent.badge_reader.shown) > shown_before), within)
    shown = agent.badge_reader.shown[shown_before]
    assert shown.uid == uid
    return shown


def _true(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return check()

    return run


async def network_version(city: City) -> int:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s, s.begin():
        network_id = (await s.execute(select(Network.id))).scalar_one()
        return await authlist.network_version(s, network_id)


async def lists_in_step(city: City, *, holding: bytes, present_: bool = True) -> None:
    """Every station holds the network's version, with (or without) ``holding``."""
    version = await network_version(city)

    async def check() -> bool:
        return all(
            rig.agent is not None
            and rig.agent.authlist.version == version
            and (holding in rig.agent.authlist) == present_
            for rig in city.rigs.values()
        )

    await eventually(check, 15)


async def wallet(city: City, email: str) -> Decimal:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        balance: Decimal = (
            await s.execute(select(User.wallet_balance).where(User.email == email))
        ).scalar_one()
    return balance


async def running_trip(city: City) -> Trip | None:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        return (
            await s.scalars(select(Trip).where(Trip.status == "running").order_by(Trip.id))
        ).first()


async def trip_by_id(city: City, trip_id: int) -> Trip:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        return (await s.scalars(select(Trip).where(Trip.id == trip_id))).one()


async def set_limit(city: City, limit: int) -> None:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s, s.begin():
        await s.execute(update(Network).values(max_simultaneous_rented_vehicle=limit))


async def block(city: City, uid: str, blocked: bool, *, publish: bool = True) -> None:
    """An operator blocks / unblocks a badge (the service the dashboard calls); with
    ``publish=False`` the DIFF is lost (as when no broker took it)."""
    assert city.sessionmaker is not None and city.gateway is not None
    issuer = CommandIssuer(load_signer(city.settings), sent_by="test-operator")
    async with city.sessionmaker() as s, s.begin():
        badge = (await s.scalars(select(Badge).where(Badge.uid == uid))).one()
        issued: list[IssuedCommand] = await badges.set_blocked(
            s, badge, blocked, issuer if publish else None, datetime.now(UTC)
        )
    await authlist.publish_all(city.gateway, issued)


async def trip_ended(city: City, trip_id: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await trip_by_id(city, trip_id)).status == "finished"

    return check


# ---------------------------------------------------------------- scenarios


async def test_every_station_gets_the_full_list_at_birth(city: City) -> None:
    # The agents started with no list (version 0): each birth got a FULL with alice's card.
    await lists_in_step(city, holding=ALICE_UID)
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        fulls = (await s.scalars(select(AuthListSend).where(AuthListSend.kind == "full"))).all()
    assert {f.device_id for f in fulls} == set(city.rigs)


async def test_badge_ride_online_is_billed_to_the_badge_rider(city: City) -> None:
    st1, st2 = city.rigs["st-0001"], city.rigs["st-0002"]
    before = await wallet(city, ALICE[0])
    shown = await present(st1, ALICE_UID)
    assert (shown.outcome, shown.reason, shown.spot) == ("unlocking", None, 1)
    await eventually(_true(lambda: st1.sim.boards[1].lock.name == "OPEN"))
    assert st1.sim.take(1) == "LY0001"

    async def started() -> bool:
        return await running_trip(city) is not None

    await eventually(started)
    trip = await running_trip(city)
    assert trip is not None and trip.badge_id is not None
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        alice = (await s.scalars(select(User).where(User.email == ALICE[0]))).one()
    assert trip.user_id == alice.id

    # Over the network's limit (one vehicle at a time now): refused, the reason shown.
    await set_limit(city, 1)
    try:
        refused = await present(st2, ALICE_UID)
    finally:
        await set_limit(city, 2)
    assert (refused.outcome, refused.reason) == ("refused", "rental_limit")
    assert all(b.lock.name == "LOCKED" for b in st2.sim.boards.values() if b.vehicle_present)

    await asyncio.sleep(1.0)  # the ride
    st1.sim.dock(4, "LY0001")
    await eventually(await trip_ended(city, trip.id), 15)
    ended = await trip_by_id(city, trip.id)
    assert ended.cost is not None and ended.cost > 0
    assert await wallet(city, ALICE[0]) == before - ended.cost


async def test_unknown_and_blocked_badges_are_refused_at_the_reader(city: City) -> None:
    st2 = city.rigs["st-0002"]
    unknown = await present(st2, UNKNOWN_UID)
    assert (unknown.outcome, unknown.reason) == ("refused", "unknown_badge")

    await block(city, ALICE_BADGE_UID, True)
    try:
        # The DIFF took alice's card off every station's list…
        await lists_in_step(city, holding=ALICE_UID, present_=False)
        blocked = await present(st2, ALICE_UID)
        assert (blocked.outcome, blocked.reason) == ("refused", "badge_blocked")
        assert all(b.lock.name == "LOCKED" for b in st2.sim.boards.values() if b.vehicle_present)
    finally:
        await block(city, ALICE_BADGE_UID, False)
    # …and the next one put it back.
    await lists_in_step(city, holding=ALICE_UID)


async def test_linking_a_badge_at_a_reader_then_unlinking_it(city: City) -> None:
    st3 = city.rigs["st-0003"]
    headers = await city.login(*BOB)
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        cluster_id = (
            await s.execute(select(Station.cluster_id).where(Station.device_id == "st-0003"))
        ).scalar_one()
    r = await city.client().post(
        "/v1/badges", json={"cluster_id": cluster_id, "name": "Bob's card"}, headers=headers
    )
    assert r.status_code == 201, r.text
    badge_id = r.json()["data"]["badge_id"]

    shown = await present(st3, BOB_UID)
    assert shown.outcome == "linked"
    await lists_in_step(city, holding=BOB_UID)  # a DIFF to every station
    listed = (await city.client().get("/v1/badges", headers=headers)).json()["data"]
    assert [(b["badge_id"], b["linked"]) for b in listed] == [(badge_id, True)]

    r = await city.client().delete(f"/v1/badges/{badge_id}", headers=headers)
    assert r.status_code == 200, r.text
    await lists_in_step(city, holding=BOB_UID, present_=False)
    again = await present(st3, BOB_UID)
    assert (again.outcome, again.reason) == ("refused", "unknown_badge")


async def test_a_station_behind_gets_the_full_list_after_a_mismatch(city: City) -> None:
    # A change whose DIFF never went out (no broker took it): every station is one behind.
    await block(city, ALICE_BADGE_UID, True, publish=False)
    assert all(
        rig.agent is not None and ALICE_UID in rig.agent.authlist for rig in city.rigs.values()
    )
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        fulls_before = len(
            (await s.scalars(select(AuthListSend).where(AuthListSend.kind == "full"))).all()
        )
    # The next DIFF builds on a version they do not hold: VERSION_MISMATCH → FULL.
    await block(city, ALICE_BADGE_UID, False)
    await lists_in_step(city, holding=ALICE_UID)
    async with city.sessionmaker() as s:
        fulls = (await s.scalars(select(AuthListSend).where(AuthListSend.kind == "full"))).all()
    assert len(fulls) == fulls_before + len(city.rigs)


async def test_offline_badge_ride_is_reconciled_and_billed(city: City) -> None:
    st3 = city.rigs["st-0003"]
    before = await wallet(city, ALICE[0])
    st3.cut_link()
    assert st3.agent is not None
    await eventually(_true(lambda: st3.agent is not None and not st3.agent.link.accepted.is_set()))
    shown = await present(st3, ALICE_UID)  # in the local list: the station opens by itself
    assert (shown.outcome, shown.spot) == ("unlocking", 1)
    await eventually(_true(lambda: st3.sim.boards[1].lock.name == "OPEN"))
    taken_at = time.time()
    assert st3.sim.take(1) == "LY0007"
    await asyncio.sleep(1.0)
    st3.sim.dock(5, "LY0007")  # back before the link returns: both events queued on disk
    await asyncio.sleep(0.5)
    assert await wallet(city, ALICE[0]) == before, "nothing reached the cloud yet"
    st3.restore_link()
    assert city.sessionmaker is not None

    async def billed() -> bool:
        async with city.sessionmaker() as s:  # type: ignore[misc]
            trip = (
                await s.scalars(
                    select(Trip).where(Trip.status == "finished").order_by(Trip.id.desc())
                )
            ).first()
            return trip is not None and trip.started_at.timestamp() > taken_at - 1

    await eventually(billed, 20)
    async with city.sessionmaker() as s:
        trip = (await s.scalars(select(Trip).order_by(Trip.id.desc()))).first()
    assert trip is not None and trip.badge_id is not None and trip.cost is not None
    assert abs(trip.started_at.timestamp() - taken_at) < 1.0, "on the station's time"
    assert await wallet(city, ALICE[0]) == before - trip.cost


async def test_a_blocked_badge_that_rode_offline_is_recorded_and_flagged(city: City) -> None:
    st3 = city.rigs["st-0003"]
    # Blocked while the station was cut off: its list still has the card.
    st3.cut_link()
    await eventually(_true(lambda: st3.agent is not None and not st3.agent.link.accepted.is_set()))
    await block(city, ALICE_BADGE_UID, True)
    try:
        shown = await present(st3, ALICE_UID)
        assert shown.outcome == "unlocking"
        spot = shown.spot
        assert spot is not None
        await eventually(_true(lambda: st3.sim.boards[spot].lock.name == "OPEN"))
        serial = st3.sim.take(spot)
        assert serial is not None
        st3.restore_link()
        assert city.sessionmaker is not None

        async def flagged() -> bool:
            async with city.sessionmaker() as s:  # type: ignore[misc]
                alerts = (
                    await s.scalars(
                        select(FleetAlert).where(
                            FleetAlert.alert_type == AlertType.BADGE_RIDE_UNAUTHORIZED
                        )
                    )
                ).all()
                return len(alerts) == 1

        await eventually(flagged, 20)
        async with city.sessionmaker() as s:
            trip = (await s.scalars(select(Trip).order_by(Trip.id.desc()))).first()
        assert trip is not None and trip.status == "running" and trip.badge_id is not None
        st3.sim.dock(spot, serial)
        await eventually(await trip_ended(city, trip.id), 15)
    finally:
        await block(city, ALICE_BADGE_UID, False)
