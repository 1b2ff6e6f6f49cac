"""Station agent settings (file + ``KICKSTAND_*`` environment), on top of EdgeSettings."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from kickstand.edge.core.config import EdgeSettings
from kickstand.protocol.spotbus import ACTUATION_TIMEOUT_S, UNLOCK_POLL_S


class StationSettings(EdgeSettings):
    # Changed at run time by a Config command (SPEC §7.5).
    CONFIGURABLE: ClassVar[frozenset[str]] = frozenset({
        "unlock_window_s", "offline_window_s", "offline_allow_unknown",
        "temperature_high_c", "temperature_clear_c", "telemetry_interval_s",
        "poll_interval_s", "active_poll_interval_s",
    })

    spots: int = 8  # spot n is the board at bus address n
    spot_bus: str = "/dev/ttyS1"
    badge_reader: str = "none"  # usb:..., tty:..., udp:host:port, none
    inputs: str = "none"  # dir:<directory>, none
    firmware: str = "st-1.0.0"
    hardware: str = "ksm-1"
    response_timeout_s: float = 0.05
    bus_retries: int = 2
    # After UNLOCK's ack: read the lock sensor this often until OPEN, at most this long.
    unlock_poll_s: float = Field(default=UNLOCK_POLL_S, gt=0)
    actuation_timeout_s: float = Field(default=ACTUATION_TIMEOUT_S, gt=0)
    poll_interval_s: float = 1.0  # idle spots
    active_poll_interval_s: float = 0.2  # spots being unlocked / awaiting removal
    board_retry_min_s: float = 1.0
    board_retry_max_s: float = 60.0
    unlock_window_s: int | None = None  # None: the command's window_s
    offline_window_s: int = 30
    offline_allow_unknown: bool = False  # unknown badges offline: refused by default
    temperature_high_c: float = 60.0
    temperature_clear_c: float = 55.0
    telemetry_interval_s: float = 300.0
    inputs_interval_s: float = 1.0
    expected_board_firmware: str | None = None
    firmware_chunk_delay_s: float = 0.0
