"""The first administrator of a fresh deployment (``python -m kickstand.cloud create-admin``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import select

from kickstand.cloud.accounts.errors import EmailTakenError
from kickstand.cloud.accounts.service import normalize_email
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.models import User, UserRole
from kickstand.cloud.security import hash_password

#: Stricter than a rider's 8: this account can do everything.
MIN_ADMIN_PASSWORD = 12


class WeakPasswordError(ValueError):
    pass


def check_admin_password(password: str) -> None:
    if len(password) < MIN_ADMIN_PASSWORD or len(password) > 255:
        raise WeakPasswordError(
            f"an administrator's password needs {MIN_ADMIN_PASSWORD} to 255 characters"
        )


async def create_admin(
    database_url: str, email: str, password: str, full_name: str | None = None
) -> int:
    """Create an active administrator with a confirmed email; returns its id. The schema must
    be migrated. An address that already has an account is refused (nothing changes)."""
    check_admin_password(password)
    email = normalize_email(email)
    password_hash = await asyncio.to_thread(hash_password, password)
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            if await session.scalar(select(User.id).where(User.email == email)) is not None:
                raise EmailTakenError(f"{email} already has an account")
            now = datetime.now(UTC)
            user = User(
                email=email,
                password_hash=password_hash,
                full_name=full_name,
                role=UserRole.ADMIN,
                permissions=[],
                email_confirmed_at=now,
                terms_accepted_at=now,
                created_at=now,
            )
            session.add(user)
            await session.flush()
            return user.id
    finally:
        await engine.dispose()
