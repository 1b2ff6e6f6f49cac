"""Errors of the webhooks package."""

from __future__ import annotations

from kickstand.cloud.errors import CloudError, InvalidInputError, NotFoundError


class WebhookError(CloudError):
    """Root of the webhook errors."""


class SignatureError(WebhookError):
    """A received signature does not verify (receivers' side; ``reason`` says why)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"webhook signature refused: {reason}")
        self.reason = reason


class InvalidEndpointError(InvalidInputError, WebhookError):
    """An endpoint field refused (422 on ``field``)."""


class EndpointNotFoundError(NotFoundError, WebhookError):
    def __init__(self, endpoint_id: int) -> None:
        super().__init__("webhook endpoint", endpoint_id)
        self.endpoint_id = endpoint_id


class DeliveryNotFoundError(NotFoundError, WebhookError):
    def __init__(self, delivery_id: int) -> None:
        super().__init__("webhook delivery", delivery_id)
        self.delivery_id = delivery_id


class TargetRefusedError(WebhookError):
    """A webhook target that is, or resolves to, a non-public address (``targets.py``)."""

    def __init__(self, host: str, reason: str, *, address: str | None = None) -> None:
        super().__init__(f"webhook target {host} refused: {reason}")
        self.host = host
        self.reason = reason
        self.address = address
