"""Login, refresh (rotation with reuse detection), logout (one device / all), token check."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.access.grants import valid_entries
from kickstand.cloud.accounts import service as accounts
from kickstand.cloud.accounts.devices import record_login_device
from kickstand.cloud.api.deps import (
    BearerDep,
    ClaimsDep,
    ClientAddressDep,
    CurrentUser,
    SessionDep,
    SettingsDep,
)
from kickstand.cloud.api.errors import refresh_token_reused, token_expired, unauthenticated
from kickstand.cloud.api.openapi import error_responses
from kickstand.cloud.api.schemas import (
    CheckData,
    Envelope,
    LoginData,
    LoginRequest,
    LogoutRequest,
    OkEnvelope,
    Permission,
    RefreshData,
)
from kickstand.cloud.config import Settings
from kickstand.cloud.models import RefreshToken, User
from kickstand.cloud.security import (
    create_access_token,
    hash_refresh_token,
    new_refresh_token,
)

router = APIRouter(prefix="/auth", tags=["auth"])
log = logging.getLogger("kickstand.cloud.api.auth")


def _issue_refresh(
    session: AsyncSession, settings: Settings, user: User, family_id: str, device_id: str | None
) -> str:
    token, token_hash = new_refresh_token()
    session.add(
        RefreshToken(
            user_id=user.id,
            token_hash=token_hash,
            family_id=family_id,
            device_id=device_id,
            expires_at=datetime.now(UTC) + timedelta(seconds=settings.JWT_REFRESH_TTL_S),
        )
    )
    return token


@router.post(
    "/login",
    response_model=Envelope[LoginData],
    summary="Log in with email and password",
    description="Refusals: wrong email or password (code 5, counted); email not confirmed "
    "(code 7, `data.token` authorizes `POST /v1/auth/email/confirm/resend`); too many failed "
    "logins for the account or the client address (429, code 30, `Retry-After`).",
    responses=error_responses(401, 403, 429),
)
async def login(
    body: LoginRequest, address: ClientAddressDep, session: SessionDep, settings: SettingsDep
) -> Envelope[LoginData]:
    user = await accounts.authenticate(
        session,
        settings,
        email=body.email,
        password=body.password,
        address=address,
        now=datetime.now(UTC),
    )
    refresh = _issue_refresh(
        session, settings, user, str(uuid.uuid4()), body.device.id if body.device else None
    )
    if body.device is not None and body.device.id is not None:
        await record_login_device(
            session, user.id, body.device.id, os=body.device.os, model=body.device.model,
            app_version=body.device.app_version, now=datetime.now(UTC),
        )  # fmt: skip
    await session.commit()
    access = create_access_token(settings, user.id, user.permissions, user.token_generation)
    log.info("event=login user_id=%s", user.id)
    return Envelope(
        data=LoginData(
            token=access,
            refresh_token=refresh,
            user_id=user.id,
            permissions=[
                Permission.model_validate(p)
                for p in valid_entries(user.permissions, user_id=user.id)
            ],
            expires_in=settings.JWT_ACCESS_TTL_S,
        )
    )


@router.post(
    "/refresh",
    response_model=Envelope[RefreshData],
    summary="New access token; send the REFRESH token as the Bearer token",
    description="The refresh token is rotated: the one sent is invalidated and a new one "
    "returned. Sending an already-used refresh token revokes that whole login.",
)
async def refresh(
    credentials: BearerDep, session: SessionDep, settings: SettingsDep
) -> Envelope[RefreshData]:
    if credentials is None:
        raise unauthenticated("send the refresh token as `Authorization: Bearer <refresh_token>`")
    now = datetime.now(UTC)
    row = (
        await session.scalars(
            select(RefreshToken)
            .where(RefreshToken.token_hash == hash_refresh_token(credentials.credentials))
            .with_for_update(key_share=True)
        )
    ).first()
    if row is None:
        raise unauthenticated("unknown refresh token; log in again")
    if row.used_at is not None or row.revoked_at is not None:
        if row.used_at is not None:
            # A rotated token came back: someone kept a copy. End that login everywhere.
            await session.execute(
                update(RefreshToken)
                .where(RefreshToken.family_id == row.family_id, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            await session.commit()
            log.warning(
                "event=refresh_token_reuse user_id=%s family=%s", row.user_id, row.family_id
            )
            raise refresh_token_reused()
        raise unauthenticated("this session was logged out; log in again")
    if row.expires_at <= now:
        raise token_expired("your session has expired; log in again")
    user = await session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise unauthenticated("this account no longer exists or is disabled")
    row.used_at = now
    new_refresh = _issue_refresh(session, settings, user, row.family_id, row.device_id)
    await session.commit()
    access = create_access_token(settings, user.id, user.permissions, user.token_generation)
    return Envelope(
        data=RefreshData(
            access_token=access, refresh_token=new_refresh, expires_in=settings.JWT_ACCESS_TTL_S
        )
    )


@router.post("/logout", response_model=OkEnvelope, summary="Log out this device")
async def logout(body: LogoutRequest, user: CurrentUser, session: SessionDep) -> OkEnvelope:
    row = (
        await session.scalars(
            select(RefreshToken).where(
                RefreshToken.token_hash == hash_refresh_token(body.refresh_token),
                RefreshToken.user_id == user.id,
            )
        )
    ).first()
    if row is not None:
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == row.family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        await session.commit()
    return OkEnvelope()


@router.post("/logout-all", response_model=OkEnvelope, summary="Log out every device")
async def logout_all(user: CurrentUser, session: SessionDep) -> OkEnvelope:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    user.token_generation += 1  # access tokens already handed out stop working too
    await session.commit()
    return OkEnvelope()


@router.get("/check", response_model=Envelope[CheckData], summary="Token validity and permissions")
async def check(user: CurrentUser, claims: ClaimsDep) -> Envelope[CheckData]:
    return Envelope(
        data=CheckData(
            user_id=user.id,
            permissions=[
                Permission.model_validate(p)
                for p in valid_entries(claims.permissions, user_id=user.id)
            ],
        )
    )
