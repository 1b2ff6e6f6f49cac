"""The agency tokens of the MDS provider API (migration 0026)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from kickstand.cloud.models import Base, utcnow


class MdsAgencyToken(Base):
    """A bearer token an operator issued to a city's agency for one network's MDS data.

    Only the SHA-256 of the token is kept: the token carries 256 random bits, so a fast
    hash is enough to make a stolen table useless, and it lets a request find its row by
    one indexed lookup (a salted slow hash would need the row first)."""

    __tablename__ = "mds_agency_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    network_id: Mapped[int] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), index=True
    )
    #: Who it is for ("Ville de Lyon — mobility team").
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    #: Revoked: refused from then on (kept for the record).
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
