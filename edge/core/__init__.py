"""The shared edge core: what the station and vehicle agents both stand on.

- :mod:`.queue`   ``DiskQueue`` — store-and-forward on SQLite (WAL), seq stamping, thinning
- :mod:`.replay`  ``SqliteReplayGuard`` — command ids remembered across reboots
- :mod:`.clock`   ``DeviceClock`` — wall clock plus the offset learnt from TimeReply
- :mod:`.link`    ``CloudLink`` — the MQTT session (birth, boot gating, drain, heartbeats,
                  commands) and ``CommandRouter`` (``@router.on(Unlock)``)
- :mod:`.config`  ``EdgeSettings`` — file (TOML/YAML) + ``KICKSTAND_*`` environment
- :mod:`.health`  ``HealthServer`` — a tiny local HTTP status endpoint, and the status CLI
- :mod:`.agent`   ``EdgeAgent`` — the framework both agents stand on: lifecycle, Config,
                  Reboot, TriggerMessage, AuthListUpdate, the FirmwareUpdate seam, the birth
- :mod:`.state`   ``AgentState`` — the one persistent store (and the migration of older ones)
- :mod:`.main`    the process entry point of every agent (re-executes itself on a Reboot)
- :mod:`.authlist` ``LocalAuthList`` — badges allowed while offline
- :mod:`.image_fetch` the firmware image fetch + verify seam the firmware library replaces

Nothing in here knows about spots or vehicles.
"""

from kickstand.edge.core.clock import DeviceClock
from kickstand.edge.core.errors import CommandFailed, CommandRefused, EdgeError, QueueError
from kickstand.edge.core.queue import DiskQueue, QueuedMessage
from kickstand.edge.core.replay import SqliteReplayGuard

__all__ = [
    "CommandFailed",
    "CommandRefused",
    "DeviceClock",
    "DiskQueue",
    "EdgeError",
    "QueueError",
    "QueuedMessage",
    "SqliteReplayGuard",
]
