"""The one operator access check of the dashboard (CONTRIBUTING "one operator access check").

Every operator route takes ``Depends(Operator("<seed 002 permission>"))`` and receives an
``OperatorContext``: the caller is authenticated (401 otherwise), an operator or admin
(403 ``not-an-operator``), holds the permission (403 ``permission-missing``) with write
access when the method writes (GET/HEAD read, anything else writes: 403 ``read-only``), and
any ``network_id`` / ``networks`` in the query is within its scope (403
``network-not-allowed``). Networks a route learns later (a body field, a vehicle's network)
go through ``OperatorContext.check``; listings filter with ``OperatorContext.networks``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from fastapi import Request

from kickstand.cloud.access.grants import (
    DASHBOARD_PERMISSIONS,
    KNOWN_PERMISSIONS,
    MAX_ID,
    networks_for,
    parse_grants,
)
from kickstand.cloud.api.deps import CurrentUser
from kickstand.cloud.api.errors import forbidden
from kickstand.cloud.models import User, UserRole

OPERATOR_ROLES = (UserRole.OPERATOR, UserRole.ADMIN)
#: Seed 002's Permission enum as a request type (422 on anything else).
PermissionKey = Literal[DASHBOARD_PERMISSIONS]  # type: ignore[valid-type]
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Query parameters that name networks; checked by the dependency itself.
NETWORK_QUERY = ("network_id", "networks")


@dataclass(frozen=True, slots=True)
class OperatorContext:
    user: User
    permission: str
    write: bool
    #: Networks the permission opens at this access level; None: every network.
    networks: frozenset[int] | None
    #: Every network the request named or was checked against (the access log's networks).
    touched: list[int] = field(default_factory=list)

    @property
    def user_id(self) -> int:
        return self.user.id

    def allows(self, network_id: int) -> bool:
        return self.networks is None or network_id in self.networks

    def check(self, network_ids: Collection[int]) -> None:
        """403 unless every network is in scope."""
        self.touched.extend(network_ids)
        if self.networks is None:
            return
        refused = sorted(set(network_ids) - self.networks)
        if refused:
            raise forbidden(
                f"you do not operate network(s) {', '.join(map(str, refused))}"
                f" with {self.permission!r}",
                reason="network-not-allowed",
            )


def _query_networks(request: Request) -> list[int]:
    # Only well-formed values: a malformed one is the route's 422, not a scope question.
    found: list[int] = []
    for name in NETWORK_QUERY:
        for raw in request.query_params.getlist(name):
            for part in raw.replace(" ", "").split(","):
                if part.isdigit() and 1 <= int(part) <= MAX_ID:
                    found.append(int(part))
    return found


def scope_of(user: User, permission: str, *, write: bool) -> frozenset[int] | None:
    """What ``permission`` opens for ``user`` now (None: all; empty: nothing)."""
    if user.role == UserRole.ADMIN:
        return None
    grants = parse_grants(user.permissions, user_id=user.id)
    return networks_for(grants, permission, write=write, now=datetime.now(UTC))


class Operator:
    """``Depends(Operator("stations"))``; ``write`` forces the write check on a GET."""

    def __init__(self, permission: str, *, write: bool | None = None) -> None:
        if permission not in KNOWN_PERMISSIONS:
            raise ValueError(f"unknown permission {permission!r}")
        self.permission = permission
        self.write = write

    def __repr__(self) -> str:
        return f"Operator({self.permission!r})"

    async def __call__(self, request: Request, user: CurrentUser) -> OperatorContext:
        # Who asked, for the access log (kickstand.cloud.access.log), refused or not.
        request.state.access_user_id = user.id
        if user.role not in OPERATOR_ROLES:
            raise forbidden("this operation is for operators", reason="not-an-operator")
        write = self.write if self.write is not None else request.method not in READ_METHODS
        networks = scope_of(user, self.permission, write=write)
        if networks is not None and not networks:
            if write and scope_of(user, self.permission, write=False):
                raise forbidden(
                    f"your {self.permission!r} permission is read-only", reason="read-only"
                )
            raise forbidden(
                f"this operation needs the {self.permission!r} permission",
                reason="permission-missing",
            )
        context = OperatorContext(user, self.permission, write, networks)
        requested = _query_networks(request)
        request.state.networks = context.touched
        context.check(requested)
        return context
