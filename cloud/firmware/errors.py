"""Errors of firmware images and campaigns (the cloud's one error tree)."""

from __future__ import annotations

from kickstand.cloud.errors import (
    CloudError,
    ConflictError,
    InvalidInputError,
    UnavailableError,
)


class FirmwareError(CloudError):
    """Root of this package's errors."""


class FirmwareKeyError(FirmwareError, UnavailableError):
    """The firmware signing key is missing or unreadable: nothing can be signed (503)."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"firmware signing key {path}: {reason}")
        self.path = path
        self.reason = reason


class ImageRefusedError(FirmwareError, InvalidInputError):
    """An upload refused (empty, over the size limit, a target or version the manifest
    cannot carry): 422 naming the field."""


class ImageInUseError(FirmwareError, ConflictError):
    """The image is used by a campaign that is not over: it stays (409)."""

    def __init__(self, image_id: int, campaign_ids: list[int]) -> None:
        listed = ", ".join(map(str, campaign_ids))
        super().__init__(
            f"firmware image {image_id} is used by campaign(s) {listed}", reason="image-in-use"
        )
        self.image_id = image_id
        self.campaign_ids = campaign_ids


class CampaignStateError(FirmwareError, ConflictError):
    """An action the campaign's state does not allow (resume a running one, …): 409."""

    def __init__(self, campaign_id: int, state: str, action: str) -> None:
        super().__init__(
            f"campaign {campaign_id} is {state}: it cannot be {action}",
            reason=f"campaign-{state}",
        )
        self.campaign_id = campaign_id
        self.state = state
        self.action = action


__all__ = [
    "CampaignStateError",
    "FirmwareError",
    "FirmwareKeyError",
    "ImageInUseError",
    "ImageRefusedError",
]
