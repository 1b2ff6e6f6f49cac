"""SQL of access control: access log pages, organizational units, roles, organizations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.access.models import AccessLog


@dataclass(frozen=True)
class AccessLogFilters:
    """Seed 002 "Get access logs" query parameters."""

    page_size: int = 20
    last_primary_key: int | None = None
    primary_key_dir: Literal["ASC", "DESC"] = "DESC"
    date_min: datetime | None = None
    date_max: datetime | None = None
    user_id: int | None = None
    target_path: str | None = None
    verb: str | None = None
    user_agent: str | None = None
    ip: str | None = None
    http_code_min: int | None = None
    http_code_max: int | None = None
    knot_code_min: int | None = None
    knot_code_max: int | None = None
    #: Only these users' requests (None: everyone's).
    only_users: frozenset[int] | None = None


def _filtered(f: AccessLogFilters) -> Select[AccessLog]:
    q = select(AccessLog)
    log = AccessLog
    if f.date_min is not None:
        q = q.where(log.created_at >= f.date_min)
    if f.date_max is not None:
        q = q.where(log.created_at <= f.date_max)
    if f.user_id is not None:
        q = q.where(log.user_id == f.user_id)
    if f.target_path is not None:
        q = q.where(log.target_path.startswith(f.target_path, autoescape=True))
    if f.verb is not None:
        q = q.where(log.verb == f.verb.upper())
    if f.user_agent is not None:
        q = q.where(log.user_agent.contains(f.user_agent, autoescape=True))
    if f.ip is not None:
        q = q.where(log.ip == f.ip)
    if f.http_code_min is not None:
        q = q.where(log.http_code >= f.http_code_min)
    if f.http_code_max is not None:
        q = q.where(log.http_code <= f.http_code_max)
    if f.knot_code_min is not None:
        q = q.where(log.knot_code >= f.knot_code_min)
    if f.knot_code_max is not None:
        q = q.where(log.knot_code <= f.knot_code_max)
    if f.only_users is not None:
        q = q.where(log.user_id.in_(sorted(f.only_users)))
    return q


async def list_access_logs(session: AsyncSession, f: AccessLogFilters) -> Sequence[AccessLog]:
    q = _filtered(f)
    ascending = f.primary_key_dir == "ASC"
    if f.last_primary_key is not None:
        q = q.where(
            AccessLog.id > f.last_primary_key if ascending else AccessLog.id < f.last_primary_key
        )
    q = q.order_by(AccessLog.id.asc() if ascending else AccessLog.id.desc()).limit(f.page_size)
    return (await session.scalars(q)).all()
