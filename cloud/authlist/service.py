"""The local authorization list of a network's stations (SPEC §7.4), the cloud's side.

A network's list is the UIDs of its badges that are linked and not blocked. Its version
starts at 1 (a station that never received a list holds version 0, so it gets a FULL) and
goes up by one with each change: a badge linked, unlinked, blocked or unblocked.

When the cloud sends what:

* FULL — at an accepted birth whose ``auth_list_version`` differs from the network's,
  after a station refused a DIFF with VERSION_MISMATCH, and from the ingest sweep to an
  online station still behind :data:`CATCH_UP_AFTER_S` after its last update;
* DIFF ``version - 1 → version`` — to every station of the network at each change.

A list longer than :data:`MAX_UIDS` (SPEC §10) goes as a FULL of the first ``MAX_UIDS``
followed by DIFFs that add the rest with ``base_version == version`` (continuations).

Each update is a signed command: recorded (``device_commands`` and ``auth_list_sends``) in
the caller's transaction and published by the caller after its commit. A station's DONE
confirms the version it holds (``station_auth_lists``); so the cloud knows who is behind.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import ScalarResult, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.authlist.tables import AuthList, AuthListChange, AuthListSend, StationAuthList
from kickstand.cloud.commands.issuer import CommandIssuer
from kickstand.cloud.errors import ConflictError
from kickstand.cloud.liveness import PRESENCE_COLUMNS, online_of
from kickstand.cloud.models import Badge, Cluster, Device, Station, table_of, utcnow
from kickstand.cloud.rent_gateway import IssuedCommand
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.codec import MAX_AUTH_ENTRIES
from kickstand.protocol.v1.enums import AuthListKind

log = logging.getLogger("kickstand.cloud.authlist")

MAX_UIDS = MAX_AUTH_ENTRIES
#: A list update stays valid this long: a station busy with other commands still takes it.
UPDATE_VALID_S = 300.0


def uid_bytes(uid: str) -> bytes:
    return bytes.fromhex(uid)


# ---------------------------------------------------------------- pure: what to send


def full_updates(version: int, uids: Sequence[bytes]) -> list[m.AuthListUpdate]:
    """The FULL list at ``version``, split at :data:`MAX_UIDS` UIDs per update."""
    ordered = sorted(uids)
    first = tuple(ordered[:MAX_UIDS])
    updates = [m.AuthListUpdate(AuthListKind.FULL, version, None, first)]
    for start in range(MAX_UIDS, len(ordered), MAX_UIDS):
        chunk = tuple(ordered[start : start + MAX_UIDS])
        updates.append(m.AuthListUpdate(AuthListKind.DIFF, version, version, chunk))
    return updates


def diff_update(version: int, add: Iterable[bytes], remove: Iterable[bytes]) -> m.AuthListUpdate:
    """One change of the list: ``version - 1 → version``."""
    return m.AuthListUpdate(
        AuthListKind.DIFF, version, version - 1, tuple(sorted(add)), tuple(sorted(remove))
    )


# ---------------------------------------------------------------- the network's list


def _insert(session: AsyncSession, model: type[AuthList] | type[StationAuthList]) -> Any:
    """INSERT … ON CONFLICT of the session's database: two workers meeting on one row
    (a station's birth and its result, two changes of a network) never clash."""
    table = table_of(model)
    if session.get_bind().dialect.name == "postgresql":
        return pg_insert(table)
    return sqlite_insert(table)


async def _ensure(session: AsyncSession, network_id: int) -> None:
    stmt = _insert(session, AuthList).on_conflict_do_nothing(index_elements=["network_id"])
    await session.execute(stmt, {"network_id": network_id, "version": 1, "updated_at": utcnow()})


async def network_version(session: AsyncSession, network_id: int) -> int:
    await _ensure(session, network_id)
    version: int = (
        await session.execute(select(AuthList.version).where(AuthList.network_id == network_id))
    ).scalar_one()
    return version


async def network_uids(session: AsyncSession, network_id: int) -> list[bytes]:
    rows: ScalarResult[str | None] = await session.scalars(
        select(Badge.uid).where(
            Badge.network_id == network_id, Badge.uid.is_not(None), Badge.blocked_at.is_(None)
        )
    )
    return [uid_bytes(uid) for uid in rows if uid]


async def bump(session: AsyncSession, network_id: int) -> int:
    """The network's list changed: its new version (the row is locked until the commit, so
    two changes never share a version)."""
    await _ensure(session, network_id)
    version: int = (
        await session.execute(
            update(AuthList)
            .where(AuthList.network_id == network_id)
            .values(version=AuthList.version + 1, updated_at=utcnow())
            .returning(AuthList.version),
            execution_options={"synchronize_session": False},
        )
    ).scalar_one()
    return version


async def station_ids(session: AsyncSession, network_id: int) -> list[str]:
    rows: ScalarResult[str] = await session.scalars(
        select(Station.device_id)
        .join(Cluster, Cluster.id == Station.cluster_id)
        .where(Cluster.network_id == network_id)
        .order_by(Station.device_id)
    )
    return list(rows)


# ---------------------------------------------------------------- sending


async def _send(
    session: AsyncSession,
    issuer: CommandIssuer,
    device_id: str,
    updates: Sequence[m.AuthListUpdate],
) -> list[IssuedCommand]:
    # Imported here: commands.records imports the ingest package, whose handlers import this.
    from kickstand.cloud.commands.records import record_command

    issued: list[IssuedCommand] = []
    for body in updates:
        command = issuer.issue(device_id, body, valid_s=UPDATE_VALID_S)
        await record_command(session, command)
        session.add(
            AuthListSend(
                command_id=command.command_id.hex(),
                device_id=device_id,
                kind=body.kind.name.lower(),
                version=body.version,
                sent_at=command.issued_at,
            )
        )
        issued.append(command)
    await session.flush()
    return issued


async def send_full(
    session: AsyncSession, issuer: CommandIssuer, device_id: str, network_id: int
) -> list[IssuedCommand]:
    version = await network_version(session, network_id)
    uids = await network_uids(session, network_id)
    log.info("event=auth_list_full device=%s version=%s uids=%s", device_id, version, len(uids))
    return await _send(session, issuer, device_id, full_updates(version, uids))


async def changed(
    session: AsyncSession,
    issuer: CommandIssuer | None,
    network_id: int,
    *,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
) -> list[IssuedCommand]:
    """A badge was linked / unlinked / blocked / unblocked: bump the version and (with an
    issuer) a DIFF to every station of the network. Without one, nothing is sent: each
    station catches up at its next birth or its next DIFF (VERSION_MISMATCH → FULL)."""
    add, remove = [u.upper() for u in add], [u.upper() for u in remove]
    version = await bump(session, network_id)
    # Kept for an operator's DIFF from an older version (diff_since).
    session.add(AuthListChange(network_id=network_id, version=version, added=add, removed=remove))
    if issuer is None:
        return []
    body = diff_update(version, map(uid_bytes, add), map(uid_bytes, remove))
    issued: list[IssuedCommand] = []
    for device_id in await station_ids(session, network_id):
        issued += await _send(session, issuer, device_id, [body])
    log.info(
        "event=auth_list_diff network=%s version=%s stations=%s", network_id, version, len(issued)
    )
    return issued


async def diff_since(session: AsyncSession, network_id: int, base: int) -> m.AuthListUpdate | None:
    """One DIFF ``base → the network's version``: the UIDs the versions after ``base``
    touched, added when in the list now, removed when not. None when a FULL is needed: a
    version after ``base`` left no change on record (older than migration 0021), or the
    DIFF would not fit one update."""
    version = await network_version(session, network_id)
    changes = (
        await session.scalars(
            select(AuthListChange).where(
                AuthListChange.network_id == network_id,
                AuthListChange.version > base,
                AuthListChange.version <= version,
            )
        )
    ).all()
    if base > version or len(changes) != version - base:
        return None
    touched = {uid for c in changes for uid in (*c.added, *c.removed)}
    now = set(await network_uids(session, network_id))
    add = sorted(uid_bytes(u) for u in touched if uid_bytes(u) in now)
    remove = sorted(uid_bytes(u) for u in touched if uid_bytes(u) not in now)
    if len(add) + len(remove) > MAX_UIDS:
        return None
    return m.AuthListUpdate(AuthListKind.DIFF, version, base, tuple(add), tuple(remove))


async def send_diff(
    session: AsyncSession, issuer: CommandIssuer, device_id: str, network_id: int
) -> list[IssuedCommand]:
    """An operator's DIFF: from the version the station confirmed holding to the network's
    (ConflictError ``diff-unavailable`` when only a FULL can bring it there)."""
    base = await confirmed_version(session, device_id)
    body = await diff_since(session, network_id, base) if base else None
    if body is None:
        raise ConflictError(
            f"{device_id} holds version {base or 0}: no DIFF can bring it to the network's "
            "list (changes not on record, or too many): send a FULL",
            reason="diff-unavailable",
        )
    log.info(
        "event=auth_list_diff_operator device=%s base=%s version=%s", device_id, base, body.version
    )
    return await _send(session, issuer, device_id, [body])


@runtime_checkable
class ListPublisher(Protocol):
    """What publishes updates from outside ingest (the API's MQTT command gateway)."""

    issuer: CommandIssuer

    async def publish(self, issued: IssuedCommand) -> bool: ...


async def publish_all(publisher: ListPublisher, issued: Sequence[IssuedCommand]) -> int:
    """After the commit: publish ``issued``; one not published is caught up at the
    station's next birth or its next DIFF (VERSION_MISMATCH → FULL). Returns how many went."""
    sent = 0
    for command in issued:
        sent += bool(await publisher.publish(command))
    if sent < len(issued):
        log.warning("event=auth_list_not_published count=%s", len(issued) - sent)
    return sent


# ---------------------------------------------------------------- what stations hold


async def _confirm(session: AsyncSession, device_id: str, version: int, at: datetime) -> None:
    stmt = _insert(session, StationAuthList)
    stmt = stmt.on_conflict_do_update(
        index_elements=["device_id"],
        set_={
            "confirmed_version": stmt.excluded.confirmed_version,
            "confirmed_at": stmt.excluded.confirmed_at,
        },
    )
    await session.execute(
        stmt, {"device_id": device_id, "confirmed_version": version, "confirmed_at": at}
    )


async def confirmed_version(session: AsyncSession, device_id: str) -> int | None:
    version: int | None = (
        await session.execute(
            select(StationAuthList.confirmed_version).where(StationAuthList.device_id == device_id)
        )
    ).scalar_one_or_none()
    return version


async def at_birth(
    session: AsyncSession,
    issuer: CommandIssuer | None,
    device_id: str,
    network_id: int,
    held: int,
) -> list[IssuedCommand]:
    """An accepted station birth says it holds ``held``: a FULL when that is not the
    network's version."""
    await _confirm(session, device_id, held, utcnow())
    if issuer is None or held == await network_version(session, network_id):
        return []
    return await send_full(session, issuer, device_id, network_id)


#: A station still behind this long after its last update is sent a FULL by the sweep.
CATCH_UP_AFTER_S = 300.0


async def catch_up(
    session: AsyncSession, issuer: CommandIssuer, now: datetime
) -> list[IssuedCommand]:
    """The sweep's part: a FULL to each online station whose confirmed version is not its
    network's and that was sent no update for :data:`CATCH_UP_AFTER_S` (a DIFF lost on the
    way, a result that never came): it does not wait for its next birth or DIFF."""
    last_sent = (
        select(AuthListSend.device_id, func.max(AuthListSend.sent_at).label("at"))
        .group_by(AuthListSend.device_id)
        .subquery()
    )
    rows = await session.execute(
        select(Station.device_id, Cluster.network_id, *PRESENCE_COLUMNS)
        .join(Cluster, Cluster.id == Station.cluster_id)
        .join(Device, Device.device_id == Station.device_id)
        .outerjoin(AuthList, AuthList.network_id == Cluster.network_id)
        .outerjoin(StationAuthList, StationAuthList.device_id == Station.device_id)
        .outerjoin(last_sent, last_sent.c.device_id == Station.device_id)
        .where(
            func.coalesce(StationAuthList.confirmed_version, 0)
            != func.coalesce(AuthList.version, 1),
            (last_sent.c.at.is_(None))
            | (last_sent.c.at < now - timedelta(seconds=CATCH_UP_AFTER_S)),
        )
        .order_by(Station.device_id)
    )
    issued: list[IssuedCommand] = []
    for row in rows.all():
        if online_of(row[2:], now):
            issued += await send_full(session, issuer, row[0], row[1])
    return issued


async def on_result(
    session: AsyncSession,
    issuer: CommandIssuer | None,
    device_id: str,
    network_id: int | None,
    command_id: bytes,
    *,
    done: bool,
    version_mismatch: bool,
) -> list[IssuedCommand]:
    """A station's result to a command: for an AuthListUpdate, DONE confirms its version,
    VERSION_MISMATCH gets a FULL. Other commands: nothing."""
    send = await session.get(AuthListSend, command_id.hex())
    if send is None or send.device_id != device_id:
        return []
    if done:
        await _confirm(session, device_id, send.version, utcnow())
        return []
    if version_mismatch and issuer is not None and network_id is not None:
        return await send_full(session, issuer, device_id, network_id)
    return []


__all__ = [
    "CATCH_UP_AFTER_S",
    "MAX_UIDS",
    "ListPublisher",
    "at_birth",
    "catch_up",
    "changed",
    "confirmed_version",
    "diff_update",
    "full_updates",
    "network_uids",
    "network_version",
    "on_result",
    "publish_all",
    "send_full",
]
