"""Operators' device registry and device commands (issue 16), and seed 002 Devices "Get
users using given device" (riders' phones).

``GET /v1/dashboard/devices`` (keyset; kind, online, firmware version, network),
``GET /v1/dashboard/devices/{device_id}`` (boots, attachment, liveness),
``GET /v1/dashboard/devices/{device_id}/commands`` (every command sent, keyset),
``POST /v1/dashboard/devices/{device_id}/commands/<command>`` (set-maintenance,
auth-list-update, config, reboot, trigger-message, set-speed-limit): the device's answer,
``GET /v1/dashboard/app-devices/{id}/users``.

Device certificates (issue 17): ``POST /v1/dashboard/devices/provision`` (the bench: a
device's CSR → its certificate and the CA chain; a new device is registered unattached,
provisioned-not-commissioned), ``GET /v1/dashboard/devices/{device_id}/certificates``,
``POST /v1/dashboard/devices/{device_id}/certificates/{serial}/revoke`` (the CRL rewritten,
the broker told, the device's session dropped).

Access: a station's mainboard is reached with ``stations.advanced``, a vehicle's
controller with ``vehicles.manage`` (the one check, :class:`Operator`, with the permission
of the device's kind); the riders' login devices with ``users.list``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from kickstand.cloud.access.service import user_networks
from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.command_answers import command_error, command_sent
from kickstand.cloud.api.deps import (
    CurrentUser,
    GatewayDep,
    SessionDep,
    SessionmakerDep,
    SettingsDep,
)
from kickstand.cloud.api.errors import ApiError, not_found
from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.api.openapi import error_responses
from kickstand.cloud.api.pagination import KeysetDep
from kickstand.cloud.api.schemas import Envelope, Page
from kickstand.cloud.devices import identity, service
from kickstand.cloud.devices import repository as repo
from kickstand.cloud.devices.certificates import DeviceCertificate
from kickstand.cloud.devices.repository import DeviceRow, Scope
from kickstand.cloud.devices.schemas import (
    AttachedPublic,
    AuthListSent,
    AuthListUpdateBody,
    BootPublic,
    CertificatePublic,
    CommandPublic,
    CommandSent,
    ConfigBody,
    DeviceDetail,
    DevicePublic,
    LoginDeviceUser,
    ProvisionBody,
    Provisioned,
    RebootBody,
    RevokeBody,
    SerialText,
    SetMaintenanceBody,
    SetSpeedLimitBody,
    TriggerMessageBody,
)
from kickstand.cloud.errors import NotFoundError
from kickstand.cloud.keyset import Keyset, cut
from kickstand.cloud.liveness import presence_of, why_offline
from kickstand.cloud.models import DeviceKind
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import TriggerKind

router = APIRouter(prefix="/dashboard", tags=["devices"])

#: The permission of each kind of device.
PERMISSIONS = {DeviceKind.STATION: "stations.advanced", DeviceKind.VEHICLE: "vehicles.manage"}
DeviceIdPath = Annotated[Id, Path(description="The device's registry id (`id`).")]
#: How many boots the detail shows.
BOOTS_SHOWN = 20
#: The history's key is a command's issue time in ms (``device_commands`` has no integer
#: id): past the 2^31 of an ``Id``, so its ``last_primary_key`` is bounded as a bigint.
MAX_MS = 2**63 - 1


def history_keyset(
    page_size: Annotated[int, Query(ge=10, le=500, description="The maximum items.")] = 20,
    last_primary_key: Annotated[
        int | None,
        Query(ge=0, le=MAX_MS, description="`key` of the last item of the current page."),
    ] = None,
    primary_key_dir: Annotated[Literal["ASC", "DESC"], Query()] = "DESC",
) -> Keyset:
    return Keyset(page_size, last_primary_key, primary_key_dir)


HistoryKeysetDep = Annotated[Keyset, Depends(history_keyset)]


@dataclass(frozen=True, slots=True)
class DeviceAccess:
    context: OperatorContext
    #: Per kind: None every network (and unattached devices), else the networks.
    scopes: dict[DeviceKind, Scope]


class DeviceOperator(Operator):
    """The one check with the permission of the path's device kind (an unknown device is
    checked as a station's, then not found)."""

    def __init__(self) -> None:
        super().__init__(PERMISSIONS[DeviceKind.STATION])
        self.vehicles = Operator(PERMISSIONS[DeviceKind.VEHICLE])

    # An Operator (the access walk recognises the check by its class) whose answer carries
    # the device kind's scope, hence the different signature.
    async def __call__(  # type: ignore[override]
        self, request: Request, user: CurrentUser, session: SessionDep, device_id: DeviceIdPath
    ) -> DeviceAccess:
        kind = await repo.kind_of(session, device_id)
        if kind == DeviceKind.VEHICLE:
            context = await self.vehicles(request, user)
        else:
            context = await super().__call__(request, user)
        return DeviceAccess(context, {kind or DeviceKind.STATION: context.networks})


