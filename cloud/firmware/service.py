"""Firmware images and campaigns: the rules (routes translate HTTP, the runner and the
ingest handler call these).

Images: uploaded for a target and version, stored content-addressed
(:mod:`~kickstand.cloud.firmware.store`), their manifest signed at upload with the
installation's firmware key (:mod:`~kickstand.cloud.firmware.keys`); installation-wide
(the same hardware runs in every network). Any ``firmware`` operator reads them (a
campaign of its network picks one); only a global grant uploads or deletes one: its
signed manifest is valid on every device of every network, as a newly provisioned device
belongs to no network yet (``devices.identity.provision``). An image used by a campaign
stays.

Campaigns (hawkBit's rollouts are the model): one network's devices chosen by target,
vehicle model, current version or an explicit list, split into waves — a canary, then
waves growing by a factor (or given sizes). A wave must reach its success threshold
(% confirmed) before the next starts; a wave whose failures (failed or rolled back)
reach the error threshold stops the campaign by itself. States: ready → running ⇄ paused
→ completed | stopped | cancelled. The runner (:mod:`~kickstand.cloud.firmware.runner`)
advances them; what devices report moves their rows (:mod:`~kickstand.cloud.firmware.progress`).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, Callable, Collection, Sequence
from datetime import datetime, time
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import outbox
from kickstand.cloud.config import Settings
from kickstand.cloud.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
)
from kickstand.cloud.events import catalogue as ev
from kickstand.cloud.events import payloads as p
from kickstand.cloud.events.catalogue import EventType
from kickstand.cloud.firmware import repository
from kickstand.cloud.firmware.errors import (
    CampaignStateError,
    ImageInUseError,
    ImageRefusedError,
)
from kickstand.cloud.firmware.models import (
    CampaignState,
    FirmwareCampaign,
    FirmwareCampaignDevice,
    FirmwareImage,
    FirmwareWindow,
)
from kickstand.cloud.firmware.store import ImageStore
from kickstand.cloud.models import Network, utcnow
from kickstand.protocol.errors import EncodeError
from kickstand.protocol.firmware import Manifest, firmware_key_id, sign_manifest, valid_target
from kickstand.protocol.signing import public_key_bytes

Check = Callable[[Collection[int]], None]
#: The public download route (no credentials: the image is content-addressed and its
#: manifest signed).
IMAGE_PATH = "/v1/firmware/images/{sha256}"


# ── images ────────────────────────────────────────────────────────────────────────────


def image_store(settings: Settings) -> ImageStore:
    return ImageStore(settings.FIRMWARE_STORE_DIR or settings.VAR_DIR / "firmware")


def require_global(networks: Collection[int] | None, action: str) -> None:
    """Images are the installation's: ``networks`` (the caller's write scope) must be
    None, a global grant, whatever networks a narrower grant names."""
    if networks is not None:
        raise ForbiddenError(
            f"firmware images are installation-wide: only a global operator {action} them",
            reason="global-grant-required",
        )


def image_url(settings: Settings, sha256_hex: str) -> str:
    base = settings.FIRMWARE_BASE_URL or f"http://{settings.API_HOST}:{settings.API_PORT}"
    return base.rstrip("/") + IMAGE_PATH.format(sha256=sha256_hex)


async def upload_image(
    session: AsyncSession,
    settings: Settings,
    key: Ed25519PrivateKey,
    chunks: AsyncIterable[bytes],
    *,
    target: str,
    version: str,
    min_hardware: str = "",
    min_bootloader: str = "",
    created_by: int | None = None,
    networks: Collection[int] | None = None,
) -> FirmwareImage:
    """Store the image streamed in ``chunks`` and sign its manifest (the caller commits).
    ``networks``: the uploader's scope (see :func:`require_global`); checked before a
    byte of the body is read."""
    if not valid_target(target):
        raise ImageRefusedError(
            "a target is station-mainboard, spot-board:<model>, vehicle-controller:<model> "
            "or bms:<model>",
            field="target",
        )
    require_global(networks, "uploads")
    if await repository.image_of_version(session, target, version) is not None:
        raise ConflictError(
            f"{target} already has an image of version {version}", reason="image-exists"
        )
    store = image_store(settings)
    staged = await store.receive(chunks, settings.FIRMWARE_MAX_IMAGE_BYTES)
    try:
        if await repository.image_by_digest(session, staged.sha256) is not None:
            raise ConflictError(
                f"this image is already uploaded ({staged.sha256})", reason="image-exists"
            )
        url = image_url(settings, staged.sha256)
        manifest = Manifest(
            target=target,
            version=version,
            size=staged.size,
            sha256=bytes.fromhex(staged.sha256),
            url=url,
            min_hardware=min_hardware,
            min_bootloader=min_bootloader,
            issued_at=int(utcnow().timestamp()),
        )
        try:
            signed = sign_manifest(key, manifest)
        except EncodeError as exc:
            raise ImageRefusedError(
                f"the manifest cannot carry it: {exc}", field="version"
            ) from exc
        store.keep(staged)
    except BaseException:
        store.discard(staged)
        raise
    image = FirmwareImage(
        sha256=staged.sha256,
        target=target,
        version=version,
        size=staged.size,
        min_hardware=min_hardware,
        min_bootloader=min_bootloader,
        url=url,
        manifest=signed,
        key_id=firmware_key_id(public_key_bytes(key)).hex(),
        created_by=created_by,
    )
    session.add(image)
    await session.flush()
    return image


async def get_image(session: AsyncSession, image_id: int) -> FirmwareImage:
    image = await session.get(FirmwareImage, image_id)
    if image is None:
        raise NotFoundError("firmware image", image_id)
    return image


async def delete_image(
    session: AsyncSession, image_id: int, networks: Collection[int] | None
) -> FirmwareImage:
    """Refused to a caller without a global grant (:func:`require_global`) and while a
    campaign names it (its history keeps the image); the file goes once the row is gone
    (the caller commits first, then :func:`forget_file` with the returned image's digest)."""
    image = await get_image(session, image_id)
    require_global(networks, "deletes")
    using = await repository.campaigns_using(session, image_id)
    if using:
        raise ImageInUseError(image_id, using)
    await session.delete(image)
    return image


def forget_file(settings: Settings, sha256_hex: str) -> None:
    image_store(settings).delete(sha256_hex)


# ── campaigns ─────────────────────────────────────────────────────────────────────────


def plan_waves(
    total: int, canary: int, growth_factor: float, sizes: Sequence[int] | None = None
) -> list[int]:
    """Devices per wave: ``sizes`` as given (the last wave takes the rest), else the
    canary then waves growing by ``growth_factor``."""
    waves: list[int] = []
    left = total
    if sizes:
        for size in sizes:
            if left <= 0:
                break
            waves.append(min(size, left))
            left -= waves[-1]
        if left > 0:
            waves[-1] += left
        return waves
    size = max(1, canary)
    while left > 0:
        waves.append(min(size, left))
        left -= waves[-1]
        size = max(size + 1, math.ceil(size * growth_factor))
    return waves


async def create_campaign(
    session: AsyncSession,
    check: Check,
    *,
    name: str,
    network_id: int,
    image_id: int,
    selection: dict[str, Any],
    canary: int,
    growth_factor: float,
    wave_sizes: Sequence[int] | None,
    success_threshold_pct: int,
    error_threshold_pct: int,
    device_timeout_s: int,
    created_by: int | None,
) -> FirmwareCampaign:
    check([network_id])
    if await session.get(Network, network_id) is None:
        raise NotFoundError("network", network_id)
    image = await get_image(session, image_id)
    units = await repository.select_units(
        session,
        network_id,
        image.target,
        image.version,
        models=selection.get("models"),
        from_versions=selection.get("from_versions"),
        device_ids=selection.get("device_ids"),
    )
    if not units:
        raise InvalidInputError(
            f"no device of network {network_id} matches the selection for {image.target} "
            f"(or all run {image.version} already)",
            field="selection",
        )
    waves = plan_waves(len(units), canary, growth_factor, wave_sizes)
    campaign = FirmwareCampaign(
        name=name,
        network_id=network_id,
        image_id=image.id,
        state=CampaignState.READY.value,
        selection=selection,
        wave_sizes=waves,
        success_threshold_pct=success_threshold_pct,
        error_threshold_pct=error_threshold_pct,
        device_timeout_s=device_timeout_s,
        current_wave=0,
        created_by=created_by,
    )
    session.add(campaign)
    await session.flush()
    bounds = [0]
    for size in waves:
        bounds.append(bounds[-1] + size)
    for wave, (start, end) in enumerate(pairwise(bounds), start=1):
        for unit in units[start:end]:
            session.add(
                FirmwareCampaignDevice(
                    campaign_id=campaign.id,
                    device_id=unit.device_id,
                    spot=unit.spot,
                    wave=wave,
                    from_version=unit.firmware_version,
                )
            )
    await session.flush()
    return campaign


async def get_campaign(
    session: AsyncSession, campaign_id: int, check: Check, *, lock: bool = False
) -> FirmwareCampaign:
    campaign = await session.get(FirmwareCampaign, campaign_id, with_for_update=lock)
    if campaign is None:
        raise NotFoundError("firmware campaign", campaign_id)
    check([campaign.network_id])
    return campaign


async def campaign_payload(
    session: AsyncSession, campaign: FirmwareCampaign
) -> p.FirmwareCampaignEvent:
    image = await get_image(session, campaign.image_id)
    counts = await repository.wave_counts(session, campaign.id)
    return p.FirmwareCampaignEvent(
        network_id=campaign.network_id,
        campaign_id=campaign.id,
        name=campaign.name,
        image_id=image.id,
        target=image.target,
        version=image.version,
        state=campaign.state,
        current_wave=campaign.current_wave,
        waves=len(campaign.wave_sizes),
        reason=campaign.reason,
        devices=counts.total,
        confirmed=counts.confirmed,
        failed=counts.failed,
    )


async def emit_campaign(
    session: AsyncSession, campaign: FirmwareCampaign, event: EventType[p.FirmwareCampaignEvent]
) -> None:
    await session.flush()
    outbox.emit(session, event, campaign.id, await campaign_payload(session, campaign))


def _refuse(campaign: FirmwareCampaign, action: str, *allowed: CampaignState) -> None:
    if campaign.state not in {s.value for s in allowed}:
        raise CampaignStateError(campaign.id, campaign.state, action)


async def start_campaign(session: AsyncSession, campaign: FirmwareCampaign) -> None:
    """Ready → running, the canary wave first (the runner sends its updates)."""
    _refuse(campaign, "started", CampaignState.READY)
    campaign.state = CampaignState.RUNNING.value
    campaign.current_wave = 1
    campaign.started_at = utcnow()
    await emit_campaign(session, campaign, ev.FIRMWARE_CAMPAIGN_STARTED)
    await emit_campaign(session, campaign, ev.FIRMWARE_CAMPAIGN_WAVE_STARTED)


async def pause_campaign(session: AsyncSession, campaign: FirmwareCampaign) -> None:
    _refuse(campaign, "paused", CampaignState.RUNNING)
    campaign.state = CampaignState.PAUSED.value
    await emit_campaign(session, campaign, ev.FIRMWARE_CAMPAIGN_PAUSED)


async def resume_campaign(session: AsyncSession, campaign: FirmwareCampaign) -> None:
    _refuse(campaign, "resumed", CampaignState.PAUSED)
    campaign.state = CampaignState.RUNNING.value
    await emit_campaign(session, campaign, ev.FIRMWARE_CAMPAIGN_RESUMED)


async def cancel_campaign(session: AsyncSession, campaign: FirmwareCampaign) -> None:
    """Nothing more is sent; updates under way finish on their devices and are counted."""
    _refuse(campaign, "cancelled", CampaignState.READY, CampaignState.RUNNING, CampaignState.PAUSED)
    await end_campaign(session, campaign, CampaignState.CANCELLED, None)


async def end_campaign(
    session: AsyncSession, campaign: FirmwareCampaign, state: CampaignState, reason: str | None
) -> None:
    now = utcnow()
    campaign.state = state.value
    campaign.reason = reason
    campaign.finished_at = now
    await repository.cancel_pending(session, campaign.id, now)
    event = {
        CampaignState.CANCELLED: ev.FIRMWARE_CAMPAIGN_CANCELLED,
        CampaignState.STOPPED: ev.FIRMWARE_CAMPAIGN_STOPPED,
        CampaignState.COMPLETED: ev.FIRMWARE_CAMPAIGN_COMPLETED,
    }[state]
    await emit_campaign(session, campaign, event)


# ── maintenance windows ───────────────────────────────────────────────────────────────


def parse_hhmm(value: str, field: str) -> time:
    try:
        hour, minute = value.split(":")
        return time(int(hour), int(minute))
    except ValueError:
        raise InvalidInputError(f"{value!r} is not HH:MM", field=field) from None


async def set_window(
    session: AsyncSession, network_id: int, start_local: str, end_local: str
) -> FirmwareWindow:
    if await session.get(Network, network_id) is None:
        raise NotFoundError("network", network_id)
    parse_hhmm(start_local, "start_local")
    parse_hhmm(end_local, "end_local")
    window = await session.get(FirmwareWindow, network_id)
    if window is None:
        window = FirmwareWindow(network_id=network_id)
        session.add(window)
    window.start_local = start_local
    window.end_local = end_local
    window.updated_at = utcnow()
    await session.flush()
    return window


async def clear_window(session: AsyncSession, network_id: int) -> None:
    window = await session.get(FirmwareWindow, network_id)
    if window is None:
        raise NotFoundError("firmware window of network", network_id)
    await session.delete(window)


def in_window(window: FirmwareWindow | None, timezone: str, now: datetime) -> bool:
    """May an update start at ``now``? Always without a window; an end before the start
    spans midnight; start == end is the whole day."""
    if window is None:
        return True
    local = now.astimezone(ZoneInfo(timezone)).time().replace(second=0, microsecond=0)
    start = parse_hhmm(window.start_local, "start_local")
    end = parse_hhmm(window.end_local, "end_local")
    if start == end:
        return True
    if start < end:
        return start <= local < end
    return local >= start or local < end


__all__ = [
    "IMAGE_PATH",
    "campaign_payload",
    "cancel_campaign",
    "clear_window",
    "create_campaign",
    "delete_image",
    "emit_campaign",
    "end_campaign",
    "forget_file",
    "get_campaign",
    "get_image",
    "image_store",
    "image_url",
    "in_window",
    "pause_campaign",
    "plan_waves",
    "require_global",
    "resume_campaign",
    "set_window",
    "start_campaign",
    "upload_image",
]
