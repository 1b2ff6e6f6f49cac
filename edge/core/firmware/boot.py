"""The bootloader step (SPEC §13.6): which slot this start runs, before the agent starts.

An agent's ``__main__`` calls :func:`boot` first. With a pending slot it counts one trial
attempt and runs that slot; a trial that was not confirmed falls back to the active slot.
A chosen slot with an image (``root``) runs in a process whose ``PYTHONPATH`` starts with it
(:func:`slot_environment`; :func:`exec_into` replaces the process), so the slot's package
shadows the factory install; no root: the factory install runs.

    python -m kickstand.edge.core.firmware.boot --state-dir ./state   # prints the choice
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from kickstand.edge.core.firmware.errors import SlotError
from kickstand.edge.core.firmware.slots import DEFAULT_TRIAL_S, SlotChoice, Slots

log = logging.getLogger("kickstand.edge.core.firmware.boot")

SLOT_ENV = "KICKSTAND_SLOT_ROOT"
#: The PYTHONPATH before the bootloader step put a slot in front ("" when there was none).
BASE_PATH_ENV = "KICKSTAND_BASE_PYTHONPATH"


def boot(state_dir: Path, *, trial_s: float = DEFAULT_TRIAL_S) -> SlotChoice:
    """The slot this start runs. In a process already started into its slot (the
    environment names it), the choice is not made again: that would spend a trial. A boot
    record that cannot be read starts the factory install (the device must come up and
    say so; an update then fails on the same record, reported)."""
    slots = Slots(state_dir, trial_s=trial_s)
    try:
        return slots.running() if os.environ.get(SLOT_ENV) else slots.choose()
    except SlotError as exc:
        log.error("boot_record_unusable error=%s: starting the factory install", exc)
        return SlotChoice("a", None, None)


def slot_environment(choice: SlotChoice, base: dict[str, str] | None = None) -> dict[str, str]:
    env = factory_environment(os.environ if base is None else base)
    if choice.root is not None:
        path = env.get("PYTHONPATH")
        env[BASE_PATH_ENV] = path or ""
        env["PYTHONPATH"] = f"{choice.root}{os.pathsep}{path}" if path else str(choice.root)
        env[SLOT_ENV] = str(choice.root)
    return env


def factory_environment(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` as it was before a bootloader step chose a slot: what a restart starts from
    (the next step chooses again; a process that kept the slot's variables would take the
    old slot for the new choice and never run a pending one)."""
    out = dict(env)
    if SLOT_ENV in out:
        del out[SLOT_ENV]
        base = out.pop(BASE_PATH_ENV, "")
        if base:
            out["PYTHONPATH"] = base
        else:
            out.pop("PYTHONPATH", None)
    return out


def exec_into(choice: SlotChoice, module: str, argv: Sequence[str]) -> None:
    """Replace this process by ``python -m module argv`` running from the chosen slot;
    returns without doing anything when the factory install is chosen or already running
    from the slot."""
    if choice.root is None or os.environ.get(SLOT_ENV) == str(choice.root):
        return
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], slot_environment(choice))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--trial-s", type=float, default=DEFAULT_TRIAL_S)
    args = parser.parse_args(argv)
    choice = boot(args.state_dir, trial_s=args.trial_s)
    print(json.dumps({"slot": choice.slot, "root": str(choice.root) if choice.root else None,
                      "version": choice.version, "trial": choice.trial,
                      "deadline": choice.deadline}))


if __name__ == "__main__":
    main()