class RegistryOperator(Operator):
    """The listing: stations' devices with ``stations.advanced``, vehicles' with
    ``vehicles.manage``; either one opens it (refused as the stations' check when neither)."""

    def __init__(self) -> None:
        super().__init__(PERMISSIONS[DeviceKind.STATION])
        self.vehicles = Operator(PERMISSIONS[DeviceKind.VEHICLE])

    # As DeviceOperator's: an Operator answering the kinds' scopes.
    async def __call__(  # type: ignore[override]
        self, request: Request, user: CurrentUser
    ) -> DeviceAccess:
        scopes: dict[DeviceKind, Scope] = {}
        first: ApiError | None = None
        context: OperatorContext | None = None
        for kind, check in (
            (DeviceKind.STATION, super().__call__),
            (DeviceKind.VEHICLE, self.vehicles),
        ):
            try:
                context = await check(request, user)
            except ApiError as exc:
                first = first or exc
                continue
            scopes[kind] = context.networks
        if context is None:
            assert first is not None
            raise first
        return DeviceAccess(context, scopes)


DeviceDep = Annotated[DeviceAccess, Depends(DeviceOperator())]
RegistryDep = Annotated[DeviceAccess, Depends(RegistryOperator())]
LoginDevicesOperator = Annotated[OperatorContext, Depends(Operator("users.list"))]
#: The bench rig's account: stations.advanced (a new device needs it on every network).
ProvisioningOperator = Annotated[
    OperatorContext, Depends(Operator(PERMISSIONS[DeviceKind.STATION]))
]


def _public(row: DeviceRow, now: datetime) -> DevicePublic:
    device = row.device
    reason = why_offline(presence_of((device.online, device.last_seen_at, device.heartbeat_s)), now)
    return DevicePublic(
        id=device.id,
        device_id=device.device_id,
        kind=device.kind.value,
        firmware_version=device.firmware_version,
        hardware_version=device.hardware_version,
        config_version=device.config_version,
        last_seen_at=device.last_seen_at,
        online=reason is None,
        offline_reason=reason,
        heartbeat_s=device.heartbeat_s,
        attached=AttachedPublic(
            network_id=row.network_id,
            station_id=row.station_id,
            station_name=row.station_name,
            cluster_id=row.cluster_id,
            vehicle_id=row.vehicle_id,
            vehicle_serial_number=row.vehicle_serial,
        ),
    )


async def _device(session: SessionDep, access: DeviceAccess, device_id: int) -> DeviceRow:
    try:
        row = await service.device_for(session, device_id, access.scopes)
    except NotFoundError as exc:
        raise not_found("device", device_id) from exc
    if row.network_id is not None:
        access.context.touched.append(row.network_id)  # the access log's networks
    return row


@router.get(
    "/devices",
    response_model=Page[DevicePublic],
    summary="Devices of the operator's networks (stations' mainboards, vehicles' controllers)",
)
async def list_devices(
    access: RegistryDep,
    session: SessionDep,
    keyset: KeysetDep,
    kind: Literal["station", "vehicle"] | None = None,
    online: bool | None = None,
    firmware_version: Annotated[Text | None, Query(min_length=1, max_length=64)] = None,
    network_id: Annotated[Id | None, Query()] = None,
) -> Page[DevicePublic]:
    now = datetime.now(UTC)
    rows = await repo.list_devices(
        session,
        keyset,
        scopes=access.scopes,
        now=now,
        kind=DeviceKind(kind) if kind else None,
        online=online,
        firmware_version=firmware_version,
        network_ids=[network_id] if network_id is not None else None,
    )
    page, next_key = cut(rows, keyset, key=lambda r: r.device.id)
    return Page(data=[_public(r, now) for r in page], next_primary_key=next_key)


@router.get(
    "/devices/{device_id}",
    response_model=Envelope[DeviceDetail],
    summary="A device: identity, versions, liveness, boots, what it is attached to",
)
async def get_device(
    device_id: DeviceIdPath, access: DeviceDep, session: SessionDep
) -> Envelope[DeviceDetail]:
    row = await _device(session, access, device_id)
    boots = await repo.boots(session, row.device.device_id, BOOTS_SHOWN)
    public = _public(row, datetime.now(UTC))
    return Envelope(
        data=DeviceDetail(
            **public.model_dump(),
            boot_id=row.device.boot_id,
            boots=[BootPublic.model_validate(b, from_attributes=True) for b in boots],
        )
    )


