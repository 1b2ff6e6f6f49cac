"""Ingest's side of badges at stations (SPEC §4.7, §7.4), through the BatchApplier on the
seeded PostgreSQL database: what a batch publishes after its commit for a badge read
online, a station's birth and an authorization-list result."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.authlist import service as authlist
from kickstand.cloud.commands.issuer import CommandIssuer
from kickstand.cloud.ingest.apply import BatchApplier, IngestStats
from kickstand.cloud.ingest.batch import Reply
from kickstand.cloud.seed import ALICE_BADGE_UID
from kickstand.protocol import topics
from kickstand.protocol.signing import CommandSigner, MemoryReplayGuard, generate_private_key
from kickstand.protocol.signing import CommandVerifier as Verifier
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m
from tests.cloud.ingest.fakes import inbound, now_ms

Maker = async_sessionmaker[AsyncSession]
STATION = "st-0001"
ALICE = bytes.fromhex(ALICE_BADGE_UID)
SIGNER = CommandSigner(generate_private_key())


def applier(maker: Maker, *, signs: bool = True) -> BatchApplier:
    issuer = CommandIssuer(SIGNER, sent_by="ingest-test") if signs else None
    return BatchApplier(maker, IngestStats(), issuer=issuer)


def commands(replies: list[Reply]) -> list[m.CommandBody]:
    verifier = Verifier(STATION, {SIGNER.kid: SIGNER.public_key}, MemoryReplayGuard())
    cmd_topic = topics.down(STATION, Channel.COMMAND)
    return [verifier.verify(r.payload).command for r in replies if r.topic == cmd_topic]


def badge_replies(replies: list[Reply]) -> list[m.BadgeReply]:
    badge_topic = topics.down(STATION, Channel.BADGE)
    decoded = [
        codec.decode_down(Channel.BADGE, r.payload) for r in replies if r.topic == badge_topic
    ]
    assert all(isinstance(d, m.BadgeReply) for d in decoded)
    return decoded  # type: ignore[return-value]


async def test_online_badge_is_answered_after_the_commit(maker: Maker) -> None:
    out = await applier(maker).apply([inbound(STATION, m.BadgePresented(ALICE, True, False), 1)])
    [unlock] = commands(out.replies)
    assert isinstance(unlock, m.Unlock) and unlock.spot == 1 and unlock.rent_id
    assert badge_replies(out.replies) == [
        m.BadgeReply(ALICE, pe.BadgeOutcome.UNLOCKING, None, 1, unlock.rent_id)
    ]
    # The Unlock goes first: the reader says "spot 1" as the latch opens.
    assert out.replies[0].topic.endswith("/cmd") and out.replies[-1].topic.endswith("/badge")


async def test_late_offline_or_unsigned_badges_get_no_answer(maker: Maker) -> None:
    late = inbound(STATION, m.BadgePresented(ALICE, True, False), 1, ts_ms=now_ms() - 120_000)
    offline = inbound(STATION, m.BadgePresented(ALICE, True, True, 2), 2)
    signing = applier(maker)
    out = await signing.apply([late, offline])
    assert out.replies == []
    assert signing.stats.ignored["badge-stale"] == 1
    unsigned = applier(maker, signs=False)
    out = await unsigned.apply([inbound(STATION, m.BadgePresented(ALICE, True, False), 3)])
    assert out.replies == [] and unsigned.stats.ignored["badge-no-issuer"] == 1


async def test_birth_gets_a_full_list_and_its_done_confirms_it(maker: Maker) -> None:
    ingest = applier(maker)
    birth = m.Birth(pe.DeviceKind.STATION, "1.0", "mb", auth_list_version=0)
    out = await ingest.apply([inbound(STATION, birth, 0)])
    assert [r.topic.rsplit("/", 1)[1] for r in out.replies] == ["boot", "cmd"]
    [full] = commands(out.replies)
    assert full == m.AuthListUpdate(pe.AuthListKind.FULL, 1, None, (ALICE,))
    envelope = Verifier(STATION, {SIGNER.kid: SIGNER.public_key}, MemoryReplayGuard()).verify(
        out.replies[1].payload
    )
    done = m.CommandResult(envelope.command_id, pe.ResultStatus.DONE)
    await ingest.apply([inbound(STATION, done, 1)])
    async with maker() as session:
        assert await authlist.confirmed_version(session, STATION) == 1
    # In step at the next birth: the BootReply only.
    again = await ingest.apply(
        [
            inbound(
                STATION, m.Birth(pe.DeviceKind.STATION, "1.0", "mb", auth_list_version=1), 0, boot=6
            )
        ]
    )
    assert [r.topic.rsplit("/", 1)[1] for r in again.replies] == ["boot"]
