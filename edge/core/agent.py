"""One edge-agent framework: what every agent does, written once.

    class StationAgent(EdgeAgent[StationSettings]):
        kind = DeviceKind.STATION
        def jobs(self): ...            # the device's own loops (spot polling, badges, ...)
        def register(self, router): ...  # the device's own commands (Unlock, Lock, ...)

    result = await StationAgent(settings).run()   # one boot: "reboot" or "stopped"
    async with VehicleAgent(settings) as agent:   # boots in a task until the block ends
        ...

The framework owns, for every agent:

- **lifecycle** — :meth:`EdgeAgent.run` is one boot: open the store, apply the persisted
  config, open the device (``open``), start the link once the device is ready for its
  birth (``ready_for_birth``) and the device's jobs, until :meth:`stop` or a Reboot; then a
  Death with the reason, everything closed, the result returned. A device job that dies is
  logged and the others go on; the link dying ends the boot as a reboot. What starts the
  next boot is the supervisor's: the agent's ``__main__`` re-executes itself
  (:mod:`kickstand.edge.core.main`, as a mainboard's supervisor restarts it), a rig builds
  a new agent, :meth:`serve` (``async with``) runs the next boot in the same object.
- **commands** Config, Reboot, TriggerMessage, AuthListUpdate, FirmwareUpdate and
  CertIssued, registered before the device's own (``register``):

  - Config (SPEC §7.5): :meth:`EdgeSettings.with_values` validates the whole settings
    model again with the merged values (unknown keys NOT_SUPPORTED, wrong types
    MALFORMED, all or nothing), the merge is persisted with its version, then the new
    settings are swapped in and the device told (``configured``); the version is the
    birth's ``config_version``.
  - Reboot: DONE, then (once the queue drained, at most 3 s) the boot ends with a Death
    "reboot". TriggerMessage: BIRTH and HEARTBEAT by the link, TELEMETRY and STATUS by the
    device (``send_telemetry``, ``send_status``); nothing else is asked of a device.
  - FirmwareUpdate of spot 0 (the mainboard, the controller: the device names its part in
    ``slot_part``): the A/B slots of :mod:`kickstand.edge.core.firmware`
    (:class:`~kickstand.edge.core.firmware.command.SlotFirmware`): downloaded into the
    inactive slot, switched, a restart into the trial; the trial confirms itself once the
    cloud accepted its birth and its self-check passed (the image's simulated outcome, then
    the device's ``self_check``), else the device falls back at once (or at its next start)
    and reports ROLLED_BACK; an update cut by a restart (a power cut) is reported failed at
    the next start. Which slot a boot runs is the bootloader step's
    (:func:`~kickstand.edge.core.firmware.boot.boot`): the ``__main__`` runs it before
    the process starts the agent (``slot_choice``), an in-process supervisor gets it at
    each boot. Other spots (spot boards): the manifest checked (``firmware_part``),
    ACCEPTED, then in the background the one seam (:mod:`kickstand.edge.core.image_fetch`:
    fetch, verify) and the device's ``install_firmware``; every stage a FirmwareStatus,
    the end a CommandResult.
- **persistent state** — :class:`~kickstand.edge.core.state.AgentState` on the queue's
  device-state table (written with the events it goes with); the local authorization list.
- the birth (kind, firmware, hardware, config and list versions, the device's
  ``inventory``), the TLS identity, the health endpoint.

The device parts (``edge/station``, ``edge/vehicle``) hold their hardware and their pure
state machines; nothing here knows about spots or locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, Self, TypeVar

from kickstand.edge.core.authlist import LocalAuthList
from kickstand.edge.core.clock import DeviceClock
from kickstand.edge.core.config import EdgeSettings
from kickstand.edge.core.errors import (
    CommandFailed,
    CommandRefused,
    ConfigError,
    EdgeError,
    QueueError,
)
from kickstand.edge.core.firmware.boot import boot
from kickstand.edge.core.firmware.command import SlotFirmware
from kickstand.edge.core.firmware.errors import FirmwareError, SlotError
from kickstand.edge.core.firmware.image import read_info
from kickstand.edge.core.firmware.keys import firmware_keys
from kickstand.edge.core.firmware.manifest import DevicePart, check_manifest
from kickstand.edge.core.firmware.slots import SlotChoice
from kickstand.edge.core.firmware.updater import FirmwareUpdater
from kickstand.edge.core.health import HealthServer
from kickstand.edge.core.identity import DeviceIdentity
from kickstand.edge.core.image_fetch import fetch_image, verify_image
from kickstand.edge.core.link import CloudLink, CommandRouter, Outcome
from kickstand.edge.core.queue import DiskQueue
from kickstand.edge.core.replay import SqliteReplayGuard
from kickstand.edge.core.state import FIRMWARE, AgentState, migrate
from kickstand.protocol.errors import ProtocolError
from kickstand.protocol.firmware import Manifest
from kickstand.protocol.v1.enums import (
    DeviceKind,
    FirmwareState,
    RejectReason,
    ResultStatus,
    TriggerKind,
)
from kickstand.protocol.v1.fields import fit_text
from kickstand.protocol.v1.messages import (
    AuthListUpdate,
    BadgeReply,
    Birth,
    CertIssued,
    CommandEnvelope,
    CommandResult,
    Component,
    Config,
    FirmwareStatus,
    FirmwareUpdate,
    Reboot,
    TriggerMessage,
    UpBody,
)

log = logging.getLogger("kickstand.edge.core.agent")

S = TypeVar("S", bound=EdgeSettings)

REBOOT_DRAIN_S = 3.0  # a Reboot waits this long at most for its result to be delivered
Job = tuple[str, Coroutine[Any, Any, None]]


class EdgeAgent(Generic[S]):
    """The framework; a device part subclasses it (see the module docstring)."""

    kind: ClassVar[DeviceKind]
    #: Largest image this device takes (the manifest's size above it: MALFORMED).
    max_firmware_bytes: ClassVar[int] = 1 << 20

    def __init__(self, settings: S) -> None:
        self.base_settings = settings  # the file's and environment's
        self.settings = settings  # with the Config commands applied
        self.device_id = settings.device_id
        self.state_dir = Path(settings.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.clock = DeviceClock()
        self.authlist = LocalAuthList(self.state_dir / "authlist.json")
        self.boots = 0
        self.config_version = 0
        self.started = asyncio.Event()  # the current boot's link exists
        self.identity: DeviceIdentity | None = None
        self.health: HealthServer | None = None
        self._installed: str | None = None  # the firmware a FirmwareUpdate installed
        #: The bootloader step's choice for the next boot, made before the process started
        #: the agent (``__main__``); None: the boot makes it.
        self.slot_choice: SlotChoice | None = None
        self.choice = SlotChoice("a", None, None)  # the slot this boot runs
        self._slot_firmware: SlotFirmware | None = None
        self._queue: DiskQueue | None = None
        self._state: AgentState | None = None
        self._link: CloudLink | None = None
        self._guard: SqliteReplayGuard | None = None
        self._fresh = False  # the prepared link has not run a boot yet
        self._stop = asyncio.Event()
        self._result = "stopped"
        self._background: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[str] | None = None

    # ---------------------------------------------------------------- while running

    def _boot(self) -> tuple[CloudLink, DiskQueue, AgentState]:
        """This boot's link, queue and store: made on first use before :meth:`run` (a rig
        waits on ``agent.link.accepted`` before the task started), the last boot's after."""
        if self._link is None or self._queue is None or self._state is None:
            self._prepare()
        assert self._link is not None and self._queue is not None and self._state is not None
        return self._link, self._queue, self._state

    @property
    def link(self) -> CloudLink:
        return self._boot()[0]

    @property
    def queue(self) -> DiskQueue:
        return self._boot()[1]

    @property
    def state(self) -> AgentState:
        return self._boot()[2]

    @property
    def queue_depth(self) -> int:
        """Messages stored and not yet acknowledged (0 when not running)."""
        return self._queue.depth() if self._queue is not None else 0

    @property
    def firmware_version(self) -> str:
        """What runs: the chosen slot's image, else the factory install's version."""
        return self.choice.version or self._installed or self.settings.firmware

    # ---------------------------------------------------------------- lifecycle

    def stop(self, result: str = "stopped") -> None:
        """End the current boot with a Death saying ``result`` ("stopped", "reboot")."""
        self._result = result
        self._stop.set()

    def _prepare(self) -> None:
        """The next boot's store, settings, commands and link (a new boot id)."""
        base = self.base_settings
        queue = DiskQueue(
            self.state_dir / "queue.db",
            clock=self.clock.now_ms,
            max_telemetry=base.queue_max_telemetry,
            synchronous=base.queue_synchronous,
        )
        guard = SqliteReplayGuard(self.state_dir / "replay.db", clock=self.clock.now_ms)
        try:
            state = AgentState(queue)
            migrate(state, self.state_dir)
            self._load(state)
            self.choice = self.slot_choice or boot(
                self.state_dir, trial_s=base.firmware_trial_s
            )
            self.slot_choice = None
            self._slot_firmware = self._slots_for(self.slot_part())
            router = CommandRouter()
            self._register(router)
            self.register(router)
            # Its TLS identity, renewed before expiry (issue 17; None: no client certificate).
            self.identity = DeviceIdentity.of(self.settings, self.clock)
            if self.identity is not None:
                router.add(CertIssued, self.identity.on_cert_issued)
            link = CloudLink(
                self.settings.link_config(),
                queue=queue,
                birth=self._birth,
                verifier=self.settings.verifier(self.clock, guard),
                router=router,
                clock=self.clock,
                on_accepted=self._on_accepted,
                on_badge_reply=self.badge_reply_handler(),
            )
        except BaseException:
            queue.close()
            guard.close()
            raise
        self._queue, self._state, self._guard, self._link = queue, state, guard, link
        self._fresh = True

    async def run(self) -> str:
        """One boot (see the module docstring): returns "reboot" or "stopped"."""
        if not self._fresh:
            self._prepare()
        self._fresh = False
        self.boots += 1
        link, queue, guard = self.link, self.queue, self._guard
        assert guard is not None
        base = self.base_settings
        tasks: list[asyncio.Task[None]] = []
        opened = False
        try:
            if base.health_port is not None:
                self.health = HealthServer(
                    self.snapshot, host=base.health_host, port=base.health_port
                )
                await self.health.start()
            opened = True
            await self.open()
            jobs: list[Job] = [("link", self._run_link(link))]
            if self.identity is not None:
                jobs.append(("identity", self.identity.run(link)))
            jobs.extend(self.jobs())
            tasks = [
                asyncio.create_task(coro, name=f"{self.device_id}-{name}") for name, coro in jobs
            ]
            if self._slot_firmware is not None:
                self._spawn(self._slot_start(self._slot_firmware, link), "firmware-trial")
            self.started.set()
            await self._watch(tasks)
            if self._stop.is_set():
                await link.publish_death(self._result)
        finally:
            self.started.clear()
            for task in [*tasks, *self._background]:
                task.cancel()
            await asyncio.gather(*tasks, *self._background, return_exceptions=True)
            self._background.clear()
            if opened:
                await self.close()
            if self.health is not None:
                await self.health.stop()
                self.health = None
            queue.close()
            guard.close()
            result = self._result
            # Reset for a next boot here, not at the start: a stop() that came before this
            # boot began (a signal at start-up) must still end it.
            self._stop.clear()
            self._result = "stopped"
        return result

    async def _watch(self, tasks: list[asyncio.Task[None]]) -> None:
        """Until stop() or the link's task ends; a device job that dies is logged only."""
        stop = asyncio.create_task(self._stop.wait())
        running: set[asyncio.Task[Any]] = set(tasks)
        try:
            while True:
                done, _ = await asyncio.wait({stop, *running}, return_when=asyncio.FIRST_COMPLETED)
                if stop in done:
                    return
                for task in done:
                    running.discard(task)  # a peripheral configured "none" ends at once
                    error = None if task.cancelled() else task.exception()
                    if error is not None:
                        log.error("agent_job_died device=%s job=%s error=%r",
                                  self.device_id, task.get_name(), error)
                    if task is tasks[0]:
                        self._result = "reboot"  # no link: start over
                        return
        finally:
            stop.cancel()

    async def serve(self) -> str:
        """Boots one after the other in this object (a Reboot starts the next) until stopped."""
        while (result := await self.run()) == "reboot":
            log.warning("agent_rebooting device=%s", self.device_id)
        return result

    async def __aenter__(self) -> Self:
        self._runner = asyncio.create_task(self.serve(), name=f"agent {self.device_id}")
        started = asyncio.ensure_future(self.started.wait())
        await asyncio.wait({started, self._runner}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if self._runner.done():
            self._runner.result()  # raises what stopped it
        return self

    async def __aexit__(self, *exc: object) -> None:
        """As a power cut: the boot is cancelled, no goodbye (the broker's Will says it)."""
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """A task of this boot (cancelled when it ends)."""
        task = asyncio.create_task(coro, name=f"{self.device_id}-{name}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _run_link(self, link: CloudLink) -> None:
        await self.ready_for_birth()
        await link.run()

    def _load(self, state: AgentState) -> None:
        """This boot's settings: the file's with the persisted Config applied."""
        self.config_version, values = state.config()
        known = {k: v for k, v in values.items() if k in self.base_settings.CONFIGURABLE}
        if len(known) != len(values):
            log.warning("config_keys_dropped device=%s keys=%s", self.device_id,
                        sorted(set(values) - set(known)))
        try:
            self.settings = self.base_settings.with_values(known)
        except CommandRefused as exc:
            # A file changed under a stored Config: the device must start all the same.
            log.error("config_not_applied device=%s error=%s", self.device_id, exc)
            self.settings = self.base_settings
        installed = state.get(FIRMWARE)
        self._installed = installed if isinstance(installed, str) and installed else None
        self.configured()

    # ---------------------------------------------------------------- birth

    def _birth(self) -> Birth:
        return Birth(
            self.kind,
            fit_text(self.firmware_version, 32),
            fit_text(self.settings.hardware, 32),
            config_version=self.config_version,
            auth_list_version=self.authlist.version,
            inventory=tuple(self.inventory()),
            serial_number=self.serial_number,
        )

    async def _on_accepted(self) -> None:
        await self.accepted()

    # ---------------------------------------------------------------- commands

    def _register(self, router: CommandRouter) -> None:
        router.add(Config, self._cmd_config)
        router.add(Reboot, self._cmd_reboot)
        router.add(TriggerMessage, self._cmd_trigger)
        router.add(AuthListUpdate, self._cmd_auth_list)
        router.add(FirmwareUpdate, self._cmd_firmware)

    async def _cmd_config(self, envelope: CommandEnvelope, cmd: Config) -> Outcome:
        settings = self.settings.with_values(cmd.values)  # refused: nothing changes
        _, merged = self.state.config()
        merged.update(cmd.values)
        try:
            self.state.put(self.state.config_entry(cmd.version, merged))
        except QueueError as exc:
            raise CommandFailed(RejectReason.HARDWARE_FAULT, f"storage: {exc}"[:100]) from None
        self.settings = settings
        self.config_version = cmd.version
        self.configured()
        return Outcome(detail=f"config {cmd.version}")

    async def _cmd_reboot(self, envelope: CommandEnvelope, cmd: Reboot) -> Outcome:
        self._spawn(self._reboot_after_delivery(), "reboot")
        # SPEC §7.4: DONE (the restart follows the result, nothing else is pending).
        return Outcome(detail="hard" if cmd.hard else "soft")

    async def _reboot_after_delivery(self, delay_s: float = 0.0) -> None:
        await asyncio.sleep(delay_s)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REBOOT_DRAIN_S):
                while self.queue.depth():  # noqa: ASYNC110 - the queue announces nothing
                    await asyncio.sleep(0.05)
        self.stop("reboot")

    async def _cmd_trigger(self, envelope: CommandEnvelope, cmd: TriggerMessage) -> Outcome:
        if cmd.which is TriggerKind.BIRTH:
            self.link.trigger_birth()
        elif cmd.which is TriggerKind.HEARTBEAT:
            self.link.trigger_heartbeat()
        elif cmd.which is TriggerKind.TELEMETRY:
            self.send_telemetry()
        elif cmd.which is TriggerKind.STATUS:
            self.send_status(cmd.spot)
        else:  # a kind this agent does not know: say so rather than send something else
            raise CommandRefused(RejectReason.NOT_SUPPORTED, f"trigger {cmd.which!r}")
        return Outcome()

    async def _cmd_auth_list(self, envelope: CommandEnvelope, cmd: AuthListUpdate) -> Outcome:
        try:
            self.authlist.apply(cmd)  # CommandRefused on VERSION_MISMATCH / MALFORMED
        except OSError as exc:
            raise CommandFailed(RejectReason.HARDWARE_FAULT, f"storage: {exc}"[:100]) from None
        return Outcome(detail=f"version {cmd.version}, {len(self.authlist)}")

    # ---------------------------------------------------------------- slot firmware (spot 0)

    def _slots_for(self, part: DevicePart | None) -> SlotFirmware | None:
        if part is None:
            return None
        updater = FirmwareUpdater(
            self.state_dir,
            lambda status: self.record([status]),
            self.reboot_soon,
            finish=self._firmware_result,
            trial_s=self.base_settings.firmware_trial_s,
        )
        try:
            keys = firmware_keys(self.settings.firmware_public_keys)
        except ConfigError as exc:  # the device must start all the same; updates refused
            log.error("firmware_keys_unusable device=%s error=%s", self.device_id, exc)
            keys = []
        return SlotFirmware(updater, keys, part, lambda coro: self._spawn(coro, "firmware"))

    async def _slot_start(self, firmware: SlotFirmware, link: CloudLink) -> None:
        """What this start owes (CONFIRMED, ROLLED_BACK, an update cut by a restart), once
        the device can report, then the trial when this boot runs a pending slot."""
        await self.ready_for_birth()
        if self.choice.trial:
            await firmware.trial(self.choice, link.accepted.wait(), self._self_check)
        else:
            firmware.updater.send_reports()

    def _firmware_result(self, command_id: bytes, ok: bool, reason: str) -> None:
        """The CommandResult of a slot update, from the image that ends it (SPEC §13.5)."""
        if ok:
            result = CommandResult(command_id, ResultStatus.DONE, None, "confirmed")
        else:
            result = CommandResult(command_id, ResultStatus.FAILED, RejectReason.HARDWARE_FAULT,
                                   fit_text(reason, 120))
        self._firmware_end(result)

    async def _self_check(self) -> str:
        """A trial slot's self-check: "" when it works. The image's simulated outcome
        (SPEC §13.6), then the device's own (``self_check``)."""
        if self.choice.root is not None:
            try:
                problem = read_info(self.choice.root).self_check_problem(self.device_id)
            except FirmwareError as exc:
                return exc.reason
            if problem:
                return problem
        return await self.self_check()

    # ---------------------------------------------------------------- other parts' firmware

    async def _cmd_firmware(self, envelope: CommandEnvelope, update: FirmwareUpdate) -> Outcome:
        slots = self._slot_firmware
        if update.spot == 0 and slots is not None:
            # The slot update ends in a restart: not while another part takes an image.
            if busy := self.firmware_busy():
                raise CommandRefused(RejectReason.BUSY, busy)
            return await slots.handle(envelope, update)
        if slots is not None and (
            slots.updater.updating or slots.updater.slots.record().pending is not None
        ):  # installed or on trial: a restart (or a rollback) is coming
            raise CommandRefused(RejectReason.BUSY, "the device's own firmware is updating")
        part = self.firmware_part(update.spot)  # refuses what this device cannot take now
        manifest = check_manifest(
            update.manifest, firmware_keys(self.settings.firmware_public_keys), part
        )
        if not 0 < manifest.size <= self.max_firmware_bytes or len(manifest.sha256) != 32:
            raise CommandRefused(RejectReason.MALFORMED, "size or sha256 out of range")
        self.firmware_started(update.spot)
        self._spawn(self._firmware(envelope.command_id, manifest, update.spot), "firmware")
        return Outcome(ResultStatus.ACCEPTED, detail="staging")

    async def _firmware(self, command_id: bytes, manifest: Manifest, spot: int) -> None:
        """The seam the firmware library replaces: fetch, verify, the device installs."""
        version = fit_text(manifest.version, 32)

        def status(state: FirmwareState, reason: str = "") -> FirmwareStatus:
            return FirmwareStatus(state, version, spot, fit_text(reason, 120))

        ok = False
        try:
            self.record([status(FirmwareState.DOWNLOADING)])
            image = await fetch_image(manifest.url, manifest.size)
            self.record([status(FirmwareState.DOWNLOADED), status(FirmwareState.VERIFYING)])
            verify_image(image, manifest)
            self.record([status(FirmwareState.VERIFIED), status(FirmwareState.INSTALLING)])
            await self.install_firmware(manifest, image, spot)
            ok = True
        except FirmwareError as exc:
            log.error("firmware_failed device=%s spot=%d version=%s reason=%s",
                      self.device_id, spot, version, exc.reason)
            self._firmware_end(status(exc.state, exc.reason), CommandResult(
                command_id, ResultStatus.FAILED, exc.reject_reason, fit_text(exc.reason, 120)
            ))
        except (EdgeError, ProtocolError) as exc:
            log.error("firmware_failed device=%s spot=%d version=%s error=%s",
                      self.device_id, spot, version, exc)
            self._firmware_end(status(FirmwareState.INSTALL_FAILED, str(exc)), CommandResult(
                command_id, ResultStatus.FAILED, RejectReason.HARDWARE_FAULT,
                fit_text(str(exc), 120),
            ))
        finally:
            self.firmware_finished(spot)
        if ok:
            self._firmware_end(
                status(FirmwareState.INSTALLED),
                CommandResult(command_id, ResultStatus.DONE, None, f"firmware {version}"),
            )
            self.firmware_installed(manifest, spot)

    def _firmware_end(self, *bodies: UpBody) -> None:
        try:
            self.record(bodies)
        except (EdgeError, ProtocolError) as exc:
            log.error("firmware_result_not_stored device=%s error=%s", self.device_id, exc)

    def reboot_soon(self, delay_s: float = 0.5) -> None:
        self._spawn(self._reboot_after_delivery(delay_s), "reboot")

    # ---------------------------------------------------------------- the device's part

    @property
    def serial_number(self) -> str | None:
        return None

    def inventory(self) -> Sequence[Component]:
        return ()

    def register(self, router: CommandRouter) -> None:
        """Add the device's own commands (Unlock, Lock, ...)."""

    async def open(self) -> None:
        """Open the hardware and restore the device's state (``self.state``) for this boot."""

    async def close(self) -> None:
        """Close what :meth:`open` opened (the boot's tasks are already cancelled)."""

    def jobs(self) -> list[Job]:
        """The device's loops for this boot (polling, readers, reporters)."""
        return []

    async def ready_for_birth(self) -> None:
        """Until the birth can say what it must (e.g. every board's firmware read)."""

    async def accepted(self) -> None:
        """The cloud accepted this boot (every time: after each reconnection too)."""

    def configured(self) -> None:
        """``self.settings`` changed (boot, Config): hand the new values to the parts."""

    def badge_reply_handler(self) -> Callable[[BadgeReply], None] | None:
        return None

    def record(self, bodies: Sequence[UpBody]) -> None:
        """Store ``bodies`` (with whatever device state goes with them) to be sent."""
        self.link.emit_batch(bodies)

    def send_status(self, spot: int) -> None:
        raise CommandRefused(RejectReason.NOT_SUPPORTED, "no status")

    def send_telemetry(self) -> None:
        raise CommandRefused(RejectReason.NOT_SUPPORTED, "no telemetry")

    def slot_part(self) -> DevicePart | None:
        """The part with A/B slots this agent runs on (spot 0); None: no slots."""
        return None

    async def self_check(self) -> str:
        """A trial boot's check of the device: "" when it works, else what does not."""
        return ""

    def firmware_busy(self) -> str | None:
        """Why the device's own update (a restart at its end) must wait now; None: it may go."""
        return None

    def firmware_part(self, spot: int) -> DevicePart:
        """What an image for a part other than the slots' (a spot board) must fit;
        CommandRefused for what cannot be updated."""
        raise CommandRefused(RejectReason.NOT_SUPPORTED, "no firmware updates")

    def firmware_started(self, spot: int) -> None:
        """An update of ``spot`` was accepted (mark it busy)."""

    async def install_firmware(self, manifest: Manifest, image: bytes, spot: int) -> None:
        """Install a verified image; FirmwareError (its state and reason) if it fails."""
        raise FirmwareError("not supported", FirmwareState.INSTALL_FAILED)

    def firmware_finished(self, spot: int) -> None:
        """The update of ``spot`` ended, however."""

    def firmware_installed(self, manifest: Manifest, spot: int) -> None:
        """After INSTALLED and DONE are stored (e.g. restart into the new image)."""

    def snapshot(self) -> dict[str, Any]:
        data = self._link.snapshot() if self._link is not None else {}
        # What runs, for a technician reading the health endpoint during an update.
        slots = self._slot_firmware
        if slots is not None:
            try:
                pending = slots.updater.slots.record().pending
            except SlotError as exc:
                pending = f"unreadable: {exc}"
            data["firmware_slot"] = {
                "version": self.firmware_version,
                "slot": self.choice.slot,
                "pending": pending,  # on trial while it names the running slot
                "updating": slots.updater.updating,
            }
        return data
