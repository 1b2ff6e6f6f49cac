"""Rig descriptions: which ports, which expectations, which limits (one TOML file per bench).

    rig = load_rig(Path("hardware-tests/examples/station.toml"))   # StationRig | VehicleRig
    rig = StationRig.simulated()                                    # what --simulated runs

Examples of both kinds, commented, are in ``hardware-tests/examples/``. Unknown keys are
refused (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from kickstand.protocol import topics
from kickstand.protocol.errors import TopicError
from kickstand.rigs.errors import RigConfigError

Range = tuple[float, float]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _range(value: Range) -> Range:
    low, high = value
    if low > high:
        raise ValueError(f"range [{low}, {high}]: low above high")
    return value


def _hex_uid(value: str) -> str:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"UID {value!r} is not hex") from None
    if len(raw) not in (4, 7, 10):
        raise ValueError("an NFC UID has 4, 7 or 10 bytes")
    return value.lower()


class StationAgentPorts(_Model):
    """Where the bench PC reaches the station's hardware (the agent runs on the bench PC)."""

    spot_bus: str = "/dev/ttyUSB0"
    badge_reader: str = "usb"  # nfcpy path: usb[:vid:pid], tty:USB1:pn532, udp:host:port
    inputs: str = "none"  # dir:<directory> of power/alarm/temperature values, or none
    config: Path | None = None  # the device's own agent settings (firmware, hardware, …)
    extra: dict[str, Any] = Field(default_factory=dict)  # more agent settings, verbatim


class StationExpect(_Model):
    spots: int = Field(default=8, ge=1, le=32)
    mainboard_firmware: str = "st-1.0.0"
    hardware: str = "ksm-1"
    spot_firmware: str = "sb-1.4.2"


class StationTest(_Model):
    badge_uid: str = "04a1b2c3d4e5f6"  # hex, 4/7/10 bytes
    vehicle_serial: str = "TV000001"  # the test vehicle docked in each spot in turn

    _uid = field_validator("badge_uid")(_hex_uid)


class StationLimits(_Model):
    lock_cycle_s: float = Field(default=3.0, gt=0)  # unlock, sense open, re-lock, sense closed
    temperature_c: Range = (-20.0, 55.0)
    spot_temperature_c: Range = (-20.0, 55.0)
    power_w: Range = (5.0, 150.0)
    boot_timeout_s: float = Field(default=30.0, gt=0)
    person_timeout_s: float = Field(default=120.0, gt=0)  # a prompt waits this long
    firmware_timeout_s: float = Field(default=120.0, gt=0)
    offline_window_s: int = Field(default=2, ge=1)  # unlock window left to expire while offline

    _check = field_validator("temperature_c", "spot_temperature_c", "power_w")(_range)


class FirmwareStaging(_Model):
    image: Path | None = None  # None: the step is skipped with a reason
    version: str = ""
    spot: int = Field(default=1, ge=1)


class ReportSettings(_Model):
    dir: Path = Path("reports")


class Provisioning(_Model):
    """The end-of-line provisioning step (issue 17): the device's key made on it, its CSR
    signed by the installation (``POST /v1/dashboard/devices/provision``), the certificate
    installed, a TLS connection tried. Without ``api_url`` the step is skipped."""

    api_url: str | None = None  # the cloud's API, e.g. https://api.example.net
    email: str = ""  # the bench's operator account (stations.advanced on every network)
    password_env: str = "KICKSTAND_RIG_PASSWORD"  # its password: an environment variable
    tls_broker_url: str | None = None  # mqtts://host:8883 (None: the TLS try is skipped)
    identity_dir: Path | None = None  # where the device keeps them (None: <workdir>/identity)
    timeout_s: float = Field(default=20.0, gt=0)


class StationRig(_Model):
    kind: Literal["station"] = "station"
    device_id: str = "st-0001"
    agent: StationAgentPorts = StationAgentPorts()
    expect: StationExpect = StationExpect()
    test: StationTest = StationTest()
    limits: StationLimits = StationLimits()
    firmware: FirmwareStaging = FirmwareStaging()
    report: ReportSettings = ReportSettings()
    provisioning: Provisioning = Provisioning()

    @field_validator("device_id")
    @classmethod
    def _device_id(cls, value: str) -> str:
        try:
            return topics.validate_device_id(value)
        except TopicError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _firmware_spot(self) -> StationRig:
        if self.firmware.spot > self.expect.spots:
            raise ValueError(f"firmware.spot {self.firmware.spot} but the station has "
                             f"{self.expect.spots} spots")
        return self

    @property
    def serial(self) -> str:
        return self.device_id

    @classmethod
    def simulated(cls, spots: int = 4) -> StationRig:
        """The simulated bench: short time budgets, the simulators' versions."""
        return cls(
            device_id="st-0001",
            expect=StationExpect(spots=spots),
            limits=StationLimits(
                lock_cycle_s=3.0, boot_timeout_s=20.0, person_timeout_s=6.0,
                firmware_timeout_s=20.0, offline_window_s=1,
            ),
            firmware=FirmwareStaging(version="sb-1.4.3", spot=1),
        )


