"""Dependencies as ``Annotated`` aliases: ``SessionDep``, ``CurrentUser``, ``GatewayDep``,
``TelemetryDep``, …"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.api.errors import (
    telemetry_unavailable,
    token_expired,
    unauthenticated,
)
from kickstand.cloud.config import Settings
from kickstand.cloud.models import User
from kickstand.cloud.rent_gateway import CommandGateway
from kickstand.cloud.security import AccessClaims, TokenError, decode_access_token
from kickstand.cloud.telemetry import TelemetryStore

bearer = HTTPBearer(auto_error=False, description="access token from /v1/auth/login")

# Dependencies are ``async def`` even when they never await: FastAPI runs a plain ``def``
# dependency in its thread pool, a thread hand-off per dependency per request.


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return maker


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with maker() as session:
        yield session


async def get_command_gateway(request: Request) -> CommandGateway:
    """The gateway given to ``create_app`` (``app.state.command_gateway``)."""
    gateway: CommandGateway = request.app.state.command_gateway
    return gateway


async def get_telemetry_store(request: Request) -> TelemetryStore:
    """The store opened at startup (``routes.telemetry.telemetry_lifespan``), kept in
    ``app.state.telemetry_store`` (tests may replace it); none (not opened, or it failed
    to): 503."""
    store: TelemetryStore | None = getattr(request.app.state, "telemetry_store", None)
    if store is None:
        raise telemetry_unavailable()
    return store


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
SessionmakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]
GatewayDep = Annotated[CommandGateway, Depends(get_command_gateway)]
TelemetryDep = Annotated[TelemetryStore, Depends(get_telemetry_store)]
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def get_client_address(request: Request) -> str:
    """The caller's address as the server sees it (behind a proxy, uvicorn's proxy headers
    and ``FORWARDED_ALLOW_IPS`` make it the client's): what per-address limits count."""
    return request.client.host if request.client else "unknown"


ClientAddressDep = Annotated[str, Depends(get_client_address)]


async def get_token_claims(
    request: Request, settings: SettingsDep, credentials: BearerDep
) -> AccessClaims:
    if credentials is None:
        raise unauthenticated()
    try:
        claims = decode_access_token(settings, credentials.credentials)
    except TokenError as exc:
        if exc.expired:
            raise token_expired(
                "your session has expired: refresh the token or log in again",
                reason="token-expired",
                bearer=True,
            ) from exc
        raise unauthenticated(f"{exc}; log in again") from exc
    # Whose request it was, for the rider API request log (kickstand.cloud.access.log).
    request.state.token_user_id = claims.user_id
    return claims


ClaimsDep = Annotated[AccessClaims, Depends(get_token_claims)]


def check_rider(claims: AccessClaims, is_active: bool | None, generation: int | None) -> None:
    """Is the token's session still valid for the account as read (None: no account)?"""
    if not is_active:
        raise unauthenticated("this account no longer exists or is disabled")
    if claims.generation != generation:
        raise unauthenticated("you logged out of every device; log in again")


_RIDER_SESSION = select(User.is_active, User.token_generation).where(
    User.id == bindparam("user_id")
)


async def verify_rider(session: AsyncSession, claims: AccessClaims) -> None:
    """The checks of ``CurrentUser`` without loading the user (for hot read paths)."""
    row = (await session.execute(_RIDER_SESSION, {"user_id": claims.user_id})).first()
    check_rider(claims, *(row if row is not None else (None, None)))


async def get_current_user(session: SessionDep, claims: ClaimsDep) -> User:
    user = await session.get(User, claims.user_id)
    check_rider(
        claims,
        user.is_active if user is not None else None,
        user.token_generation if user is not None else None,
    )
    assert user is not None
    # End the read transaction now: on SQLite it holds the database lock, and routes that
    # wait on devices must not hold one (objects stay loaded: expire_on_commit=False).
    await session.commit()
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
