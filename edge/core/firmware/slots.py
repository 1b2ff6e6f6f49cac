"""A/B slots on disk and the boot record that says which one runs (SPEC §13.6).

Layout under ``<state_dir>/slots/``::

    boot.json          the boot record (below), replaced atomically, never edited in place
    update.json        the update under way (command, version, stage) until it fails or
                       switches: found at a start, it was cut by a restart (a power cut)
    a/ b/              one slot each: root/ (the unpacked image), slot.json (its manifest's
                       target, version, sha256), image.part (a download in progress)

An update only ever writes the **inactive** slot; the switch is one atomic rename of
``boot.json`` that names it *pending*. A start with a pending slot runs it on **trial** (one
attempt, a confirm deadline); the trial's agent confirms it (active := pending) once it has
reached the cloud and passed its self-check. A start that finds the trial's attempt spent,
or a trial that fails its self-check, falls back to the active slot and records a
ROLLED_BACK report. So a power cut anywhere leaves a bootable slot: before the rename the
active slot is untouched, after it an unconfirmed trial falls back.

A device fresh from the factory has no ``boot.json``: slot ``a`` is active and has no
``root`` — the agent runs from its installed package (``SlotChoice.root`` is None).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kickstand.edge.core.firmware.errors import FirmwareError, SlotError
from kickstand.edge.core.firmware.image import ImageInfo, unpack
from kickstand.protocol.firmware import Manifest
from kickstand.protocol.v1.enums import FirmwareState, RejectReason

log = logging.getLogger("kickstand.edge.core.firmware.slots")

SLOT_NAMES = ("a", "b")
RECORD = "boot.json"
UPDATE = "update.json"
DEFAULT_TRIAL_S = 300.0
HASH_CHUNK = 256 * 1024


@dataclass(slots=True)
class Report:
    """A FirmwareStatus owed to the cloud across a restart (CONFIRMED, ROLLED_BACK)."""

    state: str  # a FirmwareState name
    version: str
    reason: str = ""
    command_id: str = ""  # hex: the FirmwareUpdate this ends, for its CommandResult

    @property
    def firmware_state(self) -> FirmwareState:
        return FirmwareState[self.state]


@dataclass(slots=True)
class BootRecord:
    active: str = "a"
    pending: str | None = None
    attempts: int = 0  # starts of the pending slot so far
    max_attempts: int = 1
    trial_s: float = DEFAULT_TRIAL_S
    confirm_deadline: float | None = None  # unix s: the trial must be confirmed by then
    version: str = ""  # the pending slot's version
    command_id: str = ""  # hex: the FirmwareUpdate that installed the pending slot
    reports: list[Report] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> BootRecord:
        record = cls(**{k: v for k, v in raw.items() if k != "reports"})
        record.reports = [Report(**r) for r in raw.get("reports", [])]
        if record.active not in SLOT_NAMES or record.pending not in (None, *SLOT_NAMES):
            raise ValueError(f"slots {record.active!r}/{record.pending!r}")
        return record


@dataclass(frozen=True, slots=True)
class SlotChoice:
    """What the bootloader step decided: run ``slot`` (its ``root``, None = the factory
    install), on ``trial`` until ``deadline`` (unix s) if it is a pending slot."""

    slot: str
    root: Path | None
    version: str | None  # the slot's image version; None = the factory install
    trial: bool = False
    deadline: float | None = None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` or its previous content, whatever happens (power cut): a
    temporary file, fsync, rename over, fsync of the directory."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.digest()


class Slots:
    def __init__(self, state_dir: Path, *, trial_s: float = DEFAULT_TRIAL_S) -> None:
        self.base = state_dir / "slots"
        self.trial_s = trial_s

    # ---------------------------------------------------------------- the record

    @property
    def record_path(self) -> Path:
        return self.base / RECORD

    def record(self) -> BootRecord:
        try:
            raw = json.loads(self.record_path.read_text())
        except FileNotFoundError:
            return BootRecord(trial_s=self.trial_s)
        except (OSError, ValueError) as exc:
            raise SlotError(f"{self.record_path}: {exc}") from None
        try:
            return BootRecord.from_json(raw)
        except (TypeError, ValueError, KeyError) as exc:
            raise SlotError(f"{self.record_path}: {exc}") from None

    def _write(self, record: BootRecord) -> None:
        try:
            self.base.mkdir(parents=True, exist_ok=True)
            write_atomically(self.record_path, json.dumps(record.to_json(), indent=1).encode())
        except OSError as exc:
            raise SlotError(f"{self.record_path}: {exc}") from None

    # ---------------------------------------------------------------- slots

    def path(self, slot: str) -> Path:
        return self.base / slot

    def inactive(self, record: BootRecord | None = None) -> str:
        active = (record or self.record()).active
        return SLOT_NAMES[1 - SLOT_NAMES.index(active)]

    def slot_info(self, slot: str) -> dict[str, str] | None:
        try:
            raw = json.loads((self.path(slot) / "slot.json").read_text())
        except (OSError, ValueError):
            return None
        return raw if isinstance(raw, dict) else None

    def staging(self, manifest: Manifest) -> Path:
        """Where ``manifest``'s image is downloaded: ``image.part`` of the inactive slot. A
        part of another image there is removed (a resume only continues the same digest)."""
        record = self.record()
        if record.pending is not None:
            raise FirmwareError(
                f"slot {record.pending} is installed and waits for its trial boot",
                FirmwareState.DOWNLOAD_FAILED,
                RejectReason.BUSY,
            )
        slot = self.path(self.inactive(record))
        part, meta = slot / "image.part", slot / "download.json"
        try:
            slot.mkdir(parents=True, exist_ok=True)
            same = meta.exists() and json.loads(meta.read_text()).get("sha256") == (
                manifest.sha256_hex
            )
            if not same:
                part.unlink(missing_ok=True)
                write_atomically(meta, json.dumps({"sha256": manifest.sha256_hex}).encode())
        except (OSError, ValueError) as exc:
            raise FirmwareError(f"slot {slot.name}: {exc}", FirmwareState.DOWNLOAD_FAILED) from None
        return part

    def install(self, manifest: Manifest, part: Path, command_id: bytes = b"") -> ImageInfo:
        """Unpack the downloaded image into the inactive slot and make that slot pending.
        The digest is checked again from the file first (VERIFY_FAILED); the switch is the
        last step, one atomic rename (INSTALL_FAILED before it leaves everything as was)."""
        record = self.record()
        slot = self.inactive(record)
        where = self.path(slot)
        try:
            if part.stat().st_size != manifest.size or file_sha256(part) != manifest.sha256:
                part.unlink(missing_ok=True)
                raise FirmwareError(
                    "image changed on disk since it was downloaded (sha256)",
                    FirmwareState.VERIFY_FAILED,
                    RejectReason.MALFORMED,
                )
            root, fresh = where / "root", where / "root.new"
            for old in (fresh, root):
                shutil.rmtree(old, ignore_errors=True)
            (where / "slot.json").unlink(missing_ok=True)
            info = unpack(part, fresh)
            if info.version != manifest.version or info.target != manifest.target:
                shutil.rmtree(fresh, ignore_errors=True)
                raise FirmwareError(
                    f"image says {info.target} {info.version}, the manifest "
                    f"{manifest.target} {manifest.version}",
                    FirmwareState.INSTALL_FAILED,
                    RejectReason.MALFORMED,
                )
            os.replace(fresh, root)
            slot_info = {
                "target": manifest.target,
                "version": manifest.version,
                "sha256": manifest.sha256_hex,
            }
            write_atomically(where / "slot.json", json.dumps(slot_info).encode())
            part.unlink(missing_ok=True)
            (where / "download.json").unlink(missing_ok=True)
            _fsync_dir(where)
        except OSError as exc:
            raise FirmwareError(f"slot {slot}: {exc}", FirmwareState.INSTALL_FAILED) from None
        record.pending, record.attempts, record.confirm_deadline = slot, 0, None
        record.version, record.command_id = manifest.version, command_id.hex()
        record.trial_s = self.trial_s
        self._write(record)  # the switch: from here a start runs the new slot on trial
        return info

    # ---------------------------------------------------------------- boot and trial

    def choose(self, now: float | None = None) -> SlotChoice:
        """The bootloader step: which slot this start runs (and the record updated for it)."""
        now = time.time() if now is None else now
        record = self.record()
        if record.pending is not None:
            if record.attempts >= record.max_attempts:
                self._roll_back(record, f"not confirmed within {record.trial_s:g} s")
            else:
                record.attempts += 1
                record.trial_s = self.trial_s  # the device's setting at this start
                record.confirm_deadline = now + record.trial_s
                self._write(record)
                return self.choice_of(record.pending, trial=True, deadline=record.confirm_deadline)
        return self.choice_of(record.active)

    def running(self) -> SlotChoice:
        """The choice :meth:`choose` made for this start, read again (nothing spent)."""
        record = self.record()
        if record.pending is not None and record.attempts:
            return self.choice_of(record.pending, trial=True, deadline=record.confirm_deadline)
        return self.choice_of(record.active)

    def choice_of(
        self, slot: str, *, trial: bool = False, deadline: float | None = None
    ) -> SlotChoice:
        """What running ``slot`` means: its root and version (None: the factory install)."""
        info = self.slot_info(slot)
        root = self.path(slot) / "root"
        if info is None or not root.is_dir():
            return SlotChoice(slot, None, None, trial, deadline)
        return SlotChoice(slot, root, info.get("version"), trial, deadline)

    def _roll_back(self, record: BootRecord, reason: str) -> None:
        log.warning("firmware_rolled_back slot=%s version=%s reason=%s",
                    record.pending, record.version, reason)
        record.reports.append(Report("ROLLED_BACK", record.version, reason, record.command_id))
        record.pending, record.attempts, record.confirm_deadline = None, 0, None
        self._write(record)

    def confirm(self) -> Report:
        """The trial slot reached the cloud and passed its self-check: it becomes active."""
        record = self.record()
        if record.pending is None:
            raise SlotError("no slot on trial to confirm")
        report = Report("CONFIRMED", record.version, "", record.command_id)
        record.active, record.pending = record.pending, None
        record.attempts, record.confirm_deadline = 0, None
        record.reports.append(report)
        self._write(record)
        return report

    def fail_trial(self, reason: str) -> None:
        """The trial slot failed (self-check, deadline): the next start runs the active one."""
        record = self.record()
        if record.pending is not None:
            self._roll_back(record, reason)

    def reports(self) -> list[Report]:
        return list(self.record().reports)

    def clear_reports(self, sent: list[Report]) -> None:
        """Forget reports once they are stored in the agent's queue (sent at least once)."""
        record = self.record()
        record.reports = [r for r in record.reports if r not in sent]
        self._write(record)

    # ---------------------------------------------------------------- an update under way

    def begin_update(self, manifest: Manifest, command_id: bytes, stage: FirmwareState) -> None:
        """Note the update and its stage: a start that finds it knows it was cut."""
        note = {"version": manifest.version, "command_id": command_id.hex(), "stage": stage.name}
        try:
            self.base.mkdir(parents=True, exist_ok=True)
            write_atomically(self.base / UPDATE, json.dumps(note).encode())
        except OSError as exc:
            raise SlotError(f"{self.base / UPDATE}: {exc}") from None

    def end_update(self) -> None:
        with contextlib.suppress(OSError):
            (self.base / UPDATE).unlink()

    def interrupted(self) -> Report | None:
        """The update a restart cut before it failed or switched (a power cut mid-way), as
        its *_FAILED report; None when there was none, or when it did switch (the trial or
        its rollback reports it). Forgotten once read."""
        try:
            note = json.loads((self.base / UPDATE).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("firmware_update_note_unreadable error=%s", exc)
            self.end_update()
            return None
        record = self.record()
        command_id = str(note.get("command_id", ""))
        if record.pending is not None and record.command_id == command_id:
            return None  # it switched: the trial (or its rollback) ends it
        self.end_update()
        if any(r.command_id == command_id for r in record.reports):
            return None
        failed = (FirmwareState.INSTALL_FAILED if note.get("stage") == "INSTALLING"
                  else FirmwareState.DOWNLOAD_FAILED)
        stage = str(note.get("stage", "")).lower()
        return Report(failed.name, str(note.get("version", "")),
                      f"interrupted by a restart while {stage} (power cut?)", command_id)

    def discard_staging(self) -> None:
        """Remove a partial download (a corrupt one must not be resumed)."""
        slot = self.path(self.inactive())
        for name in ("image.part", "download.json"):
            with contextlib.suppress(OSError):
                (slot / name).unlink()
