"""Tables of the stations package: localized cluster descriptions, cluster pictures and the
history of device outages."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kickstand.cloud.models import Base, utcnow


class ClusterDescription(Base):
    """Seed 002 "Update cluster description": one text per language (ISO 639-1)."""

    __tablename__ = "cluster_descriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"), index=True)
    lang: Mapped[str] = mapped_column(String(2))
    description: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("cluster_id", "lang", name="uq_cluster_descriptions_cluster_lang"),
    )


class ClusterPicture(Base):
    """An uploaded picture, its bytes in the database (every API process serves it, no
    shared disk needed); ``key`` is the seed's picture key (``clusterpictures/<uuid>.jpg``)."""

    __tablename__ = "cluster_pictures"

    id: Mapped[int] = mapped_column(primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"), index=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    content_type: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeviceOutage(Base):
    """A period a device was offline: opened when ingest takes it offline (its death), closed
    when a birth or heartbeat brings it back (``ended_at`` None: still offline)."""

    __tablename__ = "device_outages"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (Index("ix_device_outages_device_started", "device_id", "started_at"),)
