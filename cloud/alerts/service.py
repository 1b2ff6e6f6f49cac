"""Operator side of fleet alerts: current list, history (filters, keyset pages), actions.

Each action writes the alert change and its outbox record in the caller's transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, ScalarResult, Select, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.alerts import types as t
from kickstand.cloud.alerts.core import alert_payload, emit_alert
from kickstand.cloud.alerts.errors import AlertsNotFoundError, AlertTransitionError
from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import (
    CURRENT_STATES,
    OPEN_STATES,
    SEVERITY_RANK,
    AlertSeverity,
    AlertState,
    AlertType,
)
from kickstand.cloud.keyset import Keyset, page_query
from kickstand.cloud.models import Cluster, User, Vehicle

log = logging.getLogger("kickstand.cloud.alerts.service")

Direction = Literal["ASC", "DESC"]
SortBy = Literal["creation_date", "alert_severity", "resolved_at"]

#: resolved_at of unresolved alerts, for sorting and keyset comparisons (NULLs first in ASC).
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class HistoryFilters:
    """Seed 002 "Get fleet alerts history" query parameters."""

    networks: Sequence[int]
    sort_by: SortBy | None = None
    sort_dir: Direction = "DESC"
    alert_type: AlertType | None = None
    alert_severity: AlertSeverity | None = None
    creation_date_min: date | None = None
    creation_date_max: date | None = None
    user_id: int | None = None
    email: str | None = None
    resolved_at_min: date | None = None
    resolved_at_max: date | None = None
    cluster_name: str | None = None
    cluster_id: int | None = None
    vehicle_id: int | None = None
    serial_number: str | None = None
    state: Sequence[AlertState] | None = None


def _start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _end(day: date) -> datetime:
    return _start(day) + timedelta(days=1)


def _severity_rank() -> ColumnElement[int]:
    return case(
        *((FleetAlert.severity == sev, rank) for sev, rank in SEVERITY_RANK.items()),
        else_=0,
    )


def _sort_column(sort_by: SortBy) -> ColumnElement[Any]:
    if sort_by == "alert_severity":
        return _severity_rank()
    if sort_by == "resolved_at":
        return func.coalesce(FleetAlert.resolved_at, _NEVER)
    created: ColumnElement[Any] = FleetAlert.created_at  # type: ignore[assignment]
    return created


async def current_alerts(session: AsyncSession, networks: Sequence[int]) -> list[FleetAlert]:
    """Seed 002 "Get fleet alerts": the alerts that need attention (new, escalated)."""
    rows: ScalarResult[FleetAlert] = await session.scalars(
        select(FleetAlert)
        .where(FleetAlert.network_id.in_(list(networks)), FleetAlert.state.in_(CURRENT_STATES))
        .order_by(_severity_rank().desc(), FleetAlert.id.desc())
    )
    return list(rows)


def _filtered(f: HistoryFilters) -> Select[FleetAlert]:
    query = select(FleetAlert).where(FleetAlert.network_id.in_(list(f.networks)))
    if f.state:
        query = query.where(FleetAlert.state.in_(list(f.state)))
    if f.alert_type is not None:
        query = query.where(FleetAlert.alert_type == f.alert_type)
    if f.alert_severity is not None:
        query = query.where(FleetAlert.severity == f.alert_severity)
    if f.creation_date_min is not None:
        query = query.where(FleetAlert.created_at >= _start(f.creation_date_min))
    if f.creation_date_max is not None:
        query = query.where(FleetAlert.created_at < _end(f.creation_date_max))
    if f.resolved_at_min is not None:
        query = query.where(FleetAlert.resolved_at >= _start(f.resolved_at_min))
    if f.resolved_at_max is not None:
        query = query.where(FleetAlert.resolved_at < _end(f.resolved_at_max))
    if f.user_id is not None:
        query = query.where(FleetAlert.operator_id == f.user_id)
    if f.email:
        query = query.where(
            FleetAlert.operator_id.in_(
                select(User.id).where(func.lower(User.email).contains(f.email.lower()))
            )
        )
    if f.cluster_id is not None:
        query = query.where(FleetAlert.cluster_id == f.cluster_id)
    if f.cluster_name:
        query = query.where(
            FleetAlert.cluster_id.in_(
                select(Cluster.id).where(func.lower(Cluster.name).contains(f.cluster_name.lower()))
            )
        )
    if f.vehicle_id is not None:
        query = query.where(FleetAlert.vehicle_id == f.vehicle_id)
    if f.serial_number:
        query = query.where(
            FleetAlert.vehicle_id.in_(
                select(Vehicle.id).where(Vehicle.serial_number == f.serial_number)
            )
        )
    return query


async def count_history(session: AsyncSession, f: HistoryFilters) -> int:
    """How many alerts match the filters (all pages)."""
    total = await session.scalar(select(func.count()).select_from(_filtered(f).subquery()))
    return int(total or 0)


async def alert_history(
    session: AsyncSession, f: HistoryFilters, keyset: Keyset
) -> list[FleetAlert]:
    """Seed 002 "Get fleet alerts history": every alert of the networks, filtered, one keyset
    page (:mod:`kickstand.cloud.keyset`: one row more than the page).

    With ``sort_by``, pages follow (sort key, id), the key of the last row looked up by id.
    """
    query = _filtered(f)
    if f.sort_by is None:
        return list(await session.scalars(page_query(query, FleetAlert.id, keyset)))
    last = keyset.last_primary_key
    pk_order = FleetAlert.id.asc() if keyset.ascending else FleetAlert.id.desc()
    column = _sort_column(f.sort_by)
    key_desc = f.sort_dir == "DESC"
    if last is not None:
        last_value = await session.scalar(select(column).where(FleetAlert.id == last))
        if last_value is not None:
            after_key = column < last_value if key_desc else column > last_value
            after_id = FleetAlert.id > last if keyset.ascending else FleetAlert.id < last
            query = query.where(or_(after_key, and_(column == last_value, after_id)))
    query = query.order_by(column.desc() if key_desc else column.asc(), pk_order)
    rows: ScalarResult[FleetAlert] = await session.scalars(query.limit(keyset.page_size + 1))
    return list(rows)


async def _load_for_action(
    session: AsyncSession,
    alert_ids: Sequence[int],
    allowed_networks: Collection[int] | None = None,
) -> list[FleetAlert]:
    ids = sorted(set(alert_ids))
    rows: list[FleetAlert] = list(
        await session.scalars(
            select(FleetAlert)
            .where(FleetAlert.id.in_(ids))
            .order_by(FleetAlert.id)
            .with_for_update()
        )
    )
    if allowed_networks is not None:  # an operator acts on the alerts of their networks
        rows = [a for a in rows if a.network_id in allowed_networks]
    missing = sorted(set(ids) - {a.id for a in rows})
    if missing:
        raise AlertsNotFoundError(missing)
    return rows


def _check(alerts: list[FleetAlert], action: str, allowed: Sequence[AlertState]) -> None:
    refused = [a for a in alerts if a.state not in allowed]
    if refused:
        raise AlertTransitionError(
            [a.id for a in refused], action, sorted({str(a.state) for a in refused})
        )


async def resolve_alerts(
    session: AsyncSession,
    alert_ids: Sequence[int],
    *,
    operator_id: int | None,
    allowed_networks: Collection[int] | None = None,
    now: datetime | None = None,
) -> list[FleetAlert]:
    """Seed 002 "Resolve alerts". Already resolved or stopped alerts are left as they are."""
    now = now or datetime.now(UTC)
    alerts = await _load_for_action(session, alert_ids, allowed_networks)
    changed = []
    for alert in alerts:
        if alert.state not in OPEN_STATES:
            continue
        alert.state = AlertState.RESOLVED
        alert.resolved_at = now
        alert.operator_id = operator_id
        alert.modified_at = now
        emit_alert(session, alert, t.ALERT_RESOLVED)
        changed.append(alert)
    log.info(
        "event=fleet_alerts_resolved ids=%s operator_id=%s", [a.id for a in changed], operator_id
    )
    return alerts


async def escalate_alerts(
    session: AsyncSession,
    alert_ids: Sequence[int],
    *,
    operator_id: int | None,
    allowed_networks: Collection[int] | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> list[FleetAlert]:
    """Seed 003 "escalated": the alert was turned into a task (a note says which)."""
    now = now or datetime.now(UTC)
    alerts = await _load_for_action(session, alert_ids, allowed_networks)
    _check(alerts, "escalate", (AlertState.NEW, AlertState.SILENCED, AlertState.ESCALATED))
    for alert in alerts:
        alert.state = AlertState.ESCALATED
        alert.escalated_at = now
        alert.operator_id = operator_id
        alert.modified_at = now
        if note:
            alert.note = note
        emit_alert(session, alert, t.ALERT_ESCALATED)
    return alerts


async def silence_alerts(
    session: AsyncSession,
    alert_ids: Sequence[int],
    *,
    operator_id: int | None,
    allowed_networks: Collection[int] | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> list[FleetAlert]:
    """Seed 003 "silenced": still active, hidden from the current list (until ``until``)."""
    now = now or datetime.now(UTC)
    alerts = await _load_for_action(session, alert_ids, allowed_networks)
    _check(alerts, "silence", (AlertState.NEW, AlertState.ESCALATED, AlertState.SILENCED))
    for alert in alerts:
        alert.state = AlertState.SILENCED
        alert.silenced_at = now
        alert.silenced_until = until
        alert.operator_id = operator_id
        alert.modified_at = now
        emit_alert(session, alert, t.ALERT_SILENCED)
    return alerts


async def describe(session: AsyncSession, alerts: Sequence[FleetAlert]) -> list[dict[str, Any]]:
    """API rows: the alert payload plus names the dashboard shows (cluster, serial, operator)."""
    cluster_ids = {a.cluster_id for a in alerts if a.cluster_id is not None}
    vehicle_ids = {a.vehicle_id for a in alerts if a.vehicle_id is not None}
    user_ids = {a.operator_id for a in alerts if a.operator_id is not None}
    clusters: dict[int, str] = {}
    serials: dict[int, str] = {}
    emails: dict[int, str] = {}
    if cluster_ids:
        result = await session.execute(
            select(Cluster.id, Cluster.name).where(Cluster.id.in_(cluster_ids))
        )
        clusters = {row[0]: row[1] for row in result}
    if vehicle_ids:
        result = await session.execute(
            select(Vehicle.id, Vehicle.serial_number).where(Vehicle.id.in_(vehicle_ids))
        )
        serials = {row[0]: row[1] for row in result}
    if user_ids:
        result = await session.execute(select(User.id, User.email).where(User.id.in_(user_ids)))
        emails = {row[0]: row[1] for row in result}
    out = []
    for alert in alerts:
        row = alert_payload(alert)
        row["cluster_name"] = clusters.get(alert.cluster_id) if alert.cluster_id else None
        row["serial_number"] = serials.get(alert.vehicle_id) if alert.vehicle_id else None
        row["operator_email"] = emails.get(alert.operator_id) if alert.operator_id else None
        out.append(row)
    return out


__all__ = [
    "HistoryFilters",
    "alert_history",
    "current_alerts",
    "describe",
    "escalate_alerts",
    "resolve_alerts",
    "silence_alerts",
]
