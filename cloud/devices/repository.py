"""SQL of the device registry: devices with what they are attached to, boots, command
history (``device_commands``, the one audit row of every command), riders' logins."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, ScalarResult, Select, and_, false, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.devices.scope import NETWORK
from kickstand.cloud.ingest.tables import CommandStatus, DeviceBoot, DeviceCommand
from kickstand.cloud.keyset import Keyset, page_query
from kickstand.cloud.liveness import online_clause
from kickstand.cloud.models import (
    Cluster,
    Device,
    DeviceKind,
    RefreshToken,
    Station,
    User,
    Vehicle,
)

#: None: every network (and devices attached to nothing); a set: only those networks.
Scope = frozenset[int] | None


@dataclass(frozen=True, slots=True)
class DeviceRow:
    device: Device
    station_id: int | None
    station_name: str | None
    cluster_id: int | None
    vehicle_id: int | None
    vehicle_serial: str | None
    network_id: int | None


def _attached() -> Select[*tuple[Any, ...]]:
    return (
        select(
            Device,
            Station.id,
            Station.name,
            Station.cluster_id,
            Vehicle.id,
            Vehicle.serial_number,
            NETWORK,
        )
        .outerjoin(Station, Station.device_id == Device.device_id)
        .outerjoin(Cluster, Cluster.id == Station.cluster_id)
        .outerjoin(Vehicle, Vehicle.device_id == Device.device_id)
    )


def _row(row: Any) -> DeviceRow:
    return DeviceRow(*row)


def scope_clause(scopes: dict[DeviceKind, Scope]) -> ColumnElement[bool]:
    """The devices the caller may see: per kind, every one (None) or those of its networks
    (a device attached to nothing is in no network: only an unrestricted caller sees it)."""
    parts: list[ColumnElement[bool]] = []
    for kind, networks in scopes.items():
        if networks is None:
            parts.append(Device.kind == kind)
        elif networks:
            parts.append(and_(Device.kind == kind, NETWORK.in_(sorted(networks))))
    return or_(*parts) if parts else false()


async def list_devices(
    session: AsyncSession,
    keyset: Keyset,
    *,
    scopes: dict[DeviceKind, Scope],
    now: datetime,
    kind: DeviceKind | None = None,
    online: bool | None = None,
    firmware_version: str | None = None,
    network_ids: Sequence[int] | None = None,
) -> list[DeviceRow]:
    stmt = _attached().where(scope_clause(scopes))
    if kind is not None:
        stmt = stmt.where(Device.kind == kind)
    if online is not None:
        alive = online_clause(session.get_bind().dialect.name, now)
        stmt = stmt.where(alive if online else ~alive)
    if firmware_version is not None:
        stmt = stmt.where(Device.firmware_version == firmware_version)
    if network_ids:
        stmt = stmt.where(NETWORK.in_(list(network_ids)))
    rows = await session.execute(page_query(stmt, Device.id, keyset))
    return [_row(r) for r in rows.all()]


async def get_device(session: AsyncSession, device_id: int) -> DeviceRow | None:
    row = (await session.execute(_attached().where(Device.id == device_id))).first()
    return _row(row) if row is not None else None


async def kind_of(session: AsyncSession, device_id: int) -> DeviceKind | None:
    kind: DeviceKind | None = await session.scalar(
        select(Device.kind).where(Device.id == device_id)
    )
    return kind


async def boots(session: AsyncSession, device_id: str, limit: int) -> list[DeviceBoot]:
    rows: ScalarResult[DeviceBoot] = await session.scalars(
        select(DeviceBoot)
        .where(DeviceBoot.device_id == device_id)
        .order_by(DeviceBoot.received_at.desc(), DeviceBoot.id.desc())
        .limit(limit)
    )
    return list(rows)


def issued_key(issued_at: datetime) -> int:
    """A command's key in its device's history: its issue time in whole ms (the envelope's
    ``issued_at_ms``; one device is never sent two commands in the same ms by one issuer)."""
    return round(issued_at.timestamp() * 1000)


async def command_history(
    session: AsyncSession, device_id: str, keyset: Keyset, command_type: str | None = None
) -> list[DeviceCommand]:
    stmt = select(DeviceCommand).where(DeviceCommand.device_id == device_id)
    if command_type is not None:
        stmt = stmt.where(DeviceCommand.command_type == command_type)
    if keyset.last_primary_key is not None:
        last = datetime.fromtimestamp(keyset.last_primary_key / 1000, UTC)
        after = (
            DeviceCommand.issued_at > last if keyset.ascending else DeviceCommand.issued_at < last
        )
        stmt = stmt.where(after)
    order = DeviceCommand.issued_at.asc() if keyset.ascending else DeviceCommand.issued_at.desc()
    rows: ScalarResult[DeviceCommand] = await session.scalars(
        stmt.order_by(order).limit(keyset.page_size + 1)
    )
    return list(rows)


async def mark_operator(session: AsyncSession, command_id: str, operator_id: int) -> None:
    await session.execute(
        update(DeviceCommand)
        .where(DeviceCommand.command_id == command_id)
        .values(operator_id=operator_id),
        execution_options={"synchronize_session": False},
    )


async def record_answer(
    session: AsyncSession, command_id: str, status: str, reason: str | None, at: datetime
) -> None:
    """The answer the API's gateway saw, on the audit row unless ingest wrote it first (a
    result never moves a command backwards: only a pending or accepted row changes)."""
    await session.execute(
        update(DeviceCommand)
        .where(
            DeviceCommand.command_id == command_id,
            DeviceCommand.status.in_([CommandStatus.PENDING, CommandStatus.ACCEPTED]),
        )
        .values(status=status, reason=(reason or "")[:200] or None, result_at=at),
        execution_options={"synchronize_session": False},
    )


async def users_of_login_device(session: AsyncSession, login_device_id: str) -> list[User]:
    """Every user who logged in with this phone/app id (kept on each login's refresh
    tokens, ``LoginDevice.id``)."""
    rows: ScalarResult[User] = await session.scalars(
        select(User)
        .where(
            User.id.in_(
                select(RefreshToken.user_id).where(RefreshToken.device_id == login_device_id)
            )
        )
        .order_by(User.id)
    )
    return list(rows)


async def last_login_with(
    session: AsyncSession, login_device_id: str, user_ids: Sequence[int]
) -> dict[int, datetime]:
    rows = await session.execute(
        select(RefreshToken.user_id, func.max(RefreshToken.created_at))
        .where(RefreshToken.device_id == login_device_id, RefreshToken.user_id.in_(user_ids))
        .group_by(RefreshToken.user_id)
    )
    return {int(row[0]): row[1] for row in rows.all()}


__all__ = [
    "NETWORK",
    "DeviceRow",
    "Scope",
    "boots",
    "command_history",
    "get_device",
    "issued_key",
    "kind_of",
    "last_login_with",
    "list_devices",
    "mark_operator",
    "record_answer",
    "scope_clause",
    "users_of_login_device",
]
