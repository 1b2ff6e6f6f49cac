"""The device registry's rules: who sees which device, and an operator's commands.

A device is seen through what it is attached to: a station's mainboard in its cluster's
network, a vehicle's controller in the vehicle's network. A device attached to nothing (a
spare board, a device whose station or vehicle was removed) is in no network: only a
caller unrestricted for its kind (a global grant, an admin) sees it.

An operator's command is signed by the API's gateway, recorded (``device_commands``, the
one audit row of every command, with the operator's id) and committed before it is sent;
the gateway then awaits the device's answer. The answer is written on the row (ingest
writes the same answer when the device's result reaches it, whichever comes first); a
device known offline leaves it ``not-sent``; a timeout leaves it pending (the device may
still execute it until it expires, and ingest records its late result).
SetMaintenance of a station goes through :mod:`kickstand.cloud.maintenance` (the cloud's
record of the spot changes at once); AuthListUpdate sends the network's FULL list (or a
DIFF from the version the station holds) through :mod:`kickstand.cloud.authlist.service`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud import maintenance
from kickstand.cloud.authlist import service as authlist
from kickstand.cloud.commands.issuer import CommandIssuer
from kickstand.cloud.commands.records import record_command, record_not_sent
from kickstand.cloud.devices import repository as repo
from kickstand.cloud.devices.repository import DeviceRow, Scope
from kickstand.cloud.errors import ConflictError, InvalidInputError, NotFoundError, UnavailableError
from kickstand.cloud.ingest.tables import CommandStatus
from kickstand.cloud.models import DeviceKind, Spot
from kickstand.cloud.rent_gateway import CommandGateway, IssuedCommand, UnlockOutcome, UnlockResult
from kickstand.protocol.errors import EncodeError
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.fields import ConfigMap

log = logging.getLogger("kickstand.cloud.devices.service")

#: What the operator is answered for a command.
CommandOutcome = Literal["done", "rejected", "failed", "timeout", "offline"]
DONE: Final = "done"
REJECTED: Final = "rejected"
FAILED: Final = "failed"
TIMEOUT: Final = "timeout"
OFFLINE: Final = "offline"
#: The prefix the gateway puts on the reason of a FAILED result (hardware did not complete).
_FAILED_PREFIX = "hardware-failed: "


@dataclass(frozen=True, slots=True)
class CommandAnswer:
    """One command as sent, and what became of it."""

    command_id: str
    command_type: str
    outcome: CommandOutcome
    reason: str | None
    issued_at: datetime
    expires_at: datetime


def visible(row: DeviceRow, scopes: dict[DeviceKind, Scope]) -> bool:
    networks = scopes.get(row.device.kind, frozenset())
    if networks is None:
        return True
    return row.network_id is not None and row.network_id in networks


async def device_for(
    session: AsyncSession, device_id: int, scopes: dict[DeviceKind, Scope]
) -> DeviceRow:
    """The device if the caller may see it, else NotFoundError (another network's device
    is not told apart from a missing one)."""
    row = await repo.get_device(session, device_id)
    if row is None or not visible(row, scopes):
        raise NotFoundError("device", device_id)
    return row


def config_command(version: int, values: dict[str, bool | int | float | str]) -> m.Config:
    try:
        ConfigMap().encode(values)
    except EncodeError as exc:
        raise InvalidInputError(str(exc), field="values") from exc
    return m.Config(version=version, values=dict(values))


def _require(row: DeviceRow, kind: DeviceKind, command: str) -> None:
    if row.device.kind != kind:
        raise ConflictError(
            f"{command} is for {kind.value} devices; {row.device.device_id} is a "
            f"{row.device.kind.value}",
            reason="wrong-device-kind",
        )


def answer_of(outcome: UnlockOutcome) -> tuple[CommandOutcome, str | None]:
    """The gateway's outcome as the operator's answer (the gateway reports a command's
    DONE as an unlock's UNLOCKED, a FAILED as a refusal whose reason says so)."""
    reason = outcome.reason
    match outcome.result:
        case UnlockResult.UNLOCKED:
            return DONE, None
        case UnlockResult.DEVICE_OFFLINE:
            return OFFLINE, reason
        case UnlockResult.TIMEOUT:
            return TIMEOUT, reason
    if reason is not None and reason.startswith(_FAILED_PREFIX):
        return FAILED, reason.removeprefix(_FAILED_PREFIX)
    return REJECTED, reason


_ROW_STATUS = {
    DONE: CommandStatus.DONE,
    REJECTED: CommandStatus.REJECTED,
    FAILED: CommandStatus.FAILED,
}


class DeviceCommands:
    """Sends an operator's commands through the API's gateway and keeps their rows."""

    def __init__(
        self, maker: async_sessionmaker[AsyncSession], gateway: CommandGateway, operator_id: int
    ) -> None:
        self.maker = maker
        self.gateway = gateway
        self.operator_id = operator_id

    async def _recorded(self, session: AsyncSession, issued: Sequence[IssuedCommand]) -> None:
        for command in issued:
            await repo.mark_operator(session, command.command_id.hex(), self.operator_id)
        await session.commit()

    async def _send(self, issued: IssuedCommand) -> CommandAnswer:
        """After the commit: send, await, and write the answer on the audit row."""
        outcome = await self.gateway.send_command(issued)
        answer, reason = answer_of(outcome)
        command_id = issued.command_id.hex()
        async with self.maker() as session:
            if answer in _ROW_STATUS:
                await repo.record_answer(
                    session, command_id, _ROW_STATUS[answer], reason, datetime.now(UTC)
                )
            elif answer == OFFLINE:
                await record_not_sent(session, issued, reason)
            await session.commit()
        log.info(
            "event=operator_command device=%s command=%s type=%s outcome=%s operator=%s",
            issued.device_id,
            command_id,
            type(issued.command).__name__,
            answer,
            self.operator_id,
        )
        return CommandAnswer(
            command_id,
            type(issued.command).__name__.lower(),
            answer,
            reason,
            issued.issued_at,
            issued.expires_at,
        )

    async def send_recorded(self, issued: IssuedCommand) -> CommandAnswer:
        """A command recorded (and marked as this operator's) in the caller's committed
        transaction (a technician's unlock): send it, await, write the answer."""
        return await self._send(issued)

    async def plain(self, row: DeviceRow, command: m.CommandBody) -> CommandAnswer:
        """Config, Reboot, TriggerMessage, SetSpeedLimit (vehicles only)."""
        if isinstance(command, m.SetSpeedLimit):
            _require(row, DeviceKind.VEHICLE, "SetSpeedLimit")
        try:
            issued = self.gateway.issue_command(row.device.device_id, command)
        except EncodeError as exc:
            raise InvalidInputError(str(exc), field="body") from exc
        async with self.maker() as session:
            await record_command(session, issued)
            await self._recorded(session, [issued])
        return await self._send(issued)

    async def plain_all(self, commands: Sequence[tuple[str, m.CommandBody]]) -> list[CommandAnswer]:
        """Commands to many devices at once (a network's vehicles, seed 002 "Reset vehicles
        settings"): recorded in one commit, then sent and awaited together."""
        issued = [self.gateway.issue_command(device_id, body) for device_id, body in commands]
        async with self.maker() as session:
            for command in issued:
                await record_command(session, command)
            await self._recorded(session, issued)
        return list(await asyncio.gather(*(self._send(command) for command in issued)))

    async def set_maintenance(
        self, row: DeviceRow, spot: int, on: bool, reason: str | None
    ) -> CommandAnswer:
        """A station's spot (``spot`` ≥ 1) or the whole station (0), through the one
        maintenance path: the cloud's record changes with the command's row."""
        _require(row, DeviceKind.STATION, "SetMaintenance")
        if row.station_id is None:
            raise ConflictError(
                f"{row.device.device_id} is attached to no station", reason="not-attached"
            )
        async with self.maker() as session:
            if spot == 0:
                ref = await maintenance.station_ref(session, row.station_id)
                issued = await maintenance.set_station_maintenance(
                    session, self.gateway, ref, on, reason
                )
            else:
                spot_id = await session.scalar(
                    select(Spot.id).where(
                        Spot.station_id == row.station_id, Spot.displayed_number == spot
                    )
                )
                if spot_id is None:
                    raise InvalidInputError(
                        f"station {row.station_name} has no spot {spot}", field="spot"
                    )
                spot_ref = await maintenance.spot_ref(session, spot_id)
                issued = await maintenance.set_spot_maintenance(
                    session, self.gateway, spot_ref, on, reason
                )
            await self._recorded(session, [issued])
        return await self._send(issued)

    async def auth_list_full(self, row: DeviceRow, *, diff: bool = False) -> list[CommandAnswer]:
        """The network's FULL authorization list (and its continuations past the size of
        one update, each sent once the one before is done); ``diff``: one DIFF from the
        version the station confirmed holding instead (409 ``diff-unavailable`` when only a
        FULL can bring it there)."""
        _require(row, DeviceKind.STATION, "AuthListUpdate")
        if row.network_id is None:
            raise ConflictError(
                f"{row.device.device_id} is in no network: it has no list", reason="not-attached"
            )
        # The MQTT gateway signs with its issuer (authlist's lists need one, as ingest's).
        issuer = getattr(self.gateway, "issuer", None)
        if not isinstance(issuer, CommandIssuer):
            raise UnavailableError("this API process has no command issuer: lists cannot be signed")
        async with self.maker() as session:
            send = authlist.send_diff if diff else authlist.send_full
            issued = await send(session, issuer, row.device.device_id, row.network_id)
            await self._recorded(session, issued)
        answers: list[CommandAnswer] = []
        for command in issued:
            answers.append(await self._send(command))
            if answers[-1].outcome != DONE:
                break  # a continuation applies only on top of what came before
        return answers


__all__ = [
    "DONE",
    "FAILED",
    "OFFLINE",
    "REJECTED",
    "TIMEOUT",
    "CommandAnswer",
    "DeviceCommands",
    "answer_of",
    "config_command",
    "device_for",
    "visible",
]
