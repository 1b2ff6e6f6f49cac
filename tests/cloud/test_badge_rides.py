"""Badge rides online and the stations' authorization lists, at the service level (the
seeded Lyon network on SQLite): what the cloud decides for a badge read at a station, and
which list updates it sends. End to end through the broker: tests/e2e/test_badge_rides.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import badge_rides, badges
from kickstand.cloud.authlist import service as authlist
from kickstand.cloud.commands.issuer import CommandIssuer
from kickstand.cloud.ingest import repository as repo
from kickstand.cloud.models import (
    Badge,
    Device,
    Network,
    Rent,
    RentKind,
    RentStatus,
    Spot,
    SpotState,
    Station,
)
from kickstand.cloud.seed import ALICE_BADGE_UID, DemoRefs
from kickstand.protocol.signing import CommandSigner, MemoryReplayGuard, generate_private_key
from kickstand.protocol.signing import CommandVerifier as Verifier
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import AuthListKind, BadgeOutcome, BadgeRefusal

SIGNER = CommandSigner(generate_private_key())
ISSUER = CommandIssuer(SIGNER, valid_s=30, sent_by="test", unlock_window_s=30)
ALICE_UID = bytes.fromhex(ALICE_BADGE_UID)
NEW_UID = "04C0FFEE000001"


def opened(device_id: str, payload: bytes) -> m.CommandEnvelope:
    """The command as the station verifies it."""
    verifier = Verifier(device_id, {SIGNER.kid: SIGNER.public_key}, MemoryReplayGuard())
    return verifier.verify(payload)


async def present(
    session: AsyncSession, uid: str, device_id: str = "st-0001"
) -> badge_rides.BadgeDecision:
    return await badge_rides.present(
        session, ISSUER, device_id, uid, now=datetime.now(UTC)
    )


async def stations(session: AsyncSession, demo: DemoRefs) -> list[str]:
    return await authlist.station_ids(session, demo.network_id)


# ---------------------------------------------------------------- pure


def test_full_list_is_split_at_the_update_limit() -> None:
    uids = [i.to_bytes(4, "big") for i in range(authlist.MAX_UIDS + 5)]
    updates = authlist.full_updates(7, list(reversed(uids)))
    assert [u.kind for u in updates] == [AuthListKind.FULL, AuthListKind.DIFF]
    assert len(updates[0].add) == authlist.MAX_UIDS and updates[0].add[0] == uids[0]
    assert updates[1] == m.AuthListUpdate(AuthListKind.DIFF, 7, 7, tuple(uids[-5:]))
    assert authlist.full_updates(3, []) == [m.AuthListUpdate(AuthListKind.FULL, 3, None, ())]
    diff = authlist.diff_update(4, [b"\x02" * 4], [b"\x01" * 4])
    assert (diff.base_version, diff.version, diff.add, diff.remove) == (
        3,
        4,
        (b"\x02" * 4,),
        (b"\x01" * 4,),
    )


# ---------------------------------------------------------------- online decisions


async def test_linked_badge_opens_a_badge_rent_and_a_signed_unlock(
    session: AsyncSession, demo: DemoRefs
) -> None:
    decision = await present(session, ALICE_BADGE_UID.lower())
    await session.commit()
    assert decision.outcome is BadgeOutcome.UNLOCKING and decision.spot == 1
    assert decision.rent_id is not None and len(decision.commands) == 1
    rent = await session.get(Rent, decision.rent_id)
    assert rent is not None and rent.kind == RentKind.BADGE
    assert rent.user_id == demo.user_ids["alice@example.com"] and rent.badge_id is not None
    assert rent.status == RentStatus.PENDING
    command = decision.commands[0]
    envelope = opened("st-0001", command.payload)
    assert envelope.command == m.Unlock(spot=1, window_s=30, rent_id=str(rent.id))
    # The removal's command_id leads ingest to this rent.
    assert await repo.rent_of_command(session, command.command_id) == rent.id
    reply = decision.reply(ALICE_UID)
    assert reply == m.BadgeReply(ALICE_UID, BadgeOutcome.UNLOCKING, None, 1, str(rent.id))


async def test_refusals_name_their_reason(session: AsyncSession, demo: DemoRefs) -> None:
    unknown = await present(session, "DEADBEEF")
    assert (unknown.outcome, unknown.reason) == (BadgeOutcome.REFUSED, BadgeRefusal.UNKNOWN_BADGE)
    assert unknown.commands == []

    # The network allows one vehicle at a time: a second badge unlock is over the limit.
    await session.execute(
        update(Network)
        .where(Network.id == demo.network_id)
        .values(max_simultaneous_rented_vehicle=1)
    )
    first = await present(session, ALICE_BADGE_UID)
    assert first.outcome is BadgeOutcome.UNLOCKING
    second = await present(session, ALICE_BADGE_UID, "st-0002")
    assert (second.outcome, second.reason) == (BadgeOutcome.REFUSED, BadgeRefusal.RENTAL_LIMIT)

    badge = (await session.scalars(select(Badge).where(Badge.uid == ALICE_BADGE_UID))).one()
    diffs = await badges.set_blocked(session, badge, True, ISSUER, datetime.now(UTC))
    blocked = await present(session, ALICE_BADGE_UID, "st-0002")
    assert (blocked.outcome, blocked.reason) == (BadgeOutcome.REFUSED, BadgeRefusal.BADGE_BLOCKED)
    # Blocking takes the UID off every station's list.
    assert sorted(d.device_id for d in diffs) == await stations(session, demo)
    body = opened(diffs[0].device_id, diffs[0].payload).command
    assert isinstance(body, m.AuthListUpdate) and body.remove == (ALICE_UID,)
    assert body.kind is AuthListKind.DIFF and body.base_version == body.version - 1


async def test_no_vehicle_to_rent_is_refused(session: AsyncSession, demo: DemoRefs) -> None:
    # Every spot of st-0001 out of service: none of its docked vehicles can be rented.
    station = (await session.scalars(select(Station).where(Station.device_id == "st-0001"))).one()
    await session.execute(
        update(Spot).where(Spot.station_id == station.id).values(state=SpotState.MAINTENANCE)
    )
    decision = await present(session, ALICE_BADGE_UID)
    assert (decision.outcome, decision.reason) == (BadgeOutcome.REFUSED, BadgeRefusal.NO_VEHICLE)
    assert await session.scalar(select(func.count()).select_from(Rent)) == 0


async def test_linking_at_the_reader_sends_a_diff_to_every_station(
    session: AsyncSession, demo: DemoRefs
) -> None:
    bob = demo.user_ids["bob@example.com"]
    cluster = demo.cluster_ids["Bellecour"]  # st-0001's
    before = await authlist.network_version(session, demo.network_id)
    await badges.request_link(session, bob, cluster, "Bob's card", datetime.now(UTC))
    elsewhere = await present(session, NEW_UID, "st-0002")  # not the cluster asked for
    assert (elsewhere.outcome, elsewhere.reason) == (
        BadgeOutcome.REFUSED,
        BadgeRefusal.UNKNOWN_BADGE,
    )
    linked = await present(session, NEW_UID)
    assert linked.outcome is BadgeOutcome.LINKED
    badge = (await session.scalars(select(Badge).where(Badge.uid == NEW_UID))).one()
    assert badge.user_id == bob
    assert await authlist.network_version(session, demo.network_id) == before + 1
    assert sorted(c.device_id for c in linked.commands) == await stations(session, demo)
    body = opened("st-0001", next(c for c in linked.commands if c.device_id == "st-0001").payload)
    assert body.command == m.AuthListUpdate(
        AuthListKind.DIFF, before + 1, before, (bytes.fromhex(NEW_UID),)
    )
    # Then bob rides with it.
    ride = await present(session, NEW_UID)
    assert ride.outcome is BadgeOutcome.UNLOCKING
    # Unlinked: it leaves the lists and opens nothing more.
    removed = await badges.unlink(session, badge, ISSUER)
    assert opened(
        "st-0002", next(c for c in removed if c.device_id == "st-0002").payload
    ).command == m.AuthListUpdate(
        AuthListKind.DIFF, before + 2, before + 1, (), (bytes.fromhex(NEW_UID),)
    )
    again = await present(session, NEW_UID)
    assert again.reason is BadgeRefusal.UNKNOWN_BADGE


async def test_refused_unlock_ends_the_badge_rent_free(
    session: AsyncSession, demo: DemoRefs
) -> None:
    decision = await present(session, ALICE_BADGE_UID)
    assert decision.rent_id is not None
    await badge_rides.unlock_result(
        session,
        decision.rent_id,
        done=False,
        reason="hardware-fault",
        at=datetime.now(UTC),
        unlock_window_s=ISSUER.unlock_window_s,
    )
    rent = await session.get(Rent, decision.rent_id, populate_existing=True)
    assert rent is not None and rent.status == RentStatus.REFUSED and rent.ended_at is not None


# ---------------------------------------------------------------- the lists


async def test_birth_mismatch_and_results_keep_each_station_in_step(
    session: AsyncSession, demo: DemoRefs
) -> None:
    version = await authlist.network_version(session, demo.network_id)
    assert version == 1  # a fresh network's list; a new station holds 0
    full = await authlist.at_birth(session, ISSUER, "st-0001", demo.network_id, 0)
    assert len(full) == 1
    body = opened("st-0001", full[0].payload).command
    assert body == m.AuthListUpdate(AuthListKind.FULL, 1, None, (ALICE_UID,))
    assert await authlist.confirmed_version(session, "st-0001") == 0
    await authlist.on_result(
        session,
        ISSUER,
        "st-0001",
        demo.network_id,
        full[0].command_id,
        done=True,
        version_mismatch=False,
    )
    assert await authlist.confirmed_version(session, "st-0001") == 1
    # In step: nothing to send at the next birth.
    assert await authlist.at_birth(session, ISSUER, "st-0001", demo.network_id, 1) == []
    # A DIFF refused for a version the station does not hold: a FULL follows.
    diffs = await authlist.changed(session, ISSUER, demo.network_id, add=[NEW_UID])
    diff = next(c for c in diffs if c.device_id == "st-0001")
    again = await authlist.on_result(
        session,
        ISSUER,
        "st-0001",
        demo.network_id,
        diff.command_id,
        done=False,
        version_mismatch=True,
    )
    assert [opened("st-0001", c.payload).command.kind for c in again] == [  # type: ignore[union-attr]
        AuthListKind.FULL
    ]
    # A result of another command, or of another station, changes nothing.
    assert (
        await authlist.on_result(
            session,
            ISSUER,
            "st-0002",
            demo.network_id,
            diff.command_id,
            done=True,
            version_mismatch=False,
        )
        == []
    )
    assert await authlist.confirmed_version(session, "st-0002") is None
    await session.commit()
    assert datetime.now(UTC) - timedelta(minutes=1) < full[0].issued_at


async def test_sweep_catches_up_an_online_station_left_behind(
    session: AsyncSession, demo: DemoRefs
) -> None:
    now = datetime.now(UTC)
    await session.execute(
        update(Device)
        .where(Device.device_id == "st-0001")
        .values(online=True, last_seen_at=now, heartbeat_s=30)
    )
    # st-0001 is online and never confirmed a list; the other stations are offline.
    [full] = await authlist.catch_up(session, ISSUER, now)
    assert full.device_id == "st-0001"
    assert opened("st-0001", full.payload).command.kind is AuthListKind.FULL  # type: ignore[union-attr]
    # Just sent: it has time to answer.
    assert await authlist.catch_up(session, ISSUER, now) == []
    later = now + timedelta(seconds=authlist.CATCH_UP_AFTER_S + 1)
    await session.execute(
        update(Device).where(Device.device_id == "st-0001").values(last_seen_at=later)
    )
    assert len(await authlist.catch_up(session, ISSUER, later)) == 1  # no answer: again
    await authlist.on_result(
        session,
        ISSUER,
        "st-0001",
        demo.network_id,
        full.command_id,
        done=True,
        version_mismatch=False,
    )
    much_later = later + timedelta(hours=1)
    await session.execute(
        update(Device).where(Device.device_id == "st-0001").values(last_seen_at=much_later)
    )
    assert await authlist.catch_up(session, ISSUER, much_later) == []  # in step now
