"""The hold-out, end to end: the foreign station (written from the documents alone,
tests/conformance/foreign_station.py) against the real cloud — the harness's Mosquitto and
PostgreSQL, the ingest worker and the rider API as tests/e2e/city.py assembles them, with
no real agent. Its command key comes from the provisioning document (§7.6:
``python -m kickstand.cloud.commands --format json``).

Checked, in order (one station st-0001 for the module; st-0004 for the first check): birth
accepted and the station online in the API (offline again after its Death); an app
unlock opens the spot, removal and a dock at another spot give a billed trip; an unlock
nobody takes expires free; a status moves a vehicle in the API; a FULL list after birth
and badges answered online (REFUSED, UNLOCKING); a DIFF on block and a FULL after
VERSION_MISMATCH; maintenance in and out; TriggerMessage STATUS; an offline badge ride
reconciled and billed; a Reboot (a new boot, both acknowledged); a clock 6 s fast still
unlocks; lost Acks: messages resent, one trip, every seq acknowledged.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import func, select, update

from kickstand.cloud.models import Badge, Rent, RentStatus, Trip, Vehicle
from kickstand.cloud.rent_gateway import UnlockResult
from kickstand.cloud.seed import ALICE_BADGE_UID
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m
from kickstand.testing import MosquittoService, PostgresServer
from tests.conformance.foreign_commands import decode_json_key
from tests.conformance.foreign_station import AuthList, ForeignStation
from tests.conformance.foreign_wire import BadgeOutcome, Command, Lock, Reject, Result
from tests.e2e.city import City, CloudClock, eventually, seeded_city
from tests.e2e.test_device_contract import cluster_of, vehicle_spot
from tests.e2e.test_rider_journey import trip_of_rent, wallet

pytestmark = [
    pytest.mark.slow,
    pytest.mark.mqtt,
    pytest.mark.postgres,
    pytest.mark.asyncio(loop_scope="module"),
]

ALICE = ("alice@example.com", "alice-demo-1")
BOB = ("bob@example.com", "bob-demo-1")
OPERATOR = ("operator@example.com", "operator-demo-1")
ALICE_UID = bytes.fromhex(ALICE_BADGE_UID)
UNKNOWN_UID = bytes.fromhex("0BADBAD0")
#: The window of the cloud's Unlocks (RENT_UNLOCK_WINDOW_S): short, so expiries are quick.
WINDOW_S = 5
#: Short, so a "lost" Ack shows as a resend within the test (SPEC's SHOULD is 30 s).
ACK_TIMEOUT_S = 2.0
CLOUD_CLOCK = CloudClock()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def city(
    mosquitto: MosquittoService,
    pg_server: PostgresServer,
    pg_template: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[City]:
    async with seeded_city(
        mosquitto,
        pg_server,
        pg_template,
        tmp_path_factory.mktemp("foreign-city"),
        stations={},  # no real agent: the foreign stations are started below
        unlock_window_s=WINDOW_S,
        heartbeat_s=1,
        cloud_clock_ms=CLOUD_CLOCK,
    ) as c:
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def command_key(city: City) -> bytes:
    """The provisioning document, as an operator prints it (§7.6)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kickstand.cloud.commands",
        "--format",
        "json",
        env={**os.environ, "VAR_DIR": str(city.settings.VAR_DIR)},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    return decode_json_key(out.decode())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def station(city: City, command_key: bytes) -> AsyncIterator[ForeignStation]:
    # The seed docks LY0001-3 at st-0001's spots 1-3.
    async with ForeignStation(
        "st-0001",
        city.broker_host,
        city.broker_port,
        command_keys=[command_key],
        docked={1: "LY0001", 2: "LY0002", 3: "LY0003"},
        ack_timeout_s=ACK_TIMEOUT_S,
        # §7.5: the station's own window overrides the Unlock's window_s (the ingest
        # process signs badge Unlocks with its default window).
        unlock_window_s=WINDOW_S,
    ) as st:
        await asyncio.wait_for(st.accepted.wait(), 20)
        yield st


# -- the checks ---------------------------------------------------------------------------


async def test_birth_accepted_and_the_station_online_in_the_api(
    city: City, command_key: bytes
) -> None:
    cluster = await cluster_of(city, "st-0004")
    assert await cluster_down(city, cluster), "the station never had a birth: down"
    async with ForeignStation(
        "st-0004",
        city.broker_host,
        city.broker_port,
        command_keys=[command_key],
        docked={1: "LY0010", 2: "LY0011", 3: "LY0012"},
    ) as st:
        await asyncio.wait_for(st.accepted.wait(), 20)
        reply = st.boot_replies[-1]
        assert reply[0] == 1 and reply[3] == st.boot_id
        assert reply.get(5) is True, "the cloud announces end-to-end acks (§4.6)"
        await eventually(lambda: _not(cluster_down(city, cluster)), 10)
        spots = await cluster_spots(city, cluster)
        assert [n for n, s in sorted(spots.items()) if s["vehicle_id"] is not None] == [1, 2, 3]
        assert all(s["lock_status"] == Lock.LOCKED for s in spots.values())
    # A clean shutdown publishes its Death: offline at once.
    await eventually(lambda: cluster_down(city, cluster), 10)


