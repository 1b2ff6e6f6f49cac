"""The vehicle's lock state machine and trip-facing rules without a lock box."""

from __future__ import annotations

from kickstand.edge.vehicle.lock import (
    CHAIN_KEY,
    FAULT_AFTER,
    LOCK_KEY,
    LockMachine,
    device_state,
    offline_unlock_allowed,
    relock_when_window_ends,
)
from kickstand.protocol.spotbus import BusLock
from kickstand.protocol.v1.enums import ChainType, DeviceState, LockCause, LockState
from kickstand.protocol.v1.messages import (
    BoardFault,
    BoardRecovered,
    ChainInserted,
    ChainRemoved,
    ChainTypeChanged,
    Locked,
    Unlocked,
)

CID = bytes(16)


def test_first_reading_after_boot_compares_with_what_was_stored() -> None:
    fresh = LockMachine()
    step = fresh.observe_lock(BusLock.LOCKED, None)  # nothing stored: remember, no event
    assert (step.events, step.status, step.state, step.moved) == (
        [], True, {LOCK_KEY: "LOCKED"}, None
    )
    same = LockMachine()
    step = same.observe_lock(BusLock.LOCKED, "LOCKED")  # as it was: nothing to say
    assert (step.events, step.status, step.moved) == ([], False, None)
    moved = LockMachine()
    step = moved.observe_lock(BusLock.OPEN, "LOCKED")  # opened by hand while off
    assert step.moved is BusLock.OPEN
    assert moved.set(step.moved, LockCause.MANUAL) == (True, Unlocked(0, LockCause.MANUAL, None,
                                                                      None))
    assert moved.lock_state is BusLock.OPEN and not moved.parked


def test_jammed_is_a_fault_once_then_recovers() -> None:
    m = LockMachine(lock_state=BusLock.LOCKED)
    step = m.observe_lock(BusLock.JAMMED, None)
    assert step.events == [BoardFault(0, "lock jammed")] and step.status
    assert m.observe_lock(BusLock.JAMMED, None).events == []
    assert m.wire_lock() is LockState.JAMMED and m.fault_text() == "lock jammed"
    assert device_state(m, maintenance=False, moving=False, speed_kmh=None) is DeviceState.FAULT
    step = m.observe_lock(BusLock.LOCKED, None)
    assert step.events == [BoardRecovered(0)] and step.moved is None
    assert m.wire_lock() is LockState.LOCKED


def test_a_silent_lock_box_is_a_fault_after_a_few_polls() -> None:
    m = LockMachine()
    for _ in range(FAULT_AFTER - 1):
        assert m.poll_failed("no answer").events == []
    step = m.poll_failed("no answer")
    assert step.events == [BoardFault(0, "lock box: no answer")] and step.status
    assert m.poll_failed("no answer").events == []  # once
    assert m.fault_text() == "lock box not answering"
    assert m.poll_answered().events == [BoardRecovered(0)]
    assert m.poll_answered().events == []


def test_chain_events_across_a_reboot() -> None:
    m = LockMachine()
    step = m.observe_chain(True, int(ChainType.CABLE), "1:0")  # the cable went in while off
    assert step.events == [ChainTypeChanged(ChainType.CABLE)]
    assert step.state == {CHAIN_KEY: f"1:{int(ChainType.CABLE)}"}
    assert m.observe_chain(True, int(ChainType.CABLE), None).events == []
    assert m.observe_chain(False, int(ChainType.CABLE), None).events == [ChainRemoved()]
    assert m.observe_chain(True, int(ChainType.STANDARD), None).events == [
        ChainInserted(ChainType.STANDARD)
    ]
    fresh = LockMachine()
    step = fresh.observe_chain(True, 250, None)  # unknown type, nothing stored
    assert step.events == [] and step.state is not None and fresh.chain_types_unknown == 1


def test_set_says_each_change_once() -> None:
    m = LockMachine(lock_state=BusLock.OPEN)
    assert m.set(BusLock.LOCKED, LockCause.COMMAND, CID) == (True, Locked(0, LockCause.COMMAND,
                                                                          CID))
    assert m.set(BusLock.LOCKED, LockCause.COMMAND, CID) == (False, None)
    m.set(BusLock.OPEN, LockCause.COMMAND)
    assert m.set(BusLock.LOCKED, LockCause.AUTO_RELOCK, silent=True) == (True, None)


def test_device_state_order() -> None:
    m = LockMachine(lock_state=BusLock.OPEN)
    assert device_state(m, maintenance=True, moving=True, speed_kmh=20) is DeviceState.MAINTENANCE
    assert device_state(m, maintenance=False, moving=False, speed_kmh=12) is DeviceState.RIDING
    assert device_state(m, maintenance=False, moving=True, speed_kmh=None) is DeviceState.RIDING
    assert device_state(m, maintenance=False, moving=False, speed_kmh=2) is DeviceState.UNLOCKED
    m.set(BusLock.LOCKED, LockCause.MANUAL)
    assert device_state(m, maintenance=False, moving=True, speed_kmh=9) is DeviceState.LOCKED


def test_unlock_window_relocks_only_a_vehicle_nobody_took() -> None:
    m = LockMachine(lock_state=BusLock.OPEN, chain=(True, int(ChainType.STANDARD)))
    assert relock_when_window_ends(m, moved=False, riding=False)
    assert not relock_when_window_ends(m, moved=True, riding=False)
    assert not relock_when_window_ends(m, moved=False, riding=True)
    m.observe_chain(False, int(ChainType.STANDARD), None)
    assert not relock_when_window_ends(m, moved=False, riding=False)  # chain taken out
    closed = LockMachine(lock_state=BusLock.LOCKED, chain=(True, 0))
    assert not relock_when_window_ends(closed, moved=False, riding=False)


def test_offline_badge_rules() -> None:
    locked = LockMachine(lock_state=BusLock.LOCKED)
    assert offline_unlock_allowed(locked, authorized=True, maintenance=False)
    assert not offline_unlock_allowed(locked, authorized=False, maintenance=False)
    assert not offline_unlock_allowed(locked, authorized=True, maintenance=True)
    assert not offline_unlock_allowed(LockMachine(), authorized=True, maintenance=False)
