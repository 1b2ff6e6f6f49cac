"""Tables of the local authorization list (on the shared ``Base.metadata``).

* ``auth_lists`` — per network, the version of its list of linked, unblocked badge UIDs;
  every change (a badge linked, unlinked, blocked, unblocked) bumps it by one.
* ``station_auth_lists`` — per station, the version it confirmed holding (its birth's
  ``auth_list_version``, or the DONE result of an update): who is behind.
* ``auth_list_sends`` — every AuthListUpdate sent (command id → kind and version), so a
  result can be read back as "holds version N" or "needs a FULL".
* ``auth_list_changes`` — what each version changed (UIDs added, removed): a DIFF from a
  station's confirmed version to the network's (migration 0021; older versions have none).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from kickstand.cloud.models import Base, utcnow


class AuthList(Base):
    __tablename__ = "auth_lists"

    network_id: Mapped[int] = mapped_column(
        ForeignKey("networks.id"), primary_key=True, autoincrement=False
    )
    version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class StationAuthList(Base):
    __tablename__ = "station_auth_lists"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    confirmed_version: Mapped[int] = mapped_column(Integer, default=0)
    confirmed_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuthListSend(Base):
    __tablename__ = "auth_list_sends"

    #: hex of the command id (as ``device_commands.command_id``).
    command_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # "full" / "diff"
    version: Mapped[int] = mapped_column(Integer)
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuthListChange(Base):
    __tablename__ = "auth_list_changes"

    network_id: Mapped[int] = mapped_column(
        ForeignKey("networks.id"), primary_key=True, autoincrement=False
    )
    #: The version this change made (the one before it is ``version - 1``).
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    #: Upper-case hex UIDs.
    added: Mapped[list[str]] = mapped_column(JSON, default=list)
    removed: Mapped[list[str]] = mapped_column(JSON, default=list)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
