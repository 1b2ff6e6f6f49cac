"""The app devices a rider logs in with (seed 002 "Get user devices")."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.accounts.models import UserDevice


async def record_login_device(
    session: AsyncSession,
    user_id: int,
    device_id: str,
    *,
    os: str | None,
    model: str | None,
    app_version: str | None,
    now: datetime,
) -> None:
    """Kept in the login's transaction: a known device gets its latest os/model/version."""
    values = {"os": os, "model": model, "app_version": app_version, "last_login_at": now}
    mine = (UserDevice.user_id == user_id) & (UserDevice.device_id == device_id)
    found = await session.execute(
        update(UserDevice).where(mine).values(**values),
        execution_options={"synchronize_session": False},
    )
    if getattr(found, "rowcount", 0):
        return
    try:
        async with session.begin_nested():
            session.add(
                UserDevice(user_id=user_id, device_id=device_id, first_login_at=now, **values)
            )
    except IntegrityError:  # a concurrent first login with this device inserted it
        await session.execute(
            update(UserDevice).where(mine).values(**values),
            execution_options={"synchronize_session": False},
        )


async def user_devices(session: AsyncSession, user_id: int) -> Sequence[UserDevice]:
    rows = await session.scalars(
        select(UserDevice)
        .where(UserDevice.user_id == user_id)
        .order_by(UserDevice.last_login_at.desc(), UserDevice.id.desc())
    )
    return rows.all()