@router.get(
    "/devices/{device_id}/commands",
    response_model=Page[CommandPublic],
    summary="The device's command history, newest first (every command the cloud sent it)",
)
async def get_device_commands(
    device_id: DeviceIdPath,
    access: DeviceDep,
    session: SessionDep,
    keyset: HistoryKeysetDep,
    command_type: Annotated[Text | None, Query(min_length=1, max_length=32)] = None,
) -> Page[CommandPublic]:
    row = await _device(session, access, device_id)
    rows = await repo.command_history(session, row.device.device_id, keyset, command_type)
    page, next_key = cut(rows, keyset, key=lambda c: repo.issued_key(c.issued_at))
    return Page(
        data=[
            CommandPublic(
                key=repo.issued_key(c.issued_at),
                command_id=c.command_id,
                command_type=c.command_type,
                spot=c.spot,
                rent_id=c.rent_id,
                issued_at=c.issued_at,
                expires_at=c.expires_at,
                status=c.status,
                reason=c.reason,
                result_at=c.result_at,
                operator_id=c.operator_id,
            )
            for c in page
        ],
        next_primary_key=next_key,
    )


def _answer(answer: service.CommandAnswer) -> Envelope[CommandSent]:
    """Done: 200. Otherwise the error of its outcome, with the command in ``data``."""
    sent = command_sent(answer)
    what = f"{answer.command_type} {answer.command_id}"
    error = command_error(answer, what, sent.model_dump(mode="json"))
    if error is not None:
        raise error
    return Envelope(data=sent)


COMMAND_ERRORS = error_responses(409, 503, 504)


@dataclass(frozen=True, slots=True)
class Target:
    """The device a command goes to (checked, visible) and what sends it."""

    row: DeviceRow
    commands: service.DeviceCommands


async def command_target(
    device_id: DeviceIdPath,
    access: DeviceDep,
    session: SessionDep,
    maker: SessionmakerDep,
    gateway: GatewayDep,
) -> Target:
    row = await _device(session, access, device_id)
    await session.close()  # nothing held while the device is awaited
    return Target(row, service.DeviceCommands(maker, gateway, access.context.user_id))


TargetDep = Annotated[Target, Depends(command_target)]


@router.post(
    "/devices/{device_id}/commands/set-maintenance",
    response_model=Envelope[CommandSent],
    summary="SetMaintenance: a station's spot (or the whole station, spot 0) out of service",
    responses=COMMAND_ERRORS,
)
async def command_set_maintenance(
    device_id: DeviceIdPath,
    body: SetMaintenanceBody,
    target: TargetDep,
) -> Envelope[CommandSent]:
    row = target.row
    answer = await target.commands.set_maintenance(row, body.spot, body.on, body.reason)
    return _answer(answer)


@router.post(
    "/devices/{device_id}/commands/auth-list-update",
    response_model=Envelope[AuthListSent],
    summary="AuthListUpdate: send a station its network's authorization list (FULL or DIFF)",
    responses=COMMAND_ERRORS,
)
async def command_auth_list_update(
    device_id: DeviceIdPath,
    body: AuthListUpdateBody,
    target: TargetDep,
) -> Envelope[AuthListSent]:
    row = target.row
    answers = await target.commands.auth_list_full(row, diff=body.kind == "DIFF")
    for answer in answers:
        _answer(answer)  # the first not done is the answer (an error)
    return Envelope(data=AuthListSent(commands=[command_sent(a) for a in answers]))


@router.post(
    "/devices/{device_id}/commands/config",
    response_model=Envelope[CommandSent],
    summary="Config: change settings of SPEC §7.5 (all or nothing)",
    responses=COMMAND_ERRORS,
)
async def command_config(
    device_id: DeviceIdPath,
    body: ConfigBody,
    target: TargetDep,
) -> Envelope[CommandSent]:
    row = target.row
    version = body.version or (row.device.config_version or 0) + 1
    command = service.config_command(version, dict(body.values))
    return _answer(await target.commands.plain(row, command))


@router.post(
    "/devices/{device_id}/commands/reboot",
    response_model=Envelope[CommandSent],
    summary="Reboot: the device answers, says goodbye (Death 'reboot') and restarts",
    responses=COMMAND_ERRORS,
)
async def command_reboot(
    device_id: DeviceIdPath,
    body: RebootBody,
    target: TargetDep,
) -> Envelope[CommandSent]:
    row = target.row
    return _answer(await target.commands.plain(row, m.Reboot(hard=body.hard)))


@router.post(
    "/devices/{device_id}/commands/trigger-message",
    response_model=Envelope[CommandSent],
    summary="TriggerMessage: the device sends a birth, status, heartbeat or telemetry now",
    responses=COMMAND_ERRORS,
)
async def command_trigger_message(
    device_id: DeviceIdPath,
    body: TriggerMessageBody,
    target: TargetDep,
) -> Envelope[CommandSent]:
    row = target.row
    command = m.TriggerMessage(which=TriggerKind[body.which.upper()], spot=body.spot)
    return _answer(await target.commands.plain(row, command))


