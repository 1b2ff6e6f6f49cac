"""The vehicle's lock state machine and its trip-facing rules, apart from the lock box's I/O.

Pure: no bus, no queue, no clock. The agent polls the lock box (status, chain), drives it
(UNLOCK, LOCK) and hands each outcome here; what comes back says what to tell the cloud
and what to remember. Tested without hardware (``tests/edge/vehicle/test_lock_machine.py``).

    lock_state   LOCKED or OPEN: the last definite state (None: not read yet this boot)
    jammed       the box reports its lock jammed (a fault, not a lock state)
    chain        (inserted, ChainType) as last read (None: not read yet this boot)
    fault        the box stopped answering (``FAULT_AFTER`` polls in a row)

After a (re)boot the first reading is compared with what the last boot stored (the
``vehicle.lock`` / ``vehicle.chain`` device state, written with the event that changed
it), so a change that happened while the controller was off is reported, and one that
did not is not reported twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kickstand.protocol.spotbus import BusLock
from kickstand.protocol.v1.enums import ChainType, DeviceState, LockCause, LockState
from kickstand.protocol.v1.fields import fit_text
from kickstand.protocol.v1.messages import (
    BoardFault,
    BoardRecovered,
    ChainInserted,
    ChainRemoved,
    ChainTypeChanged,
    Locked,
    Unlocked,
    UpBody,
)

LOCK_KEY = "vehicle.lock"  # device state: the BusLock name, written with its event
CHAIN_KEY = "vehicle.chain"  # "<inserted 0|1>:<ChainType>"
FAULT_AFTER = 3  # consecutive unanswered polls before a BoardFault
RIDING_KMH = 3.0  # faster than this (GPS) counts as riding
LOCK_STATE = {BusLock.LOCKED: LockState.LOCKED, BusLock.OPEN: LockState.OPEN,
              BusLock.JAMMED: LockState.JAMMED}


@dataclass(slots=True)
class Step:
    """What a transition asks of the agent: store ``events`` (then the status when
    ``status``) with ``state``; ``moved`` is set when the lock changed by itself (the
    agent then records the change as it records its own: :meth:`LockMachine.set`)."""

    events: list[UpBody] = field(default_factory=list)
    status: bool = False
    state: dict[str, str] | None = None
    moved: BusLock | None = None


@dataclass(slots=True)
class LockMachine:
    lock_state: BusLock | None = None
    jammed: bool = False
    chain: tuple[bool, int] | None = None
    failures: int = 0
    fault: bool = False
    chain_types_unknown: int = 0

    @property
    def parked(self) -> bool:
        return self.lock_state is BusLock.LOCKED or self.lock_state is None

    @property
    def chain_in(self) -> bool:
        return self.chain is not None and self.chain[0]

    def fault_text(self) -> str | None:
        if self.jammed:
            return "lock jammed"
        if self.fault:
            return "lock box not answering"
        return None

    def wire_lock(self) -> LockState | None:
        if self.jammed:
            return LockState.JAMMED
        return LOCK_STATE.get(self.lock_state) if self.lock_state is not None else None

    # ---------------------------------------------------------------- the box answers or not

    def poll_failed(self, reason: str) -> Step:
        self.failures += 1
        if self.failures < FAULT_AFTER or self.fault:
            return Step()
        self.fault = True
        return Step([BoardFault(0, fit_text(f"lock box: {reason}", 64))], status=True)

    def poll_answered(self) -> Step:
        self.failures = 0
        if not self.fault:
            return Step()
        self.fault = False
        return Step([BoardRecovered(0)], status=True)

    def observe_lock(self, lock: BusLock, stored: str | None) -> Step:
        """A lock reading; ``stored`` is what the last boot left (read on the first one)."""
        if lock is BusLock.JAMMED:
            if self.jammed:
                return Step()
            self.jammed = True
            return Step([BoardFault(0, "lock jammed")], status=True)
        step = Step()
        if self.jammed:
            self.jammed = False
            step = Step([BoardRecovered(0)], status=True)
        if self.lock_state is None:
            if stored is None or stored not in BusLock.__members__:
                self.lock_state = lock
                return Step(step.events, status=True, state={LOCK_KEY: lock.name})
            self.lock_state = BusLock[stored]
        if lock is not self.lock_state:
            step.moved = lock
        return step

    def observe_chain(self, inserted: bool, code: int, stored: str | None) -> Step:
        """A chain reading: ChainInserted / ChainRemoved / ChainTypeChanged on a change."""
        try:
            chain_type = ChainType(code)
        except ValueError:
            self.chain_types_unknown += 1
            chain_type = ChainType.STANDARD
        previous = self.chain
        self.chain = (inserted, int(chain_type))
        state = {CHAIN_KEY: f"{int(inserted)}:{int(chain_type)}"}
        if previous is None:
            try:
                was, _, kind = (stored or "").partition(":")
                previous = (bool(int(was)), int(kind))
            except ValueError:
                return Step(state=state)  # nothing to compare with: remember, say nothing
        if previous == self.chain:
            return Step()
        was_in, old_type = previous
        event: UpBody | None = None
        if was_in and not inserted:
            event = ChainRemoved()
        elif inserted and not was_in:
            event = ChainInserted(chain_type)
        elif inserted and old_type != int(chain_type):
            event = ChainTypeChanged(chain_type)
        return Step([event] if event is not None else [], state=state)

    # ---------------------------------------------------------------- the lock moves

    def set(
        self,
        lock: BusLock,
        cause: LockCause,
        command_id: bytes | None = None,
        badge_uid: bytes | None = None,
        *,
        silent: bool = False,
    ) -> tuple[bool, UpBody | None]:
        """The lock is now ``lock``: whether that is a change, and its event (None when
        ``silent``: an automatic relock says UnlockExpired instead)."""
        previous = self.lock_state
        self.lock_state = lock
        if lock is previous:
            return False, None
        if silent:
            return True, None
        if lock is BusLock.LOCKED:
            return True, Locked(0, cause, command_id)
        return True, Unlocked(0, cause, command_id, badge_uid)


def device_state(
    machine: LockMachine, *, maintenance: bool, moving: bool, speed_kmh: float | None
) -> DeviceState:
    """The vehicle's Status state: maintenance, fault, locked, riding or unlocked."""
    if maintenance:
        return DeviceState.MAINTENANCE
    if machine.jammed or machine.fault:
        return DeviceState.FAULT
    if machine.lock_state is BusLock.LOCKED:
        return DeviceState.LOCKED
    if moving or (speed_kmh or 0) > RIDING_KMH:
        return DeviceState.RIDING
    return DeviceState.UNLOCKED


def relock_when_window_ends(machine: LockMachine, *, moved: bool, riding: bool) -> bool:
    """At the end of an unlock window: nobody took the vehicle (still open, chain still in,
    not moved, not riding), so the lock closes again and the trip does not start."""
    return machine.lock_state is BusLock.OPEN and machine.chain_in and not moved and not riding


def offline_unlock_allowed(machine: LockMachine, *, authorized: bool, maintenance: bool) -> bool:
    """Offline, a badge in the local list opens a locked vehicle not in maintenance."""
    return authorized and not maintenance and machine.lock_state is BusLock.LOCKED
