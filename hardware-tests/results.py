"""What a rig run produces: steps with their outcome and measured values beside the limits."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any


class Outcome(enum.StrEnum):
    PASSED = "pass"
    FAILED = "fail"
    SKIPPED = "skip"


@dataclass(slots=True)
class Measurement:
    """One measured value; ``limit`` as text ("<= 3.0 s", "sb-1.4.2", "15..55 °C")."""

    name: str
    value: Any
    limit: str | None = None
    unit: str = ""
    ok: bool | None = None  # None: informative only

    def value_text(self) -> str:
        if isinstance(self.value, float):
            text = f"{self.value:.3g}" if abs(self.value) < 1000 else f"{self.value:.0f}"
        else:
            text = "—" if self.value is None else str(self.value)
        return f"{text} {self.unit}".strip()


@dataclass(slots=True)
class StepResult:
    id: str  # stable, for tools: "spot2.lock_cycle"
    title: str  # for people: "Spot 2: lock cycle"
    outcome: Outcome = Outcome.PASSED
    message: str = ""  # failure: what was wrong and what to check; skip: why
    measurements: list[Measurement] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASSED


@dataclass(slots=True)
class RunReport:
    kind: str  # "station" | "vehicle"
    device_id: str
    serial: str  # names the report files
    started_at: datetime
    simulated: bool
    unattended: bool
    rig: str  # the rig description's path, or "simulated"
    finished_at: datetime | None = None
    steps: list[StepResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    agent_log: Path | None = None
    complete: bool = True  # False: interrupted before its last step

    def counts(self) -> dict[Outcome, int]:
        out = dict.fromkeys(Outcome, 0)
        for step in self.steps:
            out[step.outcome] += 1
        return out

    @property
    def failed(self) -> list[StepResult]:
        return [s for s in self.steps if s.outcome is Outcome.FAILED]

    @property
    def ok(self) -> bool:
        return self.complete and not self.failed

    def step(self, step_id: str) -> StepResult:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)
