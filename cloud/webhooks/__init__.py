"""Webhooks: operator endpoints fed from the outbox, signed, retried, logged.

- Delivery: :class:`WebhookWorker` / :func:`start_worker` (``kickstand.cloud.webhooks.delivery``);
  ``python -m kickstand.cloud webhooks`` runs one.
- Signatures: ``kickstand.cloud.webhooks.signing`` (``sign``, ``verify``).
- Operators: ``kickstand.cloud.webhooks.service``; router ``kickstand.cloud.webhooks.api``.
See docs/webhooks.md.
"""

from kickstand.cloud.webhooks.delivery import (
    DeliveryPolicy,
    WebhookWorker,
    WorkerHandle,
    fan_out,
    start_worker,
)
from kickstand.cloud.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)

__all__ = [
    "DeliveryPolicy",
    "DeliveryStatus",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookWorker",
    "WorkerHandle",
    "fan_out",
    "start_worker",
]
