"""Vehicle agent settings: the edge core's settings plus the vehicle's peripherals and cadence.

A file (TOML / YAML) and ``KICKSTAND_*`` environment variables, as every agent::

    device_id = "vh-BK123456"
    serial_number = "BK123456"
    mqtt_url = "mqtt://127.0.0.1:1883"
    state_dir = "/var/lib/kickstand"
    gps_port = "/dev/ttyS1"
    lockbox_port = "/dev/ttyS2"
    pinpad_port = "/dev/ttyS3"        # or "none"
    motion_port = "/dev/ttyS4"        # or "none"
    bms_address = "C4:7F:51:0A:22:13" # or "sim:/run/bms.sock", or "none"
    nfc_path = "tty:S5:pn532"         # or "udp:localhost:54321", or "none"
    command_keys = ["<hex Ed25519 public key>"]
"""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import field_validator, model_validator

from kickstand.edge.core.config import EdgeSettings


class VehicleSettings(EdgeSettings):
    # Changed at run time by a Config command (SPEC §7.5).
    CONFIGURABLE: ClassVar[frozenset[str]] = frozenset({
        "riding_interval_s", "parked_interval_s", "battery_low_pct", "pin_code", "max_hdop",
        "min_satellites", "max_jump_speed_kmh", "unlock_window_s",
    })

    serial_number: str
    firmware: str = "vh-1.0.0"
    hardware: str = "KS-VC2"
    # peripherals
    gps_port: str = "none"
    gps_baudrate: int = 9600
    lockbox_port: str = "none"
    lockbox_timeout_s: float = 0.05  # spot-bus RESPONSE_TIMEOUT_S
    pinpad_port: str = "none"
    motion_port: str = "none"
    bms_address: str = "none"
    nfc_path: str = "none"
    # adaptive reporting
    riding_interval_s: float = 5.0  # a position every 5 s while unlocked / riding
    parked_interval_s: float = 900.0  # and one every 15 min while parked
    lock_poll_s: float = 0.25  # lock box and chain sensor
    bms_poll_s: float = 60.0
    fix_max_age_s: float = 10.0  # an older fix is not reported as the position
    # rules
    battery_low_pct: int = 20  # "under 20 percent" (seeds: vehicule.battery.low / _vae.low)
    battery_rearm_pct: int = 2  # BatteryLow again only after climbing this far above
    max_hdop: float = 5.0
    min_satellites: int = 4
    max_jump_speed_kmh: float = 80.0
    unlock_window_s: int | None = None  # None: the Unlock command's window_s
    illegal_move_every_s: float = 60.0  # at most one ILLEGAL_MOVING event per period
    theft_tracking_s: float = 600.0  # locked and lifted / moved: positions at riding cadence
    pin_code: str | None = None
    # A parked vehicle sends little: heartbeats at least 15 min apart (the BootReply's
    # heartbeat_s if longer) and an MQTT keepalive of 10 min, so an idle link costs
    # almost nothing; the broker's Will (Death) still reports a dead link.
    keepalive_s: int = 600
    min_heartbeat_s: int = 900

    @field_validator("serial_number")
    @classmethod
    def _serial(cls, value: str) -> str:
        if not (value.isascii() and value.isalnum() and 6 <= len(value) <= 10):
            raise ValueError(f"serial number {value!r} is not 6-10 alphanumerics")
        return value

    @field_validator("riding_interval_s", "parked_interval_s", "lock_poll_s", "bms_poll_s")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be positive")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.battery_low_pct not in range(1, 100):
            raise ValueError("battery_low_pct must be 1..99")
        return self