class VehicleAgentPorts(_Model):
    gps_port: str = "/dev/ttyUSB0"
    gps_baudrate: int = 9600
    lockbox_port: str = "/dev/ttyUSB1"
    pinpad_port: str = "/dev/ttyUSB2"
    motion_port: str = "/dev/ttyUSB3"
    bms_address: str = "none"  # BLE address of the battery peer, sim:/path, none
    nfc_path: str = "usb"
    config: Path | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class VehicleExpect(_Model):
    firmware: str = "vh-1.0.0"
    hardware: str = "KS-VC2"
    lockbox_firmware: str = "lb-2.4.1"


class VehicleTest(_Model):
    pass_uid: str = "04c0ffee123456"
    pin_code: str = "2468"
    speed_limit_kmh: int = Field(default=20, ge=0, le=100)

    _uid = field_validator("pass_uid")(_hex_uid)

    @field_validator("pin_code")
    @classmethod
    def _pin(cls, value: str) -> str:
        if not (value.isdigit() and 4 <= len(value) <= 8):
            raise ValueError("pin_code must be 4-8 digits")
        return value


class VehicleLimits(_Model):
    gps_fix_timeout_s: float = Field(default=60.0, gt=0)
    gps_sample_s: float = Field(default=10.0, gt=0)  # NMEA counted over this long
    max_hdop: float = 2.5
    max_checksum_error_rate: float = Field(default=0.02, ge=0, le=1)
    min_sentences_per_s: float = 1.0
    battery_pct: Range = (20.0, 100.0)
    vae_pct: Range = (20.0, 100.0)
    vae_mv: Range = (30000.0, 42600.0)
    lock_cycle_s: float = Field(default=3.0, gt=0)
    boot_timeout_s: float = Field(default=30.0, gt=0)
    person_timeout_s: float = Field(default=120.0, gt=0)

    _check = field_validator("battery_pct", "vae_pct", "vae_mv")(_range)


class VehicleRig(_Model):
    kind: Literal["vehicle"] = "vehicle"
    serial_number: str = "BK123456"
    agent: VehicleAgentPorts = VehicleAgentPorts()
    expect: VehicleExpect = VehicleExpect()
    test: VehicleTest = VehicleTest()
    limits: VehicleLimits = VehicleLimits()
    report: ReportSettings = ReportSettings()
    provisioning: Provisioning = Provisioning()

    @field_validator("serial_number")
    @classmethod
    def _serial(cls, value: str) -> str:
        if not (value.isascii() and value.isalnum() and 6 <= len(value) <= 10):
            raise ValueError(f"serial number {value!r} is not 6-10 alphanumerics")
        return value

    @property
    def device_id(self) -> str:
        return f"vh-{self.serial_number}"

    @property
    def serial(self) -> str:
        return self.serial_number

    @classmethod
    def simulated(cls) -> VehicleRig:
        return cls(
            serial_number="BK123456",
            limits=VehicleLimits(
                gps_fix_timeout_s=10.0, gps_sample_s=2.0, person_timeout_s=6.0,
                boot_timeout_s=20.0, lock_cycle_s=3.0,
            ),
        )


RigDescription = StationRig | VehicleRig


def parse_rig(data: dict[str, Any], path: Path | None = None) -> RigDescription:
    kind = data.get("kind")
    model: type[StationRig] | type[VehicleRig]
    if kind == "station":
        model = StationRig
    elif kind == "vehicle":
        model = VehicleRig
    else:
        raise RigConfigError(path, f'kind must be "station" or "vehicle", not {kind!r}')
    try:
        rig = model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise RigConfigError(path, problems) from None
    if path is not None:
        rig = _relative_to(rig, path.parent)
    return rig


def _relative_to(rig: RigDescription, base: Path) -> RigDescription:
    """Paths in a rig file are relative to the file, as a technician expects."""
    if isinstance(rig, StationRig) and rig.firmware.image is not None \
            and not rig.firmware.image.is_absolute():
        rig = rig.model_copy(update={"firmware": rig.firmware.model_copy(
            update={"image": base / rig.firmware.image})})
    if rig.agent.config is not None and not rig.agent.config.is_absolute():
        rig = rig.model_copy(update={"agent": rig.agent.model_copy(
            update={"config": base / rig.agent.config})})
    return rig


def load_rig(path: Path) -> RigDescription:
    try:
        text = path.read_text()
    except OSError as exc:
        raise RigConfigError(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RigConfigError(path, f"not valid TOML: {exc}") from None
    return parse_rig(data, path)
