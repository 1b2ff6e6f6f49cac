"""Access-control tables (seed 002 Roles, OrganizationalUnits, Organizations, AccessLogs,
blocked users). A user's grants themselves stay in ``users.permissions`` (see ``grants``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kickstand.cloud.models import Base, utcnow


class OrganizationalUnit(Base):
    """What a grant covers: networks (and, as the seed has them, clusters, labels, orgs)."""

    __tablename__ = "organizational_units"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    networks: Mapped[list[int]] = mapped_column(JSON, default=list)
    clusters: Mapped[list[int]] = mapped_column(JSON, default=list)
    app_labels: Mapped[list[int]] = mapped_column(JSON, default=list)
    organizations: Mapped[list[int]] = mapped_column(JSON, default=list)


class Role(Base):
    """A named set of permissions (seed 002 Roles); granting it grants each of them."""

    __tablename__ = "roles"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(50), unique=True)
    perms: Mapped[list[str]] = mapped_column(JSON, default=list)


class Organization(Base):
    """A business customer whose users ride under its rules (seed 002 Organizations).

    Scoped to networks: an operator reaches the organizations of its networks — the one it
    was created for (``network_id``) and those a network access rule names on one of its
    networks; an organization of no network (created by a global admin, or older than
    migration 0022 with nothing to tell its network) only global grants reach.
    """

    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The network it was created for (None: installation-wide, global grants only).
    network_id: Mapped[int | None] = mapped_column(
        ForeignKey("networks.id", ondelete="SET NULL"), default=None, index=True
    )
    #: The operator who created it (audit; None before migration 0022 or once deleted).
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    third_party_id: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255))
    administrator_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    description: Mapped[str | None] = mapped_column(Text, default=None)
    is_guarantor: Mapped[bool] = mapped_column(Boolean, default=False)
    allow_outside_rules: Mapped[bool] = mapped_column(Boolean, default=False)
    paid_outside_rules_ratio: Mapped[float] = mapped_column(Float, default=0.0)
    only_show_matching_clusters: Mapped[bool] = mapped_column(Boolean, default=False)
    email_pattern: Mapped[str | None] = mapped_column(String(255), default=None)
    pays_rule_overrun: Mapped[bool] = mapped_column(Boolean, default=False)
    reenrolment_frequency_in_days: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UserOrganization(Base):
    """A user linked to an organization (seed 002 Users: organizations link/unlink)."""

    __tablename__ = "user_organizations"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    linked_at: Mapped[datetime] = mapped_column(default=utcnow)


class UserBlock(Base):
    """Why and by whom a user is blocked (seed 002 "Get blocked information")."""

    __tablename__ = "user_blocks"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    reason: Mapped[str] = mapped_column(String(1000))
    blocked_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    blocked_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccessLog(Base):
    """One dashboard request (seed 002 AccessLogs)."""

    __tablename__ = "access_logs"

    id: Mapped[int] = mapped_column(primary_key=True)
    # No foreign key: the log outlives the account, and a write must never fail on it.
    user_id: Mapped[int | None] = mapped_column(Integer, default=None)
    target_path: Mapped[str] = mapped_column(String(2048))
    verb: Mapped[str] = mapped_column(String(10))
    user_agent: Mapped[str | None] = mapped_column(String(2048), default=None)
    ip: Mapped[str | None] = mapped_column(String(128), default=None)
    http_code: Mapped[int] = mapped_column(Integer)
    #: The envelope's ``code`` when the answer was an error (seed: knot_code).
    knot_code: Mapped[int | None] = mapped_column(Integer, default=None)
    #: The networks the request touched, as the dependency saw them (None: not scoped).
    network_ids: Mapped[list[int] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_access_logs_created_at", "created_at"),
        Index("ix_access_logs_user_id", "user_id"),
    )
