"""Firmware images and campaigns for operators (permission ``firmware``), and the image
download for devices.

* ``POST /v1/dashboard/firmware/images?target=&version=`` — the image as the raw body
  (``application/octet-stream``), streamed to the content-addressed store; its manifest
  signed with the installation's firmware key. Images are installation-wide: any
  ``firmware`` operator lists and reads them, only a global grant uploads or deletes one
  (403 ``global-grant-required``; the signed manifest is valid on every network's devices).
* ``/v1/dashboard/firmware/campaigns`` — a network's rollouts: create, list, detail,
  ``start`` / ``pause`` / ``resume`` / ``cancel``, per-device progress.
* ``/v1/dashboard/firmware/networks/{network_id}/window`` — the network's maintenance window.
* ``GET /v1/firmware/images/{sha256}`` — the image for devices, with ``Range`` (206 +
  ``Content-Range``; 416 out of range and 400 malformed, in the error envelope) and the
  digest as ETag. No credentials: the image is
  named by its digest and described by a signed manifest the device verifies first, so
  knowing the URL gives nothing a device would install.

The rules: :mod:`kickstand.cloud.firmware.service`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.types import Message, Receive, Scope, Send

from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import SessionDep, SettingsDep
from kickstand.cloud.api.errors import ApiError, bad_request, not_found, range_not_satisfiable
from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.api.openapi import error_responses
from kickstand.cloud.api.pagination import KeysetDep
from kickstand.cloud.api.schemas import Envelope, OkEnvelope, Page
from kickstand.cloud.firmware import repository, service
from kickstand.cloud.firmware.keys import load_firmware_key
from kickstand.cloud.firmware.models import (
    CampaignState,
    FirmwareCampaign,
    FirmwareCampaignDevice,
    FirmwareImage,
    FirmwareWindow,
    UpdateState,
)
from kickstand.cloud.keyset import cut

router = APIRouter(tags=["firmware"])
# The one operator access check (kickstand.cloud.api.access).
FirmwareOperator = Annotated[OperatorContext, Depends(Operator("firmware"))]
ImageId = Annotated[Id, Path(description="Identifier of the firmware image.")]
CampaignId = Annotated[Id, Path(description="Identifier of the firmware campaign.")]
NetworkId = Annotated[Id, Path(description="Identifier of the network.")]
Version = Annotated[Text, Query(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z._+-]+$")]
HHMM = Annotated[Text, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
BINARY = {"schema": {"type": "string", "format": "binary"}}
OCTETS = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": BINARY},
    }
}
IMAGE_FILE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": BINARY}, "description": "The whole image."},
    206: {"content": {"application/octet-stream": BINARY}, "description": "The range asked for."},
    **error_responses(400, 416),
}


class ImageFile(FileResponse):
    """Starlette's FileResponse answers ranges itself, its refusals in plain text (416 out
    of range, 400 malformed): those go out in the error envelope instead. Starlette's own
    parser still decides (no second reading of ``Range`` to drift from it); only what it
    would send is replaced."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused: list[Message] = []

        async def enveloped(message: Message) -> None:
            starts = message["type"] == "http.response.start"
            if refused or (starts and message["status"] in (400, 416)):
                refused.append(message)  # the start, then its body (the 400's reason)
            else:
                await send(message)

        await super().__call__(scope, receive, enveloped)
        if not refused:
            return
        error: ApiError
        if refused[0]["status"] == 416:
            error = range_not_satisfiable(int(self.headers["content-length"]))
        else:
            text = b"".join(m.get("body", b"") for m in refused[1:]).decode(errors="replace")
            error = bad_request("Range", text or "malformed")
        await error.response()(scope, receive, send)


class ImagePublic(BaseModel):
    id: int
    image_id: int
    target: str
    version: str
    size: int
    sha256: str
    min_hardware: str
    min_bootloader: str
    url: str
    #: The SignedManifest (hex) devices receive in FirmwareUpdate.
    manifest: str
    key_id: str
    created_by: int | None
    created_at: datetime


