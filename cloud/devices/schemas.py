"""Schemas of the device registry and of operators' device commands (bounds from
``protocol/v1`` and SPEC §6, §7.4, §7.5)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt

from kickstand.cloud.api.ids import Text

#: SPEC §6: spot numbers are uint ≤ 255; versions uint ≤ 2^31−1; texts of 0..64.
SpotNumber = Annotated[int, Field(ge=0, le=255)]
Version = Annotated[int, Field(ge=1, le=2**31 - 1)]
ConfigValue = StrictBool | Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)] | StrictFloat
ConfigText = Annotated[Text, Field(max_length=256)]


class AttachedPublic(BaseModel):
    """What the device is part of (all null: attached to nothing, a spare board)."""

    network_id: int | None
    station_id: int | None
    station_name: str | None
    cluster_id: int | None
    vehicle_id: int | None
    vehicle_serial_number: str | None


class DevicePublic(BaseModel):
    id: int
    device_id: str
    kind: Literal["station", "vehicle"]
    firmware_version: str | None
    hardware_version: str | None
    config_version: int | None
    last_seen_at: datetime | None
    #: By the one liveness rule (kickstand.cloud.liveness), judged at the request's time.
    online: bool
    #: Why it is offline (null: online).
    offline_reason: str | None
    heartbeat_s: int | None
    attached: AttachedPublic


class BootPublic(BaseModel):
    boot_id: int
    received_at: datetime
    firmware: str | None
    hardware: str | None
    config_version: int | None
    auth_list_version: int | None
    serial_number: str | None
    accepted: bool
    died_at: datetime | None
    death_reason: str | None
    inventory: list[dict[str, Any]]


class DeviceDetail(DevicePublic):
    #: The current boot (null: never booted).
    boot_id: str | None
    #: The last boots, newest first.
    boots: list[BootPublic]


class CommandPublic(BaseModel):
    """One command of the device's history (every command the cloud sent it: rents,
    badge rides, authorization lists, operators')."""

    #: Pass as ``last_primary_key`` to page (the issue time in ms).
    key: int
    command_id: str
    command_type: str
    spot: int | None
    rent_id: int | None
    issued_at: datetime
    expires_at: datetime
    #: pending, accepted, done, rejected, failed, not-sent.
    status: str
    reason: str | None
    result_at: datetime | None
    #: The operator who sent it (null: the cloud's own).
    operator_id: int | None


class CommandSent(BaseModel):
    """An operator's command and the device's answer (``outcome``: done; a refusal,
    failure, timeout or offline device is an error whose ``data`` is this)."""

    command_id: str
    command_type: str
    outcome: Literal["done", "rejected", "failed", "timeout", "offline"]
    reason: str | None
    issued_at: datetime
    expires_at: datetime


class AuthListSent(BaseModel):
    #: The FULL and its continuations, in order (sending stops at the first not done).
    commands: list[CommandSent]


class SetMaintenanceBody(BaseModel):
    #: The spot's displayed number; 0: the whole station.
    spot: SpotNumber
    on: bool
    reason: Text | None = Field(default=None, max_length=64)


class AuthListUpdateBody(BaseModel):
    #: FULL: the network's whole list at its current version. DIFF: the changes from the
    #: version the station confirmed holding to the network's (the cloud also sends one by
    #: itself at each change of the list: a badge linked, blocked…).
    kind: Literal["FULL", "DIFF"] = "FULL"


class ConfigBody(BaseModel):
    #: SPEC §7.5 keys; the device refuses the whole Config for a key it does not know.
    values: dict[Annotated[Text, Field(min_length=1, max_length=64)], ConfigValue | ConfigText] = (
        Field(min_length=1, max_length=64)
    )
    #: Default: the version the device reported + 1.
    version: Version | None = None


class RebootBody(BaseModel):
    hard: bool = False


class TriggerMessageBody(BaseModel):
    which: Literal["birth", "status", "heartbeat", "telemetry"]
    #: STATUS only: the spot (0: every spot).
    spot: SpotNumber = 0


class SetSpeedLimitBody(BaseModel):
    max_kmh: Annotated[int, Field(ge=0, le=100)]


class LoginDeviceUser(BaseModel):
    id: int
    email: str
    full_name: str | None
    #: The last login with this device.
    last_login_at: datetime | None


# ── device certificates (issue 17) ───────────────────────────────────────────────────

#: A PEM CSR of an ECDSA P-256/P-384 key is under 1 KiB; the bound keeps a body small.
CsrPem = Annotated[Text, Field(min_length=1, max_length=8192)]
#: SPEC §2: ``<kind>-<4..16 alphanumerics>`` (the certificate's CN and the MQTT client id).
DeviceIdText = Annotated[str, Field(pattern=r"^[a-z]{2}-[A-Za-z0-9]{4,16}$")]
#: An x509 serial in hex (up to 159 bits: 40 hex digits).
SerialText = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{1,40}$")]


class CertificatePublic(BaseModel):
    """A client certificate the installation's CA signed for the device."""

    id: int
    #: The x509 serial, lowercase hex (up to 159 bits).
    serial_number: str
    #: The subject's CN: the device id the broker binds it to.
    subject_cn: str
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str
    issued_at: datetime
    #: The operator who asked (the bench rig's account); null: the device's own renewal.
    issued_by: int | None
    revoked: bool
    revoked_at: datetime | None
    revoke_reason: str | None
    #: The certificate that renewed this one (null: none yet).
    superseded_by: int | None
    #: At the request's time: valid, expired, revoked or superseded (still valid until its
    #: expiry, replaced by a newer one).
    state: Literal["valid", "expired", "revoked", "superseded"]


class ProvisionBody(BaseModel):
    """The bench's request: the device's CSR (its key never leaves it)."""

    device_id: DeviceIdText
    kind: Literal["station", "vehicle"]
    #: PKCS#10, PEM; CN = ``device_id``.
    csr: CsrPem


class Provisioned(BaseModel):
    #: The device's registry id (``/devices/{id}``).
    id: int
    device_id: str
    kind: Literal["station", "vehicle"]
    #: True when the device is attached to no station or vehicle yet (provisioned, not
    #: commissioned): commissioning a station or registering a vehicle adopts it.
    unattached: bool
    certificate: CertificatePublic
    certificate_pem: str
    #: The installation's CA (PEM): the device verifies the broker against it.
    ca_chain_pem: str


class RevokeBody(BaseModel):
    reason: Annotated[Text, Field(min_length=1, max_length=64)] = "operator"


__all__ = [
    "AttachedPublic",
    "AuthListSent",
    "AuthListUpdateBody",
    "BootPublic",
    "CertificatePublic",
    "CommandPublic",
    "CommandSent",
    "ConfigBody",
    "DeviceDetail",
    "DevicePublic",
    "LoginDeviceUser",
    "ProvisionBody",
    "Provisioned",
    "RebootBody",
    "RevokeBody",
    "SetMaintenanceBody",
    "SetSpeedLimitBody",
    "TriggerMessageBody",
]
