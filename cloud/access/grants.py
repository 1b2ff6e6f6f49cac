"""A user's permission entries, parsed strictly, and the networks they open.

Storage: ``users.permissions`` (JSON) keeps the seeds' login shape, one entry per grant::

    {"perm_key": "stations", "write": true,
     "ou": {"id": 3, "networks": [1], "clusters": [], "app_labels": [], "organizations": []},
     "start_date": "…", "end_date": null, "role": "maintainer"}

``ou`` null is a global grant (every network). ``role`` marks entries granted through a role
(removed with it). The list is what login answers and tokens carry, so the check on every
dashboard request reads it without a join; ``service`` rewrites the ``ou`` copy of every
entry when an organizational unit changes (same transaction).

Strict: an entry that is not exactly this shape (a network id written ``"1"``, ``write``
missing, an unknown key) grants nothing and is logged, never a 500, never half-read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

MAX_ID = 2**31 - 1

#: Seed 002's Permission enum.
DASHBOARD_PERMISSIONS: tuple[str, ...] = (
    "networks.manage", "vehicles.register", "maintenances", "unlock.admin",
    "networks.show.private", "dashboard.access", "users.list", "demonstration", "stations",
    "stations.advanced", "users.permissions", "users.block", "users.credits", "transactions",
    "developer", "emails.newsletters", "emails.transactional", "emails.templates",
    "users.support", "trips", "stocks.vehicles", "stocks.manage", "vehicles.manage",
    "notifications", "offers", "long.term.rentals", "vehicles.alerts", "terms.of.use",
    "organizations", "users.badges", "virtual.parking", "app.debug", "roles", "feature.beta",
    "faq", "app.label",
)  # fmt: skip
#: Kickstand's own, beside the seed's: firmware images and campaigns (issue 18).
DASHBOARD_PERMISSIONS += ("firmware",)
#: Seed 001's rider permission (riders' grants share the list).
RIDER_PERMISSIONS: tuple[str, ...] = ("rent",)
KNOWN_PERMISSIONS = frozenset(DASHBOARD_PERMISSIONS + RIDER_PERMISSIONS)
#: The ``operator`` role (migrations 0010, 0011): what a network's operator works with.
OPERATOR_PERMISSIONS: tuple[str, ...] = (
    "stations", "maintenances", "vehicles.manage", "vehicles.alerts", "networks.manage",
    "trips", "users.badges", "developer", "app.debug", "users.list", "users.block",
    "users.permissions", "organizations", "roles",
    # 0011: what building and running the city takes.
    "vehicles.register", "stations.advanced", "stocks.vehicles", "stocks.manage",
    "users.support", "users.credits",
)  # fmt: skip
#: 0025: firmware campaigns of the network.
OPERATOR_PERMISSIONS += ("firmware",)
#: 0028: a technician's unlock of a spot (seed 002's ``unlock.admin``).
OPERATOR_PERMISSIONS += ("unlock.admin",)


@dataclass(frozen=True, slots=True)
class Grant:
    perm_key: str
    write: bool
    #: None: global (every network).
    networks: frozenset[int] | None
    ou_id: int | None
    start: datetime | None
    end: datetime | None
    role: str | None

    def active(self, now: datetime) -> bool:
        return (self.start is None or self.start <= now) and (self.end is None or now < self.end)


class MalformedGrant(ValueError):
    pass


def _ids(value: Any, field: str) -> list[int]:
    if not isinstance(value, list):
        raise MalformedGrant(f"{field} is not a list")
    # bool is an int in Python: refused explicitly, as "1" is.
    if any(type(v) is not int or not 1 <= v <= MAX_ID for v in value):
        raise MalformedGrant(f"{field} holds something other than ids")
    return value


def _when(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedGrant(f"{field} is not a date")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise MalformedGrant(f"{field} is not a date") from exc
    if parsed.tzinfo is None:
        raise MalformedGrant(f"{field} has no time zone")
    return parsed


def parse_grant(entry: Any) -> Grant:
    """One entry, or MalformedGrant."""
    if not isinstance(entry, dict):
        raise MalformedGrant("not an object")
    key = entry.get("perm_key")
    if not isinstance(key, str) or key not in KNOWN_PERMISSIONS:
        raise MalformedGrant(f"unknown perm_key {key!r}")
    write = entry.get("write")
    if not isinstance(write, bool):
        raise MalformedGrant("write is not a boolean")
    if "ou" not in entry:
        raise MalformedGrant("ou missing (null for a global grant)")
    ou = entry["ou"]
    networks: frozenset[int] | None = None
    ou_id: int | None = None
    if ou is not None:
        if not isinstance(ou, dict):
            raise MalformedGrant("ou is not an object")
        raw_id = ou.get("id")
        if type(raw_id) is not int or not 1 <= raw_id <= MAX_ID:
            raise MalformedGrant("ou.id is not an id")
        ou_id = raw_id
        networks = frozenset(_ids(ou.get("networks"), "ou.networks"))
    role = entry.get("role")
    if role is not None and not isinstance(role, str):
        raise MalformedGrant("role is not a string")
    return Grant(
        perm_key=key,
        write=write,
        networks=networks,
        ou_id=ou_id,
        start=_when(entry.get("start_date"), "start_date"),
        end=_when(entry.get("end_date"), "end_date"),
        role=role,
    )


def _checked(entries: Any, user_id: int | None) -> Iterator[tuple[dict[str, Any], Grant]]:
    """Each well-formed entry with its grant; each malformed one is logged and skipped."""
    if not isinstance(entries, list):
        if entries is not None:
            log.warning("event=permission_malformed user_id=%s reason=not-a-list", user_id)
        return
    for index, entry in enumerate(entries):
        try:
            yield entry, parse_grant(entry)
        except MalformedGrant as exc:
            log.warning(
                "event=permission_malformed user_id=%s index=%d reason=%r", user_id, index, str(exc)
            )


def parse_grants(entries: Any, *, user_id: int | None = None) -> list[Grant]:
    """Every well-formed entry; each malformed one is logged and grants nothing."""
    return [grant for _, grant in _checked(entries, user_id)]


def valid_entries(entries: Any, *, user_id: int | None = None) -> list[dict[str, Any]]:
    """The well-formed entries as stored (what login and ``/auth/check`` show)."""
    return [entry for entry, _ in _checked(entries, user_id)]


def networks_for(
    grants: Iterable[Grant], perm_key: str, *, write: bool, now: datetime
) -> frozenset[int] | None:
    """The networks ``perm_key`` opens (write: only write grants); None: every network."""
    networks: set[int] = set()
    for grant in grants:
        if grant.perm_key != perm_key or (write and not grant.write) or not grant.active(now):
            continue
        if grant.networks is None:
            return None
        networks |= grant.networks
    return frozenset(networks)


def ou_snapshot(ou_id: int, networks: list[int], clusters: list[int], app_labels: list[int],
                organizations: list[int]) -> dict[str, Any]:  # fmt: skip
    """The ``ou`` copy an entry carries (the seeds' login shape)."""
    return {
        "id": ou_id,
        "networks": sorted(networks),
        "clusters": sorted(clusters),
        "app_labels": sorted(app_labels),
        "organizations": sorted(organizations),
    }
