"""The typed event catalogue: every topic that leaves the system, its payload and scope.

``catalogue`` holds the definitions (``TRIP_CREATED``, ``DOCK_UPDATED``…), ``payloads``
the models; :func:`kickstand.cloud.outbox.emit` is the one way to write an event.
"""

from kickstand.cloud.events.catalogue import CATALOGUE, EventType, definition, networks_of
from kickstand.cloud.events.payloads import EventPayload, NetworkEvent, NetworksEvent

__all__ = [
    "CATALOGUE",
    "EventPayload",
    "EventType",
    "NetworkEvent",
    "NetworksEvent",
    "definition",
    "networks_of",
]
