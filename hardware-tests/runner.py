"""Runs the steps of a suite: outcome, measurements, prompts, progress on the console.

A step is an ``async def step(s: StepContext) -> None``. It records measurements with
``s.check(...)`` (a value beside its limit) or ``s.measure(...)`` (informative), ends
early with ``s.fail(...)`` / ``s.skip(...)``, and asks a person for something with
``await s.person(...)``. A step whose checks failed fails with their summary plus its
``hint`` (what a technician should look at).
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from kickstand.rigs.errors import StepFailed, StepSkipped
from kickstand.rigs.results import Measurement, Outcome, RunReport, StepResult

T = TypeVar("T")


class Mode(enum.Enum):
    INTERACTIVE = "interactive"  # prompt the technician and wait
    UNATTENDED = "unattended"  # skip steps that need a person
    SIMULATED = "simulated"  # the simulator does what the person would


_ICON = {Outcome.PASSED: "[green]PASS[/]", Outcome.FAILED: "[bold red]FAIL[/]",
         Outcome.SKIPPED: "[yellow]SKIP[/]"}


@dataclass(slots=True)
class StepContext:
    result: StepResult
    mode: Mode
    console: Console
    person_timeout_s: float
    hint: str = ""
    deadline: asyncio.Timeout | None = None  # the step's own budget, paused for people

    # -------------------------------------------------------------- measurements

    def measure(self, name: str, value: Any, unit: str = "", limit: str | None = None) -> None:
        self.result.measurements.append(Measurement(name, value, limit, unit, None))

    def check(
        self, name: str, value: Any, *, low: float | None = None, high: float | None = None,
        equals: Any = None, unit: str = "",
    ) -> bool:
        """Record ``value`` against its limit; False (and the step will fail) if outside."""
        if equals is not None:
            ok = value == equals
            limit = f"= {equals}"
        else:
            ok = value is not None and (low is None or value >= low) and \
                (high is None or value <= high)
            if low is not None and high is not None:
                limit = f"{low:g}..{high:g}"
            elif high is not None:
                limit = f"<= {high:g}"
            elif low is not None:
                limit = f">= {low:g}"
            else:
                limit = None
            if limit and unit:
                limit += f" {unit}"
        self.result.measurements.append(Measurement(name, value, limit, unit, ok))
        return ok

    def fail(self, message: str) -> NoReturn:
        raise StepFailed(message)

    def skip(self, reason: str) -> NoReturn:
        raise StepSkipped(reason)

    # -------------------------------------------------------------- people

    def needs_person(self, instruction: str) -> None:
        """Skip now (before anything moves) if nobody is at the bench."""
        if self.mode is Mode.UNATTENDED:
            self.skip(f"needs a person at the bench ({instruction}); run without --unattended")

    async def person(
        self,
        instruction: str,
        *,
        until: Callable[[], Awaitable[T]],
        simulate: Callable[[], Any] | None = None,
        timeout_s: float | None = None,
        missing: str = "",
    ) -> T:
        """Have ``instruction`` done and wait for ``until()`` to see it done.

        Interactive: prompt and wait up to ``timeout_s``. Unattended: skip the step.
        Simulated: ``simulate()`` plays the person (a sync or async callable).
        ``missing`` is the failure message when nothing is seen in time.
        """
        timeout = self.person_timeout_s if timeout_s is None else timeout_s
        self.needs_person(instruction)
        loop = asyncio.get_running_loop()
        # Time spent waiting for a person does not count against the step's own budget.
        budget_end = self.deadline.when() if self.deadline is not None else None
        if self.deadline is not None and budget_end is not None:
            self.deadline.reschedule(budget_end + timeout + 5.0)
        asked = loop.time()
        waiter = asyncio.ensure_future(until())
        try:
            if self.mode is Mode.SIMULATED:
                if simulate is None:
                    self.skip(f"the simulator cannot do this: {instruction}")
                done = simulate()
                if asyncio.iscoroutine(done):
                    await done
            else:
                self.console.print(Panel(
                    f"[bold]{escape(instruction)}[/]\n[dim]waiting up to {timeout:.0f} s…[/]",
                    title="technician", border_style="cyan",
                ))
            try:
                async with asyncio.timeout(timeout):
                    return await waiter
            except TimeoutError:
                self.fail(missing or f"nothing seen within {timeout:.0f} s: {instruction}")
        finally:
            waiter.cancel()
            if self.deadline is not None and budget_end is not None:
                self.deadline.reschedule(budget_end + loop.time() - asked)


def _out_of_limit(m: Measurement) -> str:
    limit = m.limit or ""
    if limit.startswith("= "):
        return f"{m.name} {m.value_text()} (expected {limit[2:]})"
    return f"{m.name} {m.value_text()} (limit {limit})"


StepFn = Callable[[StepContext], Awaitable[None]]


class SuiteRunner:
    def __init__(
        self, report: RunReport, *, mode: Mode, console: Console, person_timeout_s: float
    ) -> None:
        self.report = report
        self.mode = mode
        self.console = console
        self.person_timeout_s = person_timeout_s
        self.planned = 0  # steps the suite will run, for the progress display

    def passed(self, *step_ids: str) -> bool:
        ids = set(step_ids)
        return all(s.passed for s in self.report.steps if s.id in ids) and \
            ids <= {s.id for s in self.report.steps}

    def failed(self, step_id: str) -> bool:
        """``step_id`` ran and failed (its fix item is in the report)."""
        return any(s.id == step_id and s.outcome is Outcome.FAILED for s in self.report.steps)

    async def step(
        self,
        step_id: str,
        title: str,
        fn: StepFn,
        *,
        timeout_s: float,
        requires: Iterable[str] = (),
        hint: str = "",
    ) -> StepResult:
        """Run one step and record its result.

        ``timeout_s`` bounds the step's own work; time spent waiting for a person (each
        prompt up to ``person_timeout_s``) is added to it.
        """
        result = StepResult(step_id, title)
        self.report.steps.append(result)
        ctx = StepContext(result, self.mode, self.console, self.person_timeout_s, hint)
        blocked = [r for r in requires if not self.passed(r)]
        started = time.monotonic()
        if blocked:
            names = ", ".join(self._title(r) for r in blocked)
            result.outcome, result.message = Outcome.SKIPPED, f"not run: {names} did not pass"
        else:
            counter = f"[{len(self.report.steps)}/{self.planned}] " if self.planned else ""
            with self.console.status(f"{counter}{escape(title)}…", spinner="dots"):
                try:
                    async with asyncio.timeout(timeout_s) as deadline:
                        ctx.deadline = deadline
                        await fn(ctx)
                    bad = [m for m in result.measurements if m.ok is False]
                    if bad:
                        text = "; ".join(_out_of_limit(m) for m in bad)
                        raise StepFailed(f"{text}. {ctx.hint}".strip() if ctx.hint else text)
                except StepFailed as exc:
                    result.outcome, result.message = Outcome.FAILED, exc.message
                except StepSkipped as exc:
                    result.outcome, result.message = Outcome.SKIPPED, exc.reason
                except TimeoutError:
                    result.outcome = Outcome.FAILED
                    result.message = f"step did not finish within {timeout_s:.0f} s. {hint}"
                except Exception as exc:  # a broken step is a failed step, not a dead rig
                    result.outcome = Outcome.FAILED
                    result.message = f"rig error: {type(exc).__name__}: {exc}"
                except asyncio.CancelledError:
                    result.outcome, result.message = Outcome.SKIPPED, "interrupted"
                    result.duration_s = time.monotonic() - started
                    raise
        result.duration_s = time.monotonic() - started
        self._show(result)
        return result

    def _title(self, step_id: str) -> str:
        for s in self.report.steps:
            if s.id == step_id:
                return s.title
        return step_id

    def _show(self, r: StepResult) -> None:
        values = ", ".join(
            f"{m.name} {m.value_text()}" + (f" [{m.limit}]" if m.limit else "")
            for m in r.measurements
        )
        line = f"{_ICON[r.outcome]} {escape(r.title)} [dim]({r.duration_s:.1f} s)[/]"
        self.console.print(line, highlight=False)
        if values:
            self.console.print(f"     [cyan]{escape(values)}[/]", highlight=False)
        if r.message:
            style = "red" if not r.passed else "yellow"
            self.console.print(f"     {escape(r.message)}", style=style, highlight=False)
