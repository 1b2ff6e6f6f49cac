"""Fleet alerts: rules fed by device messages and silence, one open alert per cause.

- :class:`AlertEngine` (``kickstand.cloud.alerts.engine``): ``on_device_message``,
  ``on_trip_terminated``, ``report_lost``, ``sweep``, ``raise_alert`` / ``stop_alert``.
- Operator actions and queries: ``kickstand.cloud.alerts.service``; the FleetAlerts
  router: ``kickstand.cloud.alerts.api.router`` (mounted by ``create_app``).
"""

from kickstand.cloud.alerts.engine import AlertChange, AlertConfig, AlertEngine, Subject
from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import AlertSeverity, AlertState, AlertType

__all__ = [
    "AlertChange",
    "AlertConfig",
    "AlertEngine",
    "AlertSeverity",
    "AlertState",
    "AlertType",
    "FleetAlert",
    "Subject",
]
