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
    #: FULL: the network's whole list at its current version. A DIFF is sent by the cloud
    #: itself at each change of the list (a badge linked, blocked…), never by hand.
    kind: Literal["FULL"] = "FULL"


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


__all__ = [
    "AttachedPublic",
    "AuthListSent",
    "AuthListUpdateBody",
    "BootPublic",
    "CommandPublic",
    "CommandSent",
    "ConfigBody",
    "DeviceDetail",
    "DevicePublic",
    "LoginDeviceUser",
    "RebootBody",
    "SetMaintenanceBody",
    "SetSpeedLimitBody",
    "TriggerMessageBody",
]
