"""The spot state machine without a bus: reports and actions in, events and states out."""

from __future__ import annotations

import json

import pytest

from kickstand.edge.core.errors import CommandRefused
from kickstand.edge.station.spots import (
    LOCK_DID_NOT_CLOSE,
    LOCK_DID_NOT_OPEN,
    UNKNOWN_SERIAL,
    SpotRecord,
    Thresholds,
    offline_spot,
)
from kickstand.protocol.spotbus import BusLock, SpotReport
from kickstand.protocol.v1.enums import LockCause, LockState, RejectReason, SpotState
from kickstand.protocol.v1.messages import (
    AlarmTriggered,
    BoardFault,
    BoardRecovered,
    Locked,
    SpotIdentifyFail,
    Temperature,
    Unlocked,
    UnlockExpired,
    VehicleDocked,
    VehicleRemoved,
)

LIMITS = Thresholds(temperature_high_c=60.0, temperature_clear_c=55.0)
CID = bytes(range(16))


def report(lock: BusLock = BusLock.LOCKED, present: bool = True, serial: str | None = "XY123456",
           temperature: float = 20.0, **flags: bool) -> SpotReport:
    return SpotReport(lock, present, temperature, serial if present else None, **flags)


def docked(n: int = 3) -> SpotRecord:
    spot = SpotRecord(n)
    spot.report(report(), 0, LIMITS)
    return spot


def test_a_vehicle_docks_locked() -> None:
    spot = SpotRecord(3)
    assert spot.state is SpotState.EMPTY
    events, expired = spot.report(report(), 0, LIMITS)
    assert events == [VehicleDocked(3, "XY123456"), Locked(3, LockCause.DOCKING)]
    assert not expired and spot.state is SpotState.DOCKED_LOCKED
    assert spot.status().lock is LockState.LOCKED and spot.status().serial_number == "XY123456"
    assert spot.report(report(), 1000, LIMITS) == ([], False)  # nothing new: nothing said


def test_an_unreadable_serial_then_a_readable_one() -> None:
    spot = SpotRecord(1)
    events, _ = spot.report(report(serial=None), 0, LIMITS)
    assert events == [SpotIdentifyFail(1), Locked(1, LockCause.DOCKING)]
    events, _ = spot.report(report(), 0, LIMITS)
    assert events == [VehicleDocked(1, "XY123456")]


def test_docked_but_not_closed_is_a_fault_until_the_board_reads_it_closed() -> None:
    spot = SpotRecord(2)
    events, _ = spot.report(report(BusLock.OPEN), 0, LIMITS)
    assert events[-1] == BoardFault(2, LOCK_DID_NOT_CLOSE) and spot.state is SpotState.FAULT
    events, _ = spot.report(report(BusLock.LOCKED), 0, LIMITS)
    assert events == [BoardRecovered(2)] and spot.state is SpotState.DOCKED_LOCKED


def test_removed_while_locked_raises_the_alarm() -> None:
    spot = docked()
    events, _ = spot.report(report(present=False), 0, LIMITS)
    assert events == [VehicleRemoved(3, "XY123456"),
                      AlarmTriggered("spot 3: vehicle removed while locked")]
    assert spot.state is SpotState.EMPTY and spot.serial is None


def test_unlock_then_removal_carries_the_command_no_alarm() -> None:
    spot = docked()
    spot.check_unlockable(station_maintenance=False)
    assert spot.opened(30_000, LockCause.COMMAND, CID) == [
        Unlocked(3, LockCause.COMMAND, CID, None)
    ]
    assert spot.state is SpotState.UNLOCKED_AWAITING_REMOVAL
    events, expired = spot.report(report(BusLock.OPEN, present=False), 10_000, LIMITS)
    assert events == [VehicleRemoved(3, "XY123456", badge_uid=None, command_id=CID)]
    assert not expired and spot.unlock is None


def test_the_window_runs_out_unlock_expired_then_relocked() -> None:
    spot = docked()
    spot.opened(30_000, LockCause.OFFLINE_BADGE, None, b"\x04\x01\x02\x03")
    assert spot.report(report(BusLock.OPEN), 29_999, LIMITS) == ([], False)
    _, expired = spot.report(report(BusLock.OPEN), 30_000, LIMITS)
    assert expired
    assert spot.window_expired() == [UnlockExpired(3, None, b"\x04\x01\x02\x03")]
    spot.relocked()
    assert spot.state is SpotState.DOCKED_LOCKED and spot.lock is BusLock.LOCKED
    # a relock that failed: FAULT, "lock did not close"
    spot.opened(1, LockCause.COMMAND, CID)
    spot.window_expired()
    assert spot.relock_failed() == [BoardFault(3, LOCK_DID_NOT_CLOSE)]
    assert spot.state is SpotState.FAULT


