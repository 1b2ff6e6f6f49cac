"""The reader shows the cloud's answer to a badge (BadgeReply, SPEC §4.7) and, offline, the
station's own: the real agent on the harness broker, the simulated NFC badge (nfcpy udp)."""

from __future__ import annotations

from kickstand.protocol.topics import Channel
from kickstand.protocol.v1.enums import BadgeOutcome, BadgeRefusal
from kickstand.protocol.v1.messages import BadgePresented, BadgeReply
from kickstand.simulators.station.cloudpeer import CloudPeer, eventually
from kickstand.simulators.station.sim import StationRig

BADGE = bytes.fromhex("04a1b2c3d4e5f6")
STRANGER = bytes.fromhex("04deadbeef0002")


async def test_reader_shows_the_clouds_answer(rig: StationRig, cloud: CloudPeer) -> None:
    agent = rig.agent
    assert agent is not None
    dev = rig.device_id
    await cloud.send_badge_reply(
        dev, BadgeReply(BADGE, BadgeOutcome.REFUSED, BadgeRefusal.RENTAL_LIMIT)
    )
    await cloud.send_badge_reply(dev, BadgeReply(BADGE, BadgeOutcome.UNLOCKING, None, 3, "42"))
    await eventually(lambda: agent.counters["badge_replies"] == 2)
    shown = [(i.uid, i.outcome, i.reason, i.spot) for i in agent.badge_reader.shown]
    assert shown == [
        (BADGE, "refused", "rental_limit", None),
        (BADGE, "unlocking", None, 3),
    ]
    # Not a BadgeReply: counted as invalid, nothing shown, the session goes on.
    invalid = agent.link.counters.inbound_invalid
    await cloud.send_down(dev, Channel.BADGE, b"\xa1\x00\x01")
    await eventually(lambda: agent.link.counters.inbound_invalid == invalid + 1)
    assert len(agent.badge_reader.shown) == 2 and agent.link.accepted.is_set()


async def test_offline_the_station_shows_its_own_refusal(rig: StationRig, cloud: CloudPeer) -> None:
    agent = rig.agent
    assert agent is not None and rig.sim.badge is not None
    rig.cut_link()
    await eventually(lambda: not agent.link.accepted.is_set())
    rig.sim.present_badge(STRANGER, None)
    await eventually(lambda: len(agent.badge_reader.shown) == 1, within=8)
    rig.sim.badge.remove()
    [shown] = agent.badge_reader.shown
    assert (shown.uid, shown.outcome, shown.reason) == (STRANGER, "refused", "not_in_local_list")
    assert all(b.lock.name == "LOCKED" for b in rig.sim.boards.values() if b.vehicle_present)
    rig.restore_link()
    refused = await cloud.wait_for(
        rig.device_id, lambda r: isinstance(r.body, BadgePresented), within=10
    )
    assert refused.body == BadgePresented(STRANGER, False, True, 0)


async def test_the_snapshot_shows_the_readers_liveness(rig: StationRig, cloud: CloudPeer) -> None:
    """A reader whose peer stopped answering (a dead RF field at the wire: the same silence
    as no badge) still polls: the health snapshot says so, with the last read's age."""
    agent = rig.agent
    assert agent is not None and rig.sim.badge is not None
    rig.sim.present_badge(BADGE, 1.5)
    await cloud.wait_for(rig.device_id, lambda r: isinstance(r.body, BadgePresented), within=5)
    seen = agent.snapshot()["badge_reader"]
    assert seen["path"] == rig.sim.badge.path and seen["state"] == "polling"
    assert (seen["reads"], seen["errors"], seen["last_error"]) == (1, 0, None)
    assert seen["last_read_age_s"] is not None and seen["last_read_age_s"] < 5
    await rig.sim.badge.stop()
    polls = seen["polls"]
    await eventually(lambda: agent.snapshot()["badge_reader"]["polls"] >= polls + 2, within=5)
    silent = agent.snapshot()["badge_reader"]
    assert (silent["state"], silent["reads"], silent["errors"]) == ("polling", 1, 0)
    assert silent["last_poll_age_s"] < 3 and silent["last_read_age_s"] >= seen["last_read_age_s"]
