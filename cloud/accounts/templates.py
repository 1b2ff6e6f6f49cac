"""The mails riders get (English; the rider's ``lang`` is kept for translations to come).

Each carries the 10-character token on a line of its own and a link to the app page
that sends it to the API (``ACCOUNT_LINK_BASE``).
"""

from __future__ import annotations

from kickstand.cloud.accounts.mail import Mail
from kickstand.cloud.config import Settings


def _hours(seconds: int) -> str:
    hours = seconds / 3600
    return f"{hours:g} hour{'s' if hours != 1 else ''}"


def email_confirmation(settings: Settings, to: str, token: str) -> Mail:
    return Mail(
        "email-confirm",
        to,
        "Confirm your email address",
        "Welcome to Kickstand!\n\n"
        "Confirm your email address to start riding:\n"
        f"{settings.ACCOUNT_LINK_BASE}/email/confirm?token={token}\n\n"
        f"or enter this code in the app: {token}\n\n"
        f"The code is valid for {_hours(settings.EMAIL_CONFIRM_TTL_S)}.\n",
    )


def already_registered(settings: Settings, to: str) -> Mail:
    # Sign-up answers the same whether the address is known or not (no account
    # enumeration); the owner learns of it here.
    return Mail(
        "already-registered",
        to,
        "You already have a Kickstand account",
        "Someone (maybe you) tried to sign up with this address, which already has an "
        "account.\n\nForgot your password? Reset it in the app:\n"
        f"{settings.ACCOUNT_LINK_BASE}/password/reset\n\n"
        "If it was not you, you can ignore this mail.\n",
    )


def password_reset(settings: Settings, to: str, token: str) -> Mail:
    return Mail(
        "password-reset",
        to,
        "Reset your password",
        "To choose a new password, open:\n"
        f"{settings.ACCOUNT_LINK_BASE}/password/reset/confirm?token={token}\n\n"
        f"or enter this code in the app: {token}\n\n"
        f"The code is valid for {_hours(settings.PASSWORD_RESET_TTL_S)} and works once. "
        "If you did not ask for it, ignore this mail: your password stays as it is.\n",
    )


def email_change(settings: Settings, to: str, token: str) -> Mail:
    return Mail(
        "email-change",
        to,
        "Confirm your new email address",
        "Your Kickstand account asked to use this address from now on. Confirm it:\n"
        f"{settings.ACCOUNT_LINK_BASE}/email/change?token={token}\n\n"
        f"or enter this code in the app: {token}\n\n"
        f"The code is valid for {_hours(settings.EMAIL_CHANGE_TTL_S)}.\n",
    )


def email_change_notice(settings: Settings, to: str, new_email: str) -> Mail:
    return Mail(
        "email-change-notice",
        to,
        "Your Kickstand email address is about to change",
        f"Your account asked to move to {new_email}. Nothing changes until that address "
        "is confirmed.\n\nIf it was not you, reset your password now:\n"
        f"{settings.ACCOUNT_LINK_BASE}/password/reset\n",
    )
