"""The webhook topic catalogue (seed 000 `resource.event` names, mapped onto our events).

Endpoints subscribe to topic names or wildcards: ``"*"`` (everything) or a prefix
ending in ``.*`` (``"trip.*"``, ``"boitier.*"``, ``"boitier.pass.*"``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kickstand.cloud import outbox
from kickstand.cloud.alerts import engine as alert_engine
from kickstand.cloud.alerts.types import ALERT_TOPICS

#: Disabling of an endpoint that keeps failing (ours; the operator is told through it).
WEBHOOK_ENDPOINT_DISABLED = "webhook_endpoint.disabled"


@dataclass(frozen=True)
class Topic:
    name: str
    description: str

    @property
    def resource(self) -> str:
        return self.name.split(".", 1)[0]


_DESCRIPTIONS: dict[str, str] = {
    "trip.created": "Occurs whenever a trip is created.",
    "trip.updated": "Occurs whenever a trip's properties have been updated.",
    "trip.terminated": "Occurs whenever a trip is completed.",
    "vehicule.updated": "Occurs whenever a vehicule's properties have been updated.",
    alert_engine.VEHICULE_BATTERY_LOW: "Occurs whenever a vehicule internal battery is low "
    "(reported by the vehicle controller).",
    alert_engine.VEHICULE_BATTERY_VAE_LOW: "Occurs whenever a vehicule electrical assistance "
    "battery is low.",
    "vehicule.position.forbidden": "Occurs whenever a vehicule with a running trip just went "
    "into a forbidden zone.",
    "vehicule.position.out_of_network": "Occurs whenever a vehicule leaves the network's border.",
    "trip.return.refused": "Occurs whenever a free-floating vehicule is locked outside the "
    "network's border where returns are refused: the trip keeps running.",
    alert_engine.BOITIER_LOCKED: "Occurs whenever a chain is added into a vehicule lock.",
    alert_engine.BOITIER_UNLOCKED: "Occurs whenever a chain is removed from a vehicule lock.",
    alert_engine.BOITIER_PASS_UNRECOGNIZED: "Occurs whenever an NFC card swiped on a vehicule "
    "is not recognised by the system.",
    alert_engine.BOITIER_PIN_INCORRECT: "Occurs whenever an incorrect pin is typed on a vehicule.",
    alert_engine.BOITIER_CHAIN_TYPE_UPDATED: "Occurs whenever the vehicule chain reading has "
    "changed.",
    "station.created": "Occurs whenever a station is created.",
    "station.updated": "Occurs whenever a station's properties have been updated.",
    "station.deleted": "Occurs whenever a station is deleted.",
    "dock.created": "Occurs whenever a dock (spot) is created.",
    "dock.updated": "Occurs whenever a dock's properties have been updated (vehicle docked or "
    "removed, lock status).",
    "dock.deleted": "Occurs whenever a dock is deleted.",
    "zone.created": "Occurs whenever a zone is created.",
    "zone.updated": "Occurs whenever a zone's properties have been updated.",
    "zone.deleted": "Occurs whenever a zone is deleted.",
    "pass.associated": "Occurs whenever a pass is associated to a user.",
    "pass.disassociated": "Occurs whenever a pass is disassociated from a user.",
    "rent.created": "Occurs whenever a rider asks to unlock a vehicle.",
    "rent.updated": "Occurs whenever a rent is unlocked, refused, expired or started.",
    **ALERT_TOPICS,
    WEBHOOK_ENDPOINT_DISABLED: "Occurs whenever a webhook endpoint is disabled because its "
    "deliveries keep failing.",
}


def catalogue() -> list[Topic]:
    """Every topic an endpoint can subscribe to, sorted (includes the core's outbox topics)."""
    names = set(_DESCRIPTIONS) | set(outbox.TOPICS)
    return [
        Topic(name, _DESCRIPTIONS.get(name, f"Occurs on {name.replace('.', ' ')}."))
        for name in sorted(names)
    ]


def topic_names() -> frozenset[str]:
    return frozenset(topic.name for topic in catalogue())


def matches(pattern: str, topic: str) -> bool:
    if pattern == "*" or pattern == topic:
        return True
    return pattern.endswith(".*") and topic.startswith(pattern[:-1])


def subscribed(patterns: Iterable[str], topic: str) -> bool:
    return any(matches(p, topic) for p in patterns)


def invalid_patterns(patterns: Sequence[str]) -> list[str]:
    """Patterns that name no topic of the catalogue (a typo would silently get nothing)."""
    names = topic_names()
    return [p for p in patterns if not any(matches(p, name) for name in names)]
