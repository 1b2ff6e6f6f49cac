"""What each device message does, registered per channel and per event type.

    from kickstand.cloud.ingest.handlers import ORDER, handlers

The core (:mod:`kickstand.cloud.ingest.apply`) owns delivery — dedupe, batching, dead
letters, acknowledgements — and calls these in :data:`ORDER`; they say what a message
changes, through the trip engine, the alert rules and :mod:`kickstand.cloud.ingest.repository`.
"""

from kickstand.cloud.ingest.handlers import (
    badges,
    certificates,
    events,
    firmware,
    results,
    session,
    status,
    telemetry,
)
from kickstand.cloud.ingest.handlers.registry import ORDER, Handlers, handlers

__all__ = [
    "ORDER",
    "Handlers",
    "badges",
    "certificates",
    "events",
    "firmware",
    "handlers",
    "results",
    "session",
    "status",
    "telemetry",
]
