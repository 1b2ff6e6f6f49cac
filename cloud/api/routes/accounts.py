"""Rider accounts (seed 001 Auth and user operations): sign-up, email confirmation and
resend, password reset, email change, consents. The rules are in
``kickstand.cloud.accounts.service``; mails queued there are sent after the commit, as a
background task of the request (and retried by the app's mail relay)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query

from kickstand.cloud.accounts import mail, service
from kickstand.cloud.accounts.errors import InvalidAccountTokenError
from kickstand.cloud.api.account_schemas import (
    ConsentPublic,
    ConsentsUnsubscribe,
    ConsentsUpdate,
    EmailChangeConfirm,
    EmailChangeData,
    EmailChangeRequest,
    EmailConfirmedData,
    PasswordResetConfirm,
    PasswordResetRequest,
    SignupData,
    SignupRequest,
    TokenRequest,
)
from kickstand.cloud.api.deps import (
    BearerDep,
    ClientAddressDep,
    CurrentUser,
    SessionDep,
    SessionmakerDep,
    SettingsDep,
)
from kickstand.cloud.api.openapi import error_responses
from kickstand.cloud.api.schemas import Envelope, OkEnvelope

router = APIRouter(tags=["accounts"])


def _send_after_response(
    background: BackgroundTasks, maker: SessionmakerDep, settings: SettingsDep
) -> None:
    background.add_task(mail.send_after_commit, maker, settings)


@router.post(
    "/auth/signup",
    status_code=201,
    response_model=Envelope[SignupData],
    summary="Create a rider account; a confirmation code is mailed",
    description="The account can log in once the mailed code is confirmed "
    "(`POST /v1/auth/email/confirm`); until then login answers code 7. An address that "
    "already has an account gets the same answer here and a mail saying so.",
    responses=error_responses(429),
)
async def signup(
    body: SignupRequest,
    address: ClientAddressDep,
    session: SessionDep,
    settings: SettingsDep,
    maker: SessionmakerDep,
    background: BackgroundTasks,
) -> Envelope[SignupData]:
    await service.sign_up(
        session,
        settings,
        email=body.email,
        password=body.password,
        accept_terms=body.accept_terms,
        address=address,
        full_name=body.full_name,
        lang=body.lang,
        consents=body.consents,
        now=datetime.now(UTC),
    )
    _send_after_response(background, maker, settings)
    return Envelope(data=SignupData(email=service.normalize_email(body.email)))


@router.post(
    "/auth/email/confirm",
    response_model=Envelope[EmailConfirmedData],
    summary="Confirm the email with the mailed code",
    responses=error_responses(400),
)
async def confirm_email(body: TokenRequest, session: SessionDep) -> Envelope[EmailConfirmedData]:
    user = await service.confirm_email(session, body.token, datetime.now(UTC))
    return Envelope(data=EmailConfirmedData(email=user.email))


@router.post(
    "/auth/email/confirm/resend",
    response_model=OkEnvelope,
    summary="Mail the confirmation code again",
    description="Authorized by the token of the login's code 7 answer "
    "(`Authorization: Bearer <data.token>`); earlier codes stop working.",
    responses=error_responses(400, 429),
)
async def resend_confirmation(
    credentials: BearerDep,
    session: SessionDep,
    settings: SettingsDep,
    maker: SessionmakerDep,
    background: BackgroundTasks,
) -> OkEnvelope:
    if credentials is None:
        raise InvalidAccountTokenError(
            "send the token of the login's code 7 answer as `Authorization: Bearer <token>`"
        )
    await service.resend_confirmation(session, settings, credentials.credentials, datetime.now(UTC))
    _send_after_response(background, maker, settings)
    return OkEnvelope()


@router.post(
    "/auth/password/reset",
    response_model=OkEnvelope,
    summary="Mail a password reset code",
    description="Answers the same whether the address has an account or not.",
    responses=error_responses(429),
)
async def request_password_reset(
    body: PasswordResetRequest,
    session: SessionDep,
    settings: SettingsDep,
    maker: SessionmakerDep,
    background: BackgroundTasks,
) -> OkEnvelope:
    await service.request_password_reset(session, settings, body.email, datetime.now(UTC))
    _send_after_response(background, maker, settings)
    return OkEnvelope()


@router.post(
    "/auth/password/reset/confirm",
    response_model=OkEnvelope,
    summary="Set a new password with the mailed code",
    description="Every session of the account ends (access and refresh tokens).",
    responses=error_responses(400),
)
async def reset_password(body: PasswordResetConfirm, session: SessionDep) -> OkEnvelope:
    await service.reset_password(session, body.token, body.password, datetime.now(UTC))
    return OkEnvelope()


@router.post(
    "/users/me/email",
    response_model=OkEnvelope,
    summary="Change my email: a code is mailed to the new address",
    responses=error_responses(409, 429),
)
async def request_email_change(
    body: EmailChangeRequest,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    maker: SessionmakerDep,
    background: BackgroundTasks,
) -> OkEnvelope:
    await service.request_email_change(session, settings, user, body.email, datetime.now(UTC))
    _send_after_response(background, maker, settings)
    return OkEnvelope()


@router.get(
    "/auth/email/change",
    response_model=Envelope[EmailChangeData],
    summary="The email change a mailed code stands for (the code stays valid)",
    responses=error_responses(400),
)
async def check_email_change(
    token: Annotated[str, Query(min_length=10, max_length=10, pattern=r"^[A-Za-z0-9]{10}$")],
    session: SessionDep,
) -> Envelope[EmailChangeData]:
    email, new_email = await service.check_email_change(session, token, datetime.now(UTC))
    return Envelope(data=EmailChangeData(email=email, new_email=new_email))


@router.post(
    "/auth/email/change",
    response_model=OkEnvelope,
    summary="Confirm an email change with the mailed code",
    responses=error_responses(400, 409),
)
async def confirm_email_change(body: EmailChangeConfirm, session: SessionDep) -> OkEnvelope:
    await service.confirm_email_change(session, body.email_token, body.email, datetime.now(UTC))
    return OkEnvelope()


@router.get(
    "/consents",
    response_model=Envelope[list[ConsentPublic]],
    summary="Every consent type, with my value",
)
async def consents(
    user: CurrentUser,
    session: SessionDep,
    lang: Annotated[str, Query(pattern=r"^[a-z]{2}$")] = "en",
) -> Envelope[list[ConsentPublic]]:
    rows = await service.consents_of(session, user.id, lang)
    return Envelope(data=[ConsentPublic(type=c.type, name=c.name, value=c.value) for c in rows])


@router.put("/users/me/consents", response_model=OkEnvelope, summary="Update my consents")
async def update_consents(
    body: ConsentsUpdate, user: CurrentUser, session: SessionDep
) -> OkEnvelope:
    await service.set_consents(session, user.id, body.consents, datetime.now(UTC))
    return OkEnvelope()


@router.put(
    "/consents/unsubscribe",
    response_model=OkEnvelope,
    summary="Update consents from a mail's unsubscribe link (no login)",
    responses=error_responses(400),
)
async def unsubscribe(
    body: ConsentsUnsubscribe, session: SessionDep, settings: SettingsDep
) -> OkEnvelope:
    await service.set_consents_by_token(
        session, settings, body.token, body.consents, datetime.now(UTC)
    )
    return OkEnvelope()
