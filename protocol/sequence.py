"""Dedupe and gap detection on (device, boot id, seq).

A device stamps every queued message with its boot id and a sequence number
that grows by one per message within that boot. The queue replays after a
reconnect, so the cloud sees some messages twice; this tracker says which
ones are new. It keeps, per (device, boot), the highest contiguous seq seen
and the few seen above it, so memory stays bounded whatever arrives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

WINDOW = 4096  # seqs kept above the contiguous mark before the oldest gaps are given up


class Verdict(Enum):
    NEW = "new"
    DUPLICATE = "duplicate"


@dataclass(slots=True)
class BootSequence:
    contiguous: int = 0  # every seq <= this was seen (or declared delivered by a birth)
    above: set[int] = field(default_factory=set)
    gaps_abandoned: int = 0

    def accept(self, seq: int) -> Verdict:
        if seq <= self.contiguous or seq in self.above:
            return Verdict.DUPLICATE
        if seq == self.contiguous + 1:
            self.contiguous = seq
            self._settle()
        else:
            self.above.add(seq)
            if len(self.above) > WINDOW:
                # Give up on the oldest gap: its message is lost or was thinned.
                lowest = min(self.above)
                self.gaps_abandoned += lowest - self.contiguous - 1
                self.contiguous = lowest
                self.above.discard(lowest)
                self._settle()
        return Verdict.NEW

    def _settle(self) -> None:
        while self.contiguous + 1 in self.above:
            self.contiguous += 1
            self.above.discard(self.contiguous)

    def delivered_below(self, pending_from: int) -> None:
        """A birth says everything below ``pending_from`` was delivered or thinned."""
        if pending_from - 1 > self.contiguous:
            self.contiguous = pending_from - 1
            self.above = {s for s in self.above if s > self.contiguous}
            self._settle()

    @property
    def missing(self) -> list[int]:
        """Seqs not seen between the contiguous mark and the highest seen (a gap)."""
        if not self.above:
            return []
        top = max(self.above)
        return [s for s in range(self.contiguous + 1, top) if s not in self.above]


class SequenceTracker:
    """Per-device, per-boot sequence state; keeps the last ``boots_kept`` boots of each device."""

    def __init__(self, boots_kept: int = 4) -> None:
        self._boots: dict[str, dict[int, BootSequence]] = {}
        self._boots_kept = boots_kept

    def boot(self, device_id: str, boot_id: int) -> BootSequence:
        boots = self._boots.setdefault(device_id, {})
        seqs = boots.get(boot_id)
        if seqs is None:
            if len(boots) >= self._boots_kept:
                del boots[next(iter(boots))]  # oldest boot first: dicts keep insertion order
            seqs = boots[boot_id] = BootSequence()
        return seqs

    def accept(self, device_id: str, boot_id: int, seq: int) -> Verdict:
        return self.boot(device_id, boot_id).accept(seq)