async def test_an_app_unlock_opens_the_spot_and_the_ride_is_billed(
    city: City, station: ForeignStation
) -> None:
    headers = await city.login(*ALICE)
    before = await wallet(city, ALICE[0])
    status, body = await rent(city, headers, await city.spot_id("st-0001", 1))
    assert status == 201, body
    rent_id = body["data"]["rent_id"]
    assert station.spots[1].lock is Lock.OPEN, "the signed Unlock verified and executed"
    assert any(r.ctype is Command.UNLOCK and r.status is Result.DONE for r in station.results)

    taken_at = time.time()
    assert station.take(1) == "LY0001"
    await eventually(lambda: _trip_in(city, rent_id, "running"), 10)
    await asyncio.sleep(1.2)  # the ride
    docked_at = time.time()
    station.dock(4, "LY0001")  # at another spot
    await eventually(lambda: _trip_in(city, rent_id, "finished"), 10)

    trip = await trip_of_rent(city, rent_id)
    assert trip is not None
    r = await city.client().get(f"/v1/trips/{trip.id}", headers=headers)
    detail = r.json()["data"]
    start = datetime.fromisoformat(detail["start_date"])
    end = datetime.fromisoformat(detail["end_date"])
    assert abs(start.timestamp() - taken_at) < 1.0 and abs(end.timestamp() - docked_at) < 1.0
    cost = Decimal(detail["cost"])
    assert cost > 0
    assert await wallet(city, ALICE[0]) == before - cost
    assert await vehicle_spot(city, "LY0001") == await city.spot_id("st-0001", 4)


async def test_an_unlock_nobody_takes_expires_free(city: City, station: ForeignStation) -> None:
    headers = await city.login(*BOB)
    before = await wallet(city, BOB[0])
    status, body = await rent(city, headers, await city.spot_id("st-0001", 2))
    assert status == 201, body
    assert station.spots[2].lock is Lock.OPEN
    await station.wait_for(lambda: station.spots[2].lock is Lock.LOCKED, WINDOW_S + 5)
    await eventually(
        lambda: _rent_is(city, body["data"]["rent_id"], RentStatus.EXPIRED_NO_REMOVAL), 10
    )
    assert await trip_of_rent(city, body["data"]["rent_id"]) is None
    assert await wallet(city, BOB[0]) == before


async def test_a_status_moves_a_vehicle_in_the_api(city: City, station: ForeignStation) -> None:
    spot3, spot6 = await city.spot_id("st-0001", 3), await city.spot_id("st-0001", 6)
    await eventually(lambda: _is(vehicle_spot(city, "LY0003"), spot3), 10)
    # The cloud's record drifts (a lost event, a manual edit): LY0003 in spot 6.
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s, s.begin():
        await s.execute(
            update(Vehicle).where(Vehicle.serial_number == "LY0003").values(spot_id=spot6)
        )
    # A reconnect: the station reports every spot after its accepted birth (§4.4).
    await station.reconnect()
    await eventually(lambda: _is(vehicle_spot(city, "LY0003"), spot3), 10)
    spots = await cluster_spots(city, await cluster_of(city, "st-0001"))
    assert spots[3]["vehicle_id"] is not None and spots[6]["vehicle_id"] is None


async def test_the_list_arrives_full_after_birth_and_badges_are_answered_online(
    city: City, station: ForeignStation
) -> None:
    # The network has a linked badge (Alice's): a FULL after the birth (version 0 held).
    await station.wait_for(lambda: ALICE_UID in station.auth.uids, 10)
    assert station.auth.version >= 1
    assert (1, station.auth.version, Result.DONE, None) in station.auth_updates

    refused = await station.present_badge(UNKNOWN_UID)
    assert refused is not None and refused.outcome is BadgeOutcome.REFUSED
    assert refused.reason == 1  # UNKNOWN_BADGE

    reply = await station.present_badge(ALICE_UID)
    assert reply is not None and reply.outcome is BadgeOutcome.UNLOCKING, reply
    spot, rent_id = reply.spot, int(reply.rent_id or 0)
    assert spot is not None and rent_id
    await station.wait_for(lambda: station.spots[spot].lock is Lock.OPEN, 5)
    # Nobody takes it: the rent ends free with the UnlockExpired.
    await eventually(lambda: _rent_is(city, rent_id, RentStatus.EXPIRED_NO_REMOVAL), 15)


