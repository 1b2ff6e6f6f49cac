"""The rules of access control (seed 002 Users, Roles, OrganizationalUnits, Organizations).

Who may grant what: a permission is granted on an organizational unit (or globally, ``None``)
by someone who holds it with write access on every network of that unit (admins: anything).
Nobody hands out more than they have, so an operator of one network cannot give itself
another's. Editing a unit rewrites the ``ou`` copy in every grant that names it (same
transaction; ``grants`` explains why the copy exists).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.access import repository
from kickstand.cloud.access.grants import (
    DASHBOARD_PERMISSIONS,
    networks_for,
    ou_snapshot,
    parse_grants,
)
from kickstand.cloud.access.models import (
    Organization,
    OrganizationalUnit,
    Role,
    UserBlock,
    UserOrganization,
)
from kickstand.cloud.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from kickstand.cloud.keyset import Keyset
from kickstand.cloud.models import Network, Trip, User, UserRole


@dataclass(frozen=True)
class Granter:
    """Who grants: the user, and whether it is an admin (holds everything)."""

    user: User

    def may_grant(self, perm_key: str, networks: frozenset[int] | None) -> bool:
        if self.user.role == UserRole.ADMIN:
            return True
        held = networks_for(
            parse_grants(self.user.permissions, user_id=self.user.id),
            perm_key,
            write=True,
            now=datetime.now(UTC),
        )
        if held is None:
            return True
        return networks is not None and networks <= held


# ── organizational units ──────────────────────────────────────────────────────────────


def unit_snapshot(unit: OrganizationalUnit) -> dict[str, Any]:
    return ou_snapshot(unit.id, unit.networks, unit.clusters, unit.app_labels, unit.organizations)


async def get_unit(session: AsyncSession, ou_id: int) -> OrganizationalUnit:
    unit = await session.get(OrganizationalUnit, ou_id)
    if unit is None:
        raise NotFoundError("organizational unit", ou_id)
    return unit


def unit_visible(unit: OrganizationalUnit, networks: frozenset[int] | None) -> bool:
    return networks is None or set(unit.networks) <= networks


async def list_units(
    session: AsyncSession, networks: frozenset[int] | None
) -> list[OrganizationalUnit]:
    rows = (await session.scalars(select(OrganizationalUnit).order_by(OrganizationalUnit.id))).all()
    return [u for u in rows if unit_visible(u, networks)]


async def _users_naming(session: AsyncSession, ou_id: int) -> list[User]:
    # JSON is not indexed portably: units change rarely, users are read once here.
    users = (await session.scalars(select(User).where(User.role != UserRole.RIDER))).all()
    return [
        u for u in users if any(g.ou_id == ou_id for g in parse_grants(u.permissions, user_id=u.id))
    ]


async def save_unit(
    session: AsyncSession, unit: OrganizationalUnit, fields: dict[str, Any]
) -> OrganizationalUnit:
    """Create (unit without id) or update a unit; grants naming it get the new copy."""
    for name, value in fields.items():
        setattr(unit, name, sorted(set(value)) if isinstance(value, list) else value)
    if unit.id is None:
        session.add(unit)
        await session.flush()
        return unit
    snapshot = unit_snapshot(unit)
    for user in await _users_naming(session, unit.id):
        user.permissions = [
            {**e, "ou": snapshot}
            if isinstance(e, dict)
            and isinstance(e.get("ou"), dict)
            and e["ou"].get("id") == unit.id
            else e
            for e in user.permissions
        ]
    return unit


async def delete_unit(session: AsyncSession, unit: OrganizationalUnit) -> None:
    if await _users_naming(session, unit.id):
        raise ConflictError(
            f"organizational unit {unit.id} is still named by users' permissions",
            reason="unit-in-use",
        )
    await session.delete(unit)


async def unit_users(session: AsyncSession, ou_id: int) -> list[User]:
    return await _users_naming(session, ou_id)


# ── roles ─────────────────────────────────────────────────────────────────────────────


async def list_roles(session: AsyncSession) -> Sequence[Role]:
    return (await session.scalars(select(Role).order_by(Role.key))).all()


async def get_role(session: AsyncSession, key: str) -> Role:
    role = await session.scalar(select(Role).where(Role.key == key))
    if role is None:
        raise NotFoundError("role", key)
    return role


async def create_role(session: AsyncSession, key: str, perms: Collection[str]) -> Role:
    if await session.scalar(select(Role.id).where(Role.key == key)) is not None:
        raise ConflictError(f"role {key!r} exists", reason="role-exists")
    role = Role(key=key, perms=sorted(set(perms)))
    session.add(role)
    await session.flush()
    return role


async def update_role(
    session: AsyncSession, key: str, add: Collection[str], remove: Collection[str]
) -> Role:
    role = await get_role(session, key)
    role.perms = sorted((set(role.perms) | set(add)) - set(remove))
    return role


# ── users: grants ─────────────────────────────────────────────────────────────────────


async def _scope_of_unit(
    session: AsyncSession, ou_id: int | None
) -> tuple[frozenset[int] | None, dict[str, Any] | None]:
    if ou_id is None:
        return None, None
    unit = await get_unit(session, ou_id)
    return frozenset(unit.networks), unit_snapshot(unit)


def _entry(
    perm_key: str,
    write: bool,
    ou: dict[str, Any] | None,
    start: datetime,
    end: datetime | None,
    role: str | None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "perm_key": perm_key,
        "write": write,
        "ou": ou,
        "start_date": start.isoformat(),
        "end_date": end.isoformat() if end is not None else None,
    }
    if role is not None:
        entry["role"] = role
    return entry


def _same(entry: Any, perm_key: str, ou_id: int | None, role: str | None) -> bool:
    if not isinstance(entry, dict) or entry.get("perm_key") != perm_key:
        return False
    ou = entry.get("ou")
    entry_ou = ou.get("id") if isinstance(ou, dict) else None
    return entry_ou == ou_id and entry.get("role") == role


async def grant(
    session: AsyncSession,
    granter: Granter,
    user: User,
    perm_keys: Sequence[str],
    *,
    write: bool,
    ou_id: int | None,
    start: datetime,
    end: datetime | None,
    role: str | None = None,
) -> None:
    """Seed 002 "Add user permission" / "Add user role": an existing one is overwritten."""
    if end is not None and end <= start:
        raise InvalidInputError("must be after start_date", field="end_date")
    networks, ou = await _scope_of_unit(session, ou_id)
    refused = [p for p in perm_keys if not granter.may_grant(p, networks)]
    if refused:
        raise ForbiddenError(
            f"you cannot grant {', '.join(refused)} on this unit (you do not hold it with write"
            " access on all of its networks)",
            reason="cannot-grant",
        )
    entries = [e for e in user.permissions if not any(_same(e, p, ou_id, role) for p in perm_keys)]
    entries += [_entry(p, write, ou, start, end, role) for p in perm_keys]
    user.permissions = entries


async def revoke(
    session: AsyncSession,
    granter: Granter,
    user: User,
    perm_keys: Sequence[str],
    *,
    ou_id: int | None,
    role: str | None = None,
) -> None:
    """Seed 002 "Remove user permission" / "Remove user role" (the granter must hold them)."""
    networks, _ = await _scope_of_unit(session, ou_id)
    if not any(_same(e, p, ou_id, role) for e in user.permissions for p in perm_keys):
        raise NotFoundError("permission" if role is None else "role", role or perm_keys[0])
    refused = [p for p in perm_keys if not granter.may_grant(p, networks)]
    if refused:
        raise ForbiddenError(
            f"you cannot revoke {', '.join(refused)} on this unit", reason="cannot-grant"
        )
    user.permissions = [
        e for e in user.permissions if not any(_same(e, p, ou_id, role) for p in perm_keys)
    ]


# ── users: networks, block, organizations ─────────────────────────────────────────────


async def user_networks(session: AsyncSession, user: User) -> set[int]:
    """The networks a user belongs to (seed 002: from its first interaction): its grants'
    units and the networks of its trips."""
    networks: set[int] = set()
    for g in parse_grants(user.permissions, user_id=user.id):
        networks |= g.networks or set()
    trips = (
        await session.scalars(select(Trip.network_id).where(Trip.user_id == user.id).distinct())
    ).all()
    return networks | set(trips)


async def block(session: AsyncSession, user: User, reason: str, by: int) -> UserBlock:
    """Blocked: its sessions end (token generation) and it cannot log in or ride."""
    if user.role == UserRole.ADMIN:
        raise ForbiddenError("an administrator cannot be blocked", reason="cannot-block-admin")
    record = await session.get(UserBlock, user.id)
    if record is None:
        record = UserBlock(user_id=user.id, reason=reason, blocked_by=by)
        session.add(record)
    else:
        record.reason, record.blocked_by = reason, by
    user.is_active = False
    user.token_generation += 1
    return record


async def unblock(session: AsyncSession, user: User) -> None:
    record = await session.get(UserBlock, user.id)
    if record is None:
        raise ConflictError(f"user {user.id} is not blocked", reason="not-blocked")
    await session.delete(record)
    user.is_active = True


async def get_user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFoundError("user", user_id)
    return user


async def get_organization(session: AsyncSession, org_id: int) -> Organization:
    org = await session.get(Organization, org_id)
    if org is None:
        raise NotFoundError("organization", org_id)
    return org


async def reachable_organization(
    session: AsyncSession, org_id: int, networks: frozenset[int] | None
) -> Organization:
    """The organization if ``networks`` reach it (None: every one); else not found, as for
    an id that does not exist (another network's customers are not confirmed)."""
    org = await repository.organization_in_scope(session, org_id, networks)
    if org is None:
        raise NotFoundError("organization", org_id)
    return org


async def organizations(
    session: AsyncSession, networks: frozenset[int] | None, keyset: Keyset
) -> Sequence[Organization]:
    return await repository.list_organizations(session, networks, keyset)


async def create_organization(
    session: AsyncSession,
    creator: User,
    networks: frozenset[int] | None,
    network_id: int | None,
    fields: dict[str, Any],
) -> Organization:
    """A new organization for ``network_id``; the caller checked that ``networks`` (the
    creator's write scope) holds it. Not named: the creator's only network, or none for a
    global grant (installation-wide: only global grants reach it)."""
    if network_id is None and networks is not None:
        if len(networks) != 1:
            raise InvalidInputError(
                "name the network the organization is for (you operate several)",
                field="network_id",
            )
        (network_id,) = networks
    if network_id is not None and await session.get(Network, network_id) is None:
        raise InvalidInputError("no such network", field="network_id")
    await get_user(session, fields["administrator_id"])
    org = Organization(**fields, network_id=network_id, created_by=creator.id)
    session.add(org)
    await session.flush()
    return org


async def link(session: AsyncSession, user: User, org: Organization) -> None:
    if await session.get(UserOrganization, (user.id, org.id)) is None:
        session.add(UserOrganization(user_id=user.id, organization_id=org.id))


async def unlink(session: AsyncSession, user: User, org: Organization) -> None:
    found = await session.execute(
        delete(UserOrganization).where(
            UserOrganization.user_id == user.id, UserOrganization.organization_id == org.id
        )
    )
    if not getattr(found, "rowcount", 0):
        raise NotFoundError("organization link", org.id)


async def user_organizations(session: AsyncSession, user_id: int) -> list[int]:
    rows = (
        await session.scalars(
            select(UserOrganization.organization_id).where(UserOrganization.user_id == user_id)
        )
    ).all()
    return sorted(rows)


PERMISSION_NAMES = {p: p.replace(".", " ").capitalize() for p in DASHBOARD_PERMISSIONS}
