"""Request and answer bodies of the rider account operations (seed 001 Auth and user)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from kickstand.cloud.api.ids import Text

#: Seed 001's email and password limits (as the login's).
Email = Annotated[Text, Field(min_length=3, max_length=255, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Password = Annotated[Text, Field(min_length=8, max_length=255)]
#: Seed 001: mailed tokens are "= 10 characters".
MailedToken = Annotated[str, Field(min_length=10, max_length=10, pattern=r"^[A-Za-z0-9]{10}$")]


class SignupRequest(BaseModel):
    email: Email
    password: Password
    full_name: Text | None = Field(default=None, min_length=1, max_length=255)
    lang: str = Field(default="en", pattern=r"^[a-zA-Z]{2}$")
    app_label: Text | None = Field(default=None, min_length=1, max_length=20)
    #: The terms of use must be accepted to create an account.
    accept_terms: bool
    #: Seed 001 consent types (``GET /v1/consents``), e.g. ``{"emails.promotional": false}``.
    consents: dict[str, bool] = {}


class SignupData(BaseModel):
    email: str
    #: Always true: the account opens once the mailed code is confirmed.
    email_confirmation_required: bool = True


class TokenRequest(BaseModel):
    token: MailedToken


class EmailConfirmedData(BaseModel):
    """Seed 001's confirm answer (store links are not configured yet: null)."""

    email: str
    label_name: str | None = None
    android_store_url: str | None = None
    ios_store_url: str | None = None


class PasswordResetRequest(BaseModel):
    email: Email
    app_label: str | None = Field(default=None, min_length=1, max_length=20)


class PasswordResetConfirm(BaseModel):
    token: MailedToken
    password: Password


class EmailChangeRequest(BaseModel):
    email: Email


class EmailChangeConfirm(BaseModel):
    email_token: MailedToken
    email: Email


class EmailChangeData(BaseModel):
    email: str
    new_email: str


class ConsentPublic(BaseModel):
    type: str
    name: str
    value: bool


class ConsentsUpdate(BaseModel):
    consents: dict[str, bool]


class ConsentsUnsubscribe(BaseModel):
    consents: dict[str, bool]
    #: Seed 001: the unsubscribe token of a newsletter mail.
    token: Text = Field(min_length=1, max_length=1000)


class EmailNotConfirmedData(BaseModel):
    """The ``data`` of login code 7: a token for ``POST /v1/auth/email/confirm/resend``."""

    token: str