async def test_a_diff_on_block_and_a_full_after_a_version_mismatch(
    city: City, station: ForeignStation
) -> None:
    await station.wait_for(lambda: ALICE_UID in station.auth.uids, 10)
    operator = await city.login(*OPERATOR)
    badge_id = await _badge_id(city, ALICE_BADGE_UID)
    held = station.auth.version
    r = await city.client().put(
        f"/v1/dashboard/badges/{badge_id}/blocked", json={"blocked": True}, headers=operator
    )
    assert r.status_code == 200, r.text
    # A DIFF from the version the station holds to the next, without the blocked badge.
    await station.wait_for(lambda: (2, held + 1, Result.DONE, None) in station.auth_updates, 10)
    assert ALICE_UID not in station.auth.uids and station.auth.version == held + 1

    # The station lost that update (it holds the version before): the next DIFF does not
    # fit, it answers VERSION_MISMATCH and the cloud sends a FULL.
    station.auth = AuthList(held, set(station.auth.uids))
    r = await city.client().put(
        f"/v1/dashboard/badges/{badge_id}/blocked", json={"blocked": False}, headers=operator
    )
    assert r.status_code == 200, r.text
    mismatch = (2, held + 2, Result.REJECTED, Reject.VERSION_MISMATCH)
    await station.wait_for(lambda: mismatch in station.auth_updates, 10)
    await station.wait_for(lambda: station.auth_updates[-1][0] == 1, 10)
    assert station.auth_updates[-1][2] is Result.DONE
    assert station.auth.version >= held + 2 and ALICE_UID in station.auth.uids


async def test_maintenance_in_and_out_through_the_dashboard(
    city: City, station: ForeignStation
) -> None:
    n = 6
    spot_id = await city.spot_id("st-0001", n)
    operator = await city.login(*OPERATOR)
    url = f"/v1/dashboard/spots/{spot_id}/maintenance"
    r = await city.client().put(url, json={"in_maintenance": True}, headers=operator)
    assert r.status_code == 200 and r.json()["data"]["station_answer"] == "done", r.text
    assert station.spots[n].maintenance
    r = await city.client().put(url, json={"in_maintenance": False}, headers=operator)
    assert r.status_code == 200 and r.json()["data"]["station_answer"] == "done", r.text
    assert not station.spots[n].maintenance
    maintenance = [r for r in station.results if r.ctype is Command.SET_MAINTENANCE]
    assert [r.status for r in maintenance][-2:] == [Result.DONE, Result.DONE]


async def test_a_trigger_message_status_sends_every_spot(
    city: City, station: ForeignStation
) -> None:
    assert city.gateway is not None
    before = _statuses(station)
    issued = city.gateway.issue_command("st-0001", m.TriggerMessage(pe.TriggerKind.STATUS))
    outcome = await city.gateway.send_command(issued)
    assert outcome.result is UnlockResult.UNLOCKED, outcome  # the station answered DONE
    # Spot 0 means every spot, and the station's own status too (§7.4).
    assert _statuses(station) - before == 1 + len(station.spots)


async def test_an_offline_badge_ride_is_reconciled_and_billed_to_the_badge_rider(
    city: City, station: ForeignStation
) -> None:
    await station.wait_for(lambda: ALICE_UID in station.auth.uids, 10)
    before = await wallet(city, ALICE[0])
    badge_id = await _badge_id(city, ALICE_BADGE_UID)
    await station.go_offline()
    # The local list decides: the lowest spot holding a vehicle, docked and locked (§4.7).
    lowest = _docked_spot(station)
    reply = await station.present_badge(ALICE_UID)
    assert reply is not None and reply.outcome is BadgeOutcome.UNLOCKING, reply
    spot = reply.spot
    assert spot == lowest and station.spots[spot].lock is Lock.OPEN
    taken_at = time.time()
    serial = station.take(spot)
    await asyncio.sleep(1.2)
    station.dock(spot, serial)
    assert await _trip_of_badge(city, badge_id) is None, "nothing reached the cloud yet"
    await station.go_online()  # the queued events go out with their stamps

    await eventually(lambda: _badge_trip_finished(city, badge_id), 15)
    trip = await _trip_of_badge(city, badge_id)
    assert trip is not None and trip.user_id is not None
    assert abs(trip.started_at.timestamp() - taken_at) < 1.0, "on the station's time"
    assert trip.cost is not None and trip.cost > 0
    assert await wallet(city, ALICE[0]) == before - trip.cost, "billed to the badge's rider"