def test_a_latch_that_did_not_open_is_a_fault_until_a_lock_command() -> None:
    spot = docked()
    spot.unlocking = True
    assert spot.state is SpotState.UNLOCKING
    assert spot.latch_did_not_open(BusLock.LOCKED) == [BoardFault(3, LOCK_DID_NOT_OPEN)]
    assert spot.state is SpotState.FAULT
    # reading closed proves nothing for a latch that would not open
    assert spot.report(report(), 0, LIMITS) == ([], False) and spot.state is SpotState.FAULT
    assert spot.locked_by_command(CID) == [Locked(3, LockCause.COMMAND, CID), BoardRecovered(3)]
    assert spot.state is SpotState.DOCKED_LOCKED


def test_board_silence_one_fault_then_recovery() -> None:
    spot = docked()
    spot.info_read = True
    assert spot.board_failed("no answer") == [BoardFault(3, "no answer")]
    assert spot.board_failed("no answer") == [] and spot.failures == 2
    assert spot.state is SpotState.FAULT
    assert spot.board_answered() == [BoardRecovered(3)]
    assert spot.failures == 0 and not spot.info_read  # its firmware is read again


def test_unexpected_board_firmware_flagged_once() -> None:
    spot = SpotRecord(1)
    assert spot.board_info("sb-1.0", "sb-1.4") == [
        BoardFault(1, "firmware sb-1.0, expected sb-1.4")
    ]
    assert spot.board_info("sb-1.0", "sb-1.4") == []
    assert spot.board_info("sb-1.4", "sb-1.4") == [BoardRecovered(1)]


def test_temperature_with_hysteresis_and_clamped() -> None:
    spot = docked()
    assert spot.report(report(temperature=61), 0, LIMITS)[0] == [Temperature(3, 61, True)]
    assert spot.report(report(temperature=57), 0, LIMITS)[0] == []
    assert spot.report(report(temperature=55), 0, LIMITS)[0] == [Temperature(3, 55, False)]
    spot.report(report(temperature=3000.0), 0, LIMITS)
    assert spot.temperature_c == 250.0


@pytest.mark.parametrize(
    ("prepare", "reason"),
    [
        (lambda s: setattr(s, "maintenance", True), RejectReason.MAINTENANCE),
        (lambda s: setattr(s, "board_fault", "no answer"), RejectReason.HARDWARE_FAULT),
        (lambda s: setattr(s, "unlocking", True), RejectReason.BUSY),
        (lambda s: s.opened(1, LockCause.COMMAND), RejectReason.BUSY),
        (lambda s: s.report(report(present=False), 0, LIMITS), RejectReason.INVALID_STATE),
    ],
    ids=["maintenance", "fault", "unlocking", "awaiting-removal", "empty"],
)
def test_what_refuses_an_unlock(prepare: object, reason: RejectReason) -> None:
    spot = docked()
    prepare(spot)  # type: ignore[operator]
    with pytest.raises(CommandRefused) as refused:
        spot.check_unlockable(station_maintenance=False)
    assert refused.value.reject_reason is reason


def test_persisted_record_survives_a_restart_runtime_fields_do_not() -> None:
    spot = docked()
    spot.opened(30_000, LockCause.COMMAND, CID)
    spot.unlocking = True
    again = SpotRecord.restore(3, json.loads(spot.persisted()))
    assert (again.present, again.serial, again.unlock) == (True, "XY123456", spot.unlock)
    assert not again.unlocking and again.lock is None
    assert SpotRecord.restore(3, {"unlock": {"nonsense": 1}}) == SpotRecord(3)


def test_offline_badge_opens_the_lowest_docked_identified_spot() -> None:
    empty, unknown, first, second = SpotRecord(1), SpotRecord(2), docked(3), docked(4)
    unknown.report(report(serial=None), 0, LIMITS)
    assert offline_spot([second, empty, unknown, first], station_maintenance=False) is first
    assert offline_spot([second, first], station_maintenance=True) is None
    assert offline_spot([empty, unknown], station_maintenance=False) is None


def test_removed_serial_never_read() -> None:
    spot = SpotRecord(5)
    spot.report(report(serial=None), 0, LIMITS)
    events, _ = spot.report(report(present=False), 0, LIMITS)
    assert events[0] == VehicleRemoved(5, UNKNOWN_SERIAL)