@router.post(
    "/devices/{device_id}/commands/set-speed-limit",
    response_model=Envelope[CommandSent],
    summary="SetSpeedLimit: a vehicle's top speed until the next one",
    responses=COMMAND_ERRORS,
)
async def command_set_speed_limit(
    device_id: DeviceIdPath,
    body: SetSpeedLimitBody,
    target: TargetDep,
) -> Envelope[CommandSent]:
    row = target.row
    command = m.SetSpeedLimit(max_kmh=body.max_kmh)
    return _answer(await target.commands.plain(row, command))


@router.get(
    "/app-devices/{id}/users",
    response_model=Envelope[list[LoginDeviceUser]],
    summary="Get users using given device (the riders who logged in with this phone)",
)
async def get_login_device_users(
    id: Annotated[Text, Path(min_length=1, max_length=50, description="The device to look for.")],
    operator: LoginDevicesOperator,
    session: SessionDep,
) -> Envelope[list[LoginDeviceUser]]:
    users = await repo.users_of_login_device(session, id)
    if operator.networks is not None:
        users = [u for u in users if await user_networks(session, u) & operator.networks]
    last = await repo.last_login_with(session, id, [u.id for u in users])
    return Envelope(
        data=[
            LoginDeviceUser(
                id=u.id, email=u.email, full_name=u.full_name, last_login_at=last.get(u.id)
            )
            for u in users
        ]
    )


# ── certificates (issue 17) ───────────────────────────────────────────────────────────


def _certificate(row: DeviceCertificate, now: datetime) -> CertificatePublic:
    return CertificatePublic(
        id=row.id,
        serial_number=row.serial_number,
        subject_cn=row.subject_cn,
        not_before=row.not_before,
        not_after=row.not_after,
        fingerprint_sha256=row.fingerprint_sha256,
        issued_at=row.issued_at,
        issued_by=row.issued_by,
        revoked=row.revoked_at is not None,
        revoked_at=row.revoked_at,
        revoke_reason=row.revoke_reason,
        superseded_by=row.superseded_by,
        state=identity.state_of(row, now),  # type: ignore[arg-type]
    )


@router.post(
    "/devices/provision",
    response_model=Envelope[Provisioned],
    summary="Provision a device at the bench: its CSR signed (CN = device id), the CA chain",
    responses=error_responses(409),
)
async def provision_device(
    body: ProvisionBody,
    operator: ProvisioningOperator,
    session: SessionDep,
    settings: SettingsDep,
) -> Envelope[Provisioned]:
    ca = identity.load_ca(settings)
    done = await identity.provision(
        session,
        ca,
        device_id=body.device_id,
        kind=DeviceKind(body.kind),
        csr_pem=body.csr.encode(),
        networks=operator.networks,
        issued_by=operator.user_id,
        valid_days=settings.DEVICE_CERT_VALID_DAYS,
    )
    now = datetime.now(UTC)
    return Envelope(
        data=Provisioned(
            id=done.device.id,
            device_id=done.device.device_id,
            kind=done.device.kind.value,
            unattached=done.unattached,
            certificate=_certificate(done.issued.row, now),
            certificate_pem=identity.pki.pem(done.issued.certificate).decode(),
            ca_chain_pem=identity.chain_pem(ca).decode(),
        )
    )


@router.get(
    "/devices/{device_id}/certificates",
    response_model=Envelope[list[CertificatePublic]],
    summary="The device's certificates, newest first (serial, expiry, revoked)",
)
async def get_device_certificates(
    device_id: DeviceIdPath, access: DeviceDep, session: SessionDep
) -> Envelope[list[CertificatePublic]]:
    row = await _device(session, access, device_id)
    now = datetime.now(UTC)
    rows = await identity.certificates_of(session, row.device.id)
    return Envelope(data=[_certificate(c, now) for c in rows])


@router.post(
    "/devices/{device_id}/certificates/{serial}/revoke",
    response_model=Envelope[CertificatePublic],
    summary="Revoke a certificate: the CRL rewritten, the broker reloaded, the session dropped",
)
async def revoke_device_certificate(
    device_id: DeviceIdPath,
    serial: Annotated[SerialText, Path(description="The certificate's serial (hex).")],
    body: RevokeBody,
    access: DeviceDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Envelope[CertificatePublic]:
    row = await _device(session, access, device_id)
    certificate = await identity.certificate_of(session, row.device.id, serial)
    if certificate is None:
        raise not_found("certificate", serial)
    now = datetime.now(UTC)
    if identity.revoke(certificate, body.reason, now):
        await session.commit()
        await identity.publish_revocations(session, settings, [row.device.device_id])
    public = _certificate(certificate, now)
    await session.commit()
    return Envelope(data=public)