class Selection(BaseModel):
    """Which devices of the network: by vehicle model, current firmware version, an explicit
    list of device ids (each filter optional; all the network's devices of the target's
    kind when none is given)."""

    models: list[Annotated[Text, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=50
    )
    from_versions: list[Annotated[Text, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=50
    )
    device_ids: list[Annotated[Text, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=10_000
    )


class CampaignCreate(BaseModel):
    name: Text = Field(min_length=1, max_length=128)
    network_id: Id
    image_id: Id
    selection: Selection = Field(default_factory=Selection)
    #: Devices of the first wave.
    canary: int = Field(default=1, ge=1, le=10_000)
    #: Each next wave is this many times the last (at least one more device).
    growth_factor: float = Field(default=2.0, ge=1.0, le=100.0)
    #: Devices per wave instead (the last wave takes the rest).
    wave_sizes: list[Annotated[int, Field(ge=1, le=100_000)]] | None = Field(
        default=None, min_length=1, max_length=100
    )
    #: % of a wave confirmed before the next wave starts.
    success_threshold_pct: int = Field(default=100, ge=0, le=100)
    #: % of a wave failed or rolled back that stops the campaign.
    error_threshold_pct: int = Field(default=20, ge=0, le=100)
    #: A device without progress for this long has failed.
    device_timeout_s: int = Field(default=1800, ge=10, le=7 * 24 * 3600)
    #: Start at once (else: `POST …/start`).
    start: bool = False


class CampaignPublic(BaseModel):
    id: int
    campaign_id: int
    name: str
    network_id: int
    image_id: int
    target: str
    version: str
    state: Literal["ready", "running", "paused", "stopped", "cancelled", "completed"]
    selection: dict[str, Any]
    wave_sizes: list[int]
    current_wave: int
    success_threshold_pct: int
    error_threshold_pct: int
    device_timeout_s: int
    reason: str | None
    devices: int
    pending: int
    in_progress: int
    confirmed: int
    failed: int
    cancelled: int
    created_by: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class CampaignDevicePublic(BaseModel):
    id: int
    campaign_id: int
    network_id: int
    device_id: str
    spot: int
    wave: int
    state: Literal["pending", "sent", "updating", "confirmed", "failed", "rolled-back", "cancelled"]
    stage: str | None
    bytes_done: int
    reason: str | None
    from_version: str | None
    sent_at: datetime | None
    progress_at: datetime | None
    finished_at: datetime | None


class WindowUpdate(BaseModel):
    #: Updates start only from this local time (the network's timezone) …
    start_local: HHMM
    #: … until this one (before the start: across midnight; equal: all day).
    end_local: HHMM


class WindowPublic(BaseModel):
    network_id: int
    start_local: str
    end_local: str
    updated_at: datetime


def _image(image: FirmwareImage) -> ImagePublic:
    return ImagePublic(
        id=image.id,
        image_id=image.id,
        target=image.target,
        version=image.version,
        size=image.size,
        sha256=image.sha256,
        min_hardware=image.min_hardware,
        min_bootloader=image.min_bootloader,
        url=image.url,
        manifest=image.manifest.hex(),
        key_id=image.key_id,
        created_by=image.created_by,
        created_at=image.created_at,
    )


async def _campaign(session: SessionDep, campaign: FirmwareCampaign) -> CampaignPublic:
    return (await _campaigns(session, [campaign]))[0]


async def _campaigns(
    session: SessionDep, campaigns: Sequence[FirmwareCampaign]
) -> list[CampaignPublic]:
    """The campaigns as answered, their images and device counts read once for all of them."""
    images = await repository.images_by_id(session, {c.image_id for c in campaigns})
    counts = await repository.campaign_counts(session, [c.id for c in campaigns])
    return [_campaign_public(c, images[c.image_id], counts[c.id]) for c in campaigns]


def _campaign_public(
    campaign: FirmwareCampaign, image: FirmwareImage, counts: repository.WaveCounts
) -> CampaignPublic:
    return CampaignPublic(
        id=campaign.id,
        campaign_id=campaign.id,
        name=campaign.name,
        network_id=campaign.network_id,
        image_id=campaign.image_id,
        target=image.target,
        version=image.version,
        state=CampaignState(campaign.state).value,
        selection=campaign.selection,
        wave_sizes=campaign.wave_sizes,
        current_wave=campaign.current_wave,
        success_threshold_pct=campaign.success_threshold_pct,
        error_threshold_pct=campaign.error_threshold_pct,
        device_timeout_s=campaign.device_timeout_s,
        reason=campaign.reason,
        devices=counts.total,
        pending=counts.pending,
        in_progress=counts.in_flight,
        confirmed=counts.confirmed,
        failed=counts.failed,
        cancelled=counts.cancelled,
        created_by=campaign.created_by,
        created_at=campaign.created_at,
        started_at=campaign.started_at,
        finished_at=campaign.finished_at,
    )


def _device(row: FirmwareCampaignDevice, network_id: int) -> CampaignDevicePublic:
    return CampaignDevicePublic(
        id=row.id,
        campaign_id=row.campaign_id,
        network_id=network_id,
        device_id=row.device_id,
        spot=row.spot,
        wave=row.wave,
        state=UpdateState(row.state).value,
        stage=row.stage,
        bytes_done=row.bytes_done,
        reason=row.reason,
        from_version=row.from_version,
        sent_at=row.sent_at,
        progress_at=row.progress_at,
        finished_at=row.finished_at,
    )


def _window(window: FirmwareWindow) -> WindowPublic:
    return WindowPublic(
        network_id=window.network_id,
        start_local=window.start_local,
        end_local=window.end_local,
        updated_at=window.updated_at,
    )


# ── images ────────────────────────────────────────────────────────────────────────────


@router.post(
    "/dashboard/firmware/images",
    response_model=Envelope[ImagePublic],
    summary="Upload firmware image",
    openapi_extra=OCTETS,
    responses=error_responses(409),
)
async def upload_image(
    operator: FirmwareOperator,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
    target: Annotated[
        Text,
        Query(
            min_length=1,
            max_length=64,
            description="station-mainboard, spot-board:<model>, vehicle-controller:<model> "
            "or bms:<model>.",
        ),
    ],
    version: Version,
    min_hardware: Annotated[Text, Query(max_length=32)] = "",
    min_bootloader: Annotated[Text, Query(max_length=32)] = "",
) -> Envelope[ImagePublic]:
    image = await service.upload_image(
        session,
        settings,
        load_firmware_key(settings),
        request.stream(),
        target=target,
        version=version,
        min_hardware=min_hardware,
        min_bootloader=min_bootloader,
        created_by=operator.user_id,
        networks=operator.networks,
    )
    await session.commit()
    return Envelope(data=_image(image))


@router.get(
    "/dashboard/firmware/images", response_model=Page[ImagePublic], summary="Get firmware images"
)
async def get_images(
    _operator: FirmwareOperator,
    session: SessionDep,
    keyset: KeysetDep,
    target: Annotated[Text | None, Query(max_length=64)] = None,
) -> Page[ImagePublic]:
    rows = await repository.images(session, keyset, target)
    await session.commit()
    page, next_key = cut(rows, keyset, key=lambda i: i.id)
    return Page(data=[_image(i) for i in page], next_primary_key=next_key)


@router.get(
    "/dashboard/firmware/images/{image_id}",
    response_model=Envelope[ImagePublic],
    summary="Get firmware image",
)
async def get_image(
    _operator: FirmwareOperator, session: SessionDep, image_id: ImageId
) -> Envelope[ImagePublic]:
    image = await service.get_image(session, image_id)
    await session.commit()
    return Envelope(data=_image(image))


@router.delete(
    "/dashboard/firmware/images/{image_id}",
    response_model=OkEnvelope,
    summary="Delete firmware image",
    responses=error_responses(409),
)
async def delete_image(
    operator: FirmwareOperator, session: SessionDep, settings: SettingsDep, image_id: ImageId
) -> OkEnvelope:
    digest = (await service.delete_image(session, image_id, operator.networks)).sha256
    await session.commit()
    service.forget_file(settings, digest)
    return OkEnvelope()


@router.get(
    "/firmware/images/{sha256}",
    response_class=ImageFile,
    response_model=None,
    responses=IMAGE_FILE,
    summary="Download firmware image",
    description="For devices, without credentials (the image is named by its digest and "
    "described by a signed manifest). `Range: bytes=<n>-` resumes a download (206 with "
    "`Content-Range`; 416 past the end, with `Content-Range: bytes */<size>`); the ETag "
    "is the SHA-256.",
)
async def download_image(
    session: SessionDep,
    settings: SettingsDep,
    sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="SHA-256 (hex).")],
) -> ImageFile:
    image = await repository.image_by_digest(session, sha256)
    await session.commit()
    path = service.image_store(settings).path_of(sha256)
    if image is None or not path.is_file():
        raise not_found("firmware image", sha256)
    # Streamed from the file in chunks, ranges answered (206; 416 and 400 enveloped).
    return ImageFile(
        path,
        media_type="application/octet-stream",
        headers={"ETag": f'"{sha256}"', "Cache-Control": "public, max-age=31536000, immutable"},
    )


# ── campaigns ─────────────────────────────────────────────────────────────────────────


@router.post(
    "/dashboard/firmware/campaigns",
    response_model=Envelope[CampaignPublic],
    summary="Create firmware campaign",
    responses=error_responses(404),
)
async def create_campaign(
    operator: FirmwareOperator, session: SessionDep, body: CampaignCreate
) -> Envelope[CampaignPublic]:
    campaign = await service.create_campaign(
        session,
        operator.check,
        name=body.name,
        network_id=body.network_id,
        image_id=body.image_id,
        selection=body.selection.model_dump(),
        canary=body.canary,
        growth_factor=body.growth_factor,
        wave_sizes=body.wave_sizes,
        success_threshold_pct=body.success_threshold_pct,
        error_threshold_pct=body.error_threshold_pct,
        device_timeout_s=body.device_timeout_s,
        created_by=operator.user_id,
    )
    if body.start:
        await service.start_campaign(session, campaign)
    answer = await _campaign(session, campaign)
    await session.commit()
    return Envelope(data=answer)


@router.get(
    "/dashboard/firmware/campaigns",
    response_model=Page[CampaignPublic],
    summary="Get firmware campaigns",
)
async def get_campaigns(
    operator: FirmwareOperator,
    session: SessionDep,
    keyset: KeysetDep,
    network_id: Annotated[Id | None, Query(description="Only this network's.")] = None,
    state: Annotated[CampaignState | None, Query()] = None,
) -> Page[CampaignPublic]:
    scope = {network_id} if network_id is not None else operator.networks
    rows = await repository.campaigns(session, keyset, scope, state.value if state else None)
    page, next_key = cut(rows, keyset, key=lambda c: c.id)
    data = await _campaigns(session, page)
    await session.commit()
    return Page(data=data, next_primary_key=next_key)


@router.get(
    "/dashboard/firmware/campaigns/{campaign_id}",
    response_model=Envelope[CampaignPublic],
    summary="Get firmware campaign",
)
async def get_campaign(
    operator: FirmwareOperator, session: SessionDep, campaign_id: CampaignId
) -> Envelope[CampaignPublic]:
    campaign = await service.get_campaign(session, campaign_id, operator.check)
    answer = await _campaign(session, campaign)
    await session.commit()
    return Envelope(data=answer)


@router.get(
    "/dashboard/firmware/campaigns/{campaign_id}/devices",
    response_model=Page[CampaignDevicePublic],
    summary="Get firmware campaign devices",
    description="Each device's update: its wave, state, last stage reported, download "
    "progress, why it failed.",
)
async def get_campaign_devices(
    operator: FirmwareOperator,
    session: SessionDep,
    keyset: KeysetDep,
    campaign_id: CampaignId,
    state: Annotated[UpdateState | None, Query()] = None,
) -> Page[CampaignDevicePublic]:
    campaign = await service.get_campaign(session, campaign_id, operator.check)
    rows = await repository.campaign_devices(
        session, campaign.id, keyset, state.value if state else None
    )
    await session.commit()
    page, next_key = cut(rows, keyset, key=lambda r: r.id)
    return Page(data=[_device(r, campaign.network_id) for r in page], next_primary_key=next_key)


async def _act(
    operator: OperatorContext, session: SessionDep, campaign_id: int, action: str
) -> Envelope[CampaignPublic]:
    campaign = await service.get_campaign(session, campaign_id, operator.check, lock=True)
    actions = {
        "start": service.start_campaign,
        "pause": service.pause_campaign,
        "resume": service.resume_campaign,
        "cancel": service.cancel_campaign,
    }
    await actions[action](session, campaign)
    answer = await _campaign(session, campaign)
    await session.commit()
    return Envelope(data=answer)


def _action(action: str, summary: str) -> None:
    async def act(
        operator: FirmwareOperator, session: SessionDep, campaign_id: CampaignId
    ) -> Envelope[CampaignPublic]:
        return await _act(operator, session, campaign_id, action)

    router.post(
        f"/dashboard/firmware/campaigns/{{campaign_id}}/{action}",
        response_model=Envelope[CampaignPublic],
        summary=summary,
        responses=error_responses(409),
        name=f"{action}_campaign",
    )(act)


_action("start", "Start firmware campaign")
_action("pause", "Pause firmware campaign")
_action("resume", "Resume firmware campaign")
_action("cancel", "Cancel firmware campaign")


# ── maintenance windows ───────────────────────────────────────────────────────────────


@router.get(
    "/dashboard/firmware/networks/{network_id}/window",
    response_model=Envelope[WindowPublic | None],
    summary="Get firmware maintenance window",
    description="`data` null: updates may start at any time.",
)
async def get_window(
    operator: FirmwareOperator, session: SessionDep, network_id: NetworkId
) -> Envelope[WindowPublic | None]:
    operator.check([network_id])
    window, _ = await repository.window_of(session, network_id)
    await session.commit()
    return Envelope(data=_window(window) if window is not None else None)


@router.put(
    "/dashboard/firmware/networks/{network_id}/window",
    response_model=Envelope[WindowPublic],
    summary="Set firmware maintenance window",
    description="Updates of the network's campaigns start only within this local time "
    "range (outside riding hours); an update under way is not interrupted.",
)
async def set_window(
    operator: FirmwareOperator, session: SessionDep, network_id: NetworkId, body: WindowUpdate
) -> Envelope[WindowPublic]:
    operator.check([network_id])
    window = await service.set_window(session, network_id, body.start_local, body.end_local)
    answer = _window(window)
    await session.commit()
    return Envelope(data=answer)


@router.delete(
    "/dashboard/firmware/networks/{network_id}/window",
    response_model=OkEnvelope,
    summary="Delete firmware maintenance window",
)
async def delete_window(
    operator: FirmwareOperator, session: SessionDep, network_id: NetworkId
) -> OkEnvelope:
    operator.check([network_id])
    await service.clear_window(session, network_id)
    await session.commit()
    return OkEnvelope()