async def test_a_reboot_starts_a_new_boot_and_the_old_one_is_still_acknowledged(
    city: City, station: ForeignStation
) -> None:
    assert city.gateway is not None
    old = station.boot_id
    outcome = await city.gateway.send_command(city.gateway.issue_command("st-0001", m.Reboot()))
    assert outcome.result is UnlockResult.UNLOCKED, outcome  # DONE
    await station.wait_for(lambda: station.boot_id != old and station.accepted.is_set(), 15)
    await station.wait_for(lambda: not station.queue, ACK_TIMEOUT_S * 3)
    assert {b for b, _ in station.acked} >= {old, station.boot_id}
    cluster = await cluster_of(city, "st-0001")
    await eventually(lambda: _not(cluster_down(city, cluster)), 10)


async def test_a_station_whose_clock_is_6_s_fast_still_unlocks(
    city: City, station: ForeignStation
) -> None:
    CLOUD_CLOCK.skew_ms = 6000
    try:
        # The station follows the ingest clock (TimeReply every heartbeat).
        await station.wait_for(lambda: abs(station.offset_ms - 6000) < 500, 10)
        n = _docked_spot(station)
        status, body = await rent(city, await city.login(*BOB), await city.spot_id("st-0001", n))
        assert status == 201, body
        assert station.spots[n].lock is Lock.OPEN
    finally:
        CLOUD_CLOCK.skew_ms = 0
    await station.wait_for(lambda: station.spots[n].lock is Lock.LOCKED, WINDOW_S + 5)


async def test_every_message_is_applied_once_and_acknowledged(
    city: City, station: ForeignStation
) -> None:
    # The cloud's Acks are "lost" for a while: the station sends its messages again after
    # ack_timeout_s (§4.6.4); the cloud recognises the copies and acknowledges them.
    n = _docked_spot(station)
    headers = await city.login(*ALICE)
    station.ignore_acks = True
    try:
        status, body = await rent(city, headers, await city.spot_id("st-0001", n))
        assert status == 201, body
        serial = station.take(n)
        resent = station.counters.resent
        await station.wait_for(lambda: station.counters.resent > resent, ACK_TIMEOUT_S + 5)
    finally:
        station.ignore_acks = False
    station.dock(n, serial)
    rent_id = body["data"]["rent_id"]
    await eventually(lambda: _trip_in(city, rent_id, "finished"), 10)
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        trips = await s.scalar(
            select(func.count()).select_from(Trip).where(Trip.rent_id == rent_id)
        )
    assert trips == 1, "the resent removal started no second trip"

    # Every seq the station sent is covered by an Ack, its store is empty.
    await station.wait_for(lambda: not station.queue, ACK_TIMEOUT_S * 3)
    assert station.sent and station.sent <= station.acked, station.sent - station.acked
    assert station.counters.bad_cloud_messages == 0, "the cloud's messages decode strictly"


# -- helpers ------------------------------------------------------------------------------


async def _trip_of_badge(city: City, badge_id: int) -> Trip | None:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        return (
            await s.scalars(select(Trip).where(Trip.badge_id == badge_id).order_by(Trip.id.desc()))
        ).first()


async def _badge_trip_finished(city: City, badge_id: int) -> bool:
    trip = await _trip_of_badge(city, badge_id)
    return trip is not None and trip.status == "finished"


def _statuses(station: ForeignStation) -> int:
    return sum(1 for _, _, channel in station.publishes if channel == "status")


async def _badge_id(city: City, uid: str) -> int:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        badge_id: int = (await s.execute(select(Badge.id).where(Badge.uid == uid))).scalar_one()
        return badge_id


def _docked_spot(station: ForeignStation) -> int:
    return next(
        s.number
        for s in station.spots.values()
        if s.serial is not None and s.lock is Lock.LOCKED and not s.maintenance
    )


async def rent(city: City, headers: dict[str, str], spot_id: int) -> tuple[int, dict[str, Any]]:
    r = await city.client().post(
        "/v1/rents",
        json={"spot_id": spot_id},
        headers={**headers, "Idempotency-Key": f"foreign-{uuid.uuid4().hex}"},
    )
    return r.status_code, r.json()


async def cluster_down(city: City, cluster: int) -> bool:
    r = await city.client().get(f"/v1/clusters/{cluster}")
    down: bool = r.json()["data"]["cluster_is_down"]
    return down


async def cluster_spots(city: City, cluster: int) -> dict[int, dict[str, Any]]:
    r = await city.client().get(f"/v1/clusters/{cluster}/spots")
    return {s["displayed_number"]: s for s in r.json()["data"]}


async def _trip_in(city: City, rent_id: int, status: str) -> bool:
    trip = await trip_of_rent(city, rent_id)
    return trip is not None and trip.status == status


async def _rent_is(city: City, rent_id: int, status: RentStatus) -> bool:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        r = await s.get(Rent, rent_id)
        return r is not None and r.status == status


async def _is(value: Any, expected: object) -> bool:
    return bool(await value == expected)


async def _not(value: Any) -> bool:
    return not await value
