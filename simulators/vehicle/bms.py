"""The BLE battery-management peer: a GATT-like server on a Unix socket, with a discharge model.

Speaks the exchange :class:`kickstand.edge.transports.ble.SocketBatteryPeer` reads:
``READ hhhh`` → ``VAL hhhh <hex>``, ``SUB hhhh``, and ``NTF hhhh <hex>`` on changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass

from kickstand.edge.transports.ble import (
    H_INTERNAL_LEVEL,
    H_INTERNAL_MV,
    H_VAE_LEVEL,
    H_VAE_MV,
    encode_level,
    encode_mv,
)
from kickstand.protocol.v1.enums import BatteryKind

log = logging.getLogger("kickstand.simulators.vehicle.bms")


@dataclass(slots=True)
class Battery:
    """Level in % (float, so slow drains add up) and a voltage that follows it."""

    level: float
    empty_mv: int
    full_mv: int
    idle_pct_per_h: float
    ride_pct_per_km: float

    @property
    def level_pct(self) -> int:
        return max(0, min(100, round(self.level)))

    @property
    def voltage_mv(self) -> int:
        return int(self.empty_mv + (self.full_mv - self.empty_mv) * self.level / 100)

    def drain(self, pct: float) -> None:
        self.level = max(0.0, min(100.0, self.level - pct))


def default_batteries() -> dict[BatteryKind, Battery]:
    return {
        # controller / lock box battery: a 1S Li-ion cell, charged by the dynamo
        BatteryKind.INTERNAL: Battery(88.0, 3300, 4200, idle_pct_per_h=0.4, ride_pct_per_km=0.0),
        # e-assist: a 36 V pack, ~60 km of range
        BatteryKind.VAE: Battery(76.0, 30000, 42000, idle_pct_per_h=0.05, ride_pct_per_km=1.6),
    }


class BmsPeer:
    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.batteries = default_batteries()
        self.available = True
        self.reads = 0
        self._server: asyncio.Server | None = None
        self._clients: dict[asyncio.StreamWriter, set[int]] = {}
        self._sent: dict[int, bytes] = {}

    @property
    def address(self) -> str:
        return f"sim:{self.socket_path}"

    def value(self, handle: int) -> bytes:
        b = self.batteries
        if handle == H_INTERNAL_LEVEL:
            return encode_level(b[BatteryKind.INTERNAL].level_pct)
        if handle == H_INTERNAL_MV:
            return encode_mv(b[BatteryKind.INTERNAL].voltage_mv)
        if handle == H_VAE_LEVEL:
            return encode_level(b[BatteryKind.VAE].level_pct)
        if handle == H_VAE_MV:
            return encode_mv(b[BatteryKind.VAE].voltage_mv)
        raise KeyError(handle)

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        self._server = await asyncio.start_unix_server(self._serve, path=self.socket_path)

    async def stop(self) -> None:
        self.drop_links()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    def drop_links(self) -> None:
        """The radio link is lost: every connected central sees a disconnect."""
        for writer in list(self._clients):
            writer.close()
        self._clients.clear()

    def set_available(self, available: bool) -> None:
        self.available = available
        if not available:
            self.drop_links()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.available:
            writer.close()
            return
        self._clients[writer] = set()
        try:
            while True:
                raw = await reader.readline()
                if not raw:
                    break
                parts = raw.decode("ascii", "replace").split()
                if len(parts) != 2 or parts[0] not in ("READ", "SUB"):
                    continue
                try:
                    handle = int(parts[1], 16)
                    value = self.value(handle)
                except (ValueError, KeyError):
                    writer.write(f"ERR {parts[1][:4]:>04} 1\n".encode())
                    continue
                if parts[0] == "READ":
                    self.reads += 1
                    writer.write(f"VAL {handle:04x} {value.hex()}\n".encode())
                elif writer in self._clients:
                    self._clients[writer].add(handle)
                await writer.drain()
        except (ConnectionError, OSError, ValueError):
            pass
        finally:
            self._clients.pop(writer, None)
            writer.close()

    def notify_changes(self) -> None:
        """Send NTF for every subscribed value that changed since last time."""
        for handle in (H_INTERNAL_LEVEL, H_INTERNAL_MV, H_VAE_LEVEL, H_VAE_MV):
            value = self.value(handle)
            if self._sent.get(handle) == value:
                continue
            self._sent[handle] = value
            for writer, subs in list(self._clients.items()):
                if handle in subs:
                    try:
                        writer.write(f"NTF {handle:04x} {value.hex()}\n".encode())
                    except (ConnectionError, OSError, RuntimeError):
                        self._clients.pop(writer, None)

    def tick(self, dt_s: float, ridden_m: float) -> None:
        for battery in self.batteries.values():
            battery.drain(battery.idle_pct_per_h * dt_s / 3600 + battery.ride_pct_per_km *
                          ridden_m / 1000)
        self.notify_changes()
