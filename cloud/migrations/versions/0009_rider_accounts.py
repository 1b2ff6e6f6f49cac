"""rider accounts: confirmed email, terms, language; account tokens, consents, login
throttle, mail outbox

* ``users.email_confirmed_at``: accounts that existed before sign-up was possible (demo
  seed, operators) count as confirmed at their creation; ``terms_accepted_at``; ``lang``.
* ``account_tokens``: confirmation / email-change / password-reset tokens (sha256 only).
* ``user_consents``: seed 001's consents per rider.
* ``login_throttle``: failed-login counters shared by every API process.
* ``mail_outbox``: mails written with the change that needs them, sent after the commit.

Revision ID: 0009_rider_accounts
Revises: 0008_device_contract
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import kickstand.cloud.dbtypes

revision: str = "0009_rider_accounts"
down_revision: str | None = "0008_device_contract"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(_time("email_confirmed_at", True))
        batch_op.add_column(_time("terms_accepted_at", True))
        batch_op.add_column(
            sa.Column("lang", sa.String(length=2), nullable=False, server_default="en")
        )
    op.execute("UPDATE users SET email_confirmed_at = created_at")
    op.create_table(
        "account_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "purpose",
            sa.Enum(
                "email-confirm",
                "email-change",
                "password-reset",
                name="account_token_purpose",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("new_email", sa.String(length=255), nullable=True),
        _time("created_at", False),
        _time("expires_at", False),
        _time("used_at", True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_account_tokens_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_account_tokens_token_hash")),
    )
    with op.batch_alter_table("account_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_account_tokens_user_id"), ["user_id"], unique=False)
    op.create_table(
        "user_consents",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Boolean(), nullable=False),
        _time("updated_at", False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_consents_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", "type", name=op.f("pk_user_consents")),
    )
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(length=300), nullable=False),
        _time("window_started_at", False),
        sa.Column("failures", sa.Integer(), nullable=False),
        _time("locked_until", True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttle")),
    )
    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("to_address", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        _time("created_at", False),
        _time("sent_at", True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _time("next_attempt_at", False),
        _time("claimed_until", True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_mail_outbox_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_outbox")),
    )
    with op.batch_alter_table("mail_outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_mail_outbox_pending", ["sent_at", "next_attempt_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("mail_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_mail_outbox_pending")
    op.drop_table("mail_outbox")
    op.drop_table("login_throttle")
    op.drop_table("user_consents")
    with op.batch_alter_table("account_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_tokens_user_id"))
    op.drop_table("account_tokens")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("lang")
        batch_op.drop_column("terms_accepted_at")
        batch_op.drop_column("email_confirmed_at")
