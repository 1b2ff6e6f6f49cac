"""The stocks table: a depot's address and the shape that holds its vehicles."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from kickstand.cloud.models import Base, utcnow


class Stock(Base):
    __tablename__ = "stocks"

    id: Mapped[int] = mapped_column(primary_key=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    country: Mapped[int] = mapped_column(Integer)
    city: Mapped[str] = mapped_column(String(128))
    zipcode: Mapped[str] = mapped_column(String(16))
    street: Mapped[str] = mapped_column(String(128))
    #: GeoJSON Polygon/MultiPolygon ([lng, lat]); a vehicle last seen inside is in stock.
    shape: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
