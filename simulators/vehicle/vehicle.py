"""One simulated vehicle: every peripheral of the controller, emulated at the wire.

    async with SimulatedVehicle("BK123456", base_dir=tmp) as sim:
        sim.ports            # the paths the unmodified agent opens
        sim.ride(LYON_RIDE, speed_kmh=18)
        sim.rider_lock()     # chain in, lock closed by hand
        sim.fall_over(); sim.drain_battery(BatteryKind.VAE, 15); sim.send_bad_nmea()

GPS: RMC + GGA every ``gps_interval_s`` on a pty. Lock box + chain: spot-bus
frames at address 1 on a pty. BMS: the GATT-like Unix socket. PIN pad and
motion sensor: ASCII lines on ptys. NFC (``nfc=True``): a pass presented with
``present_pass`` to the agent's nfcpy reader over the ``udp`` driver
(:class:`kickstand.simulators.nfc.BadgeTagPeer`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from kickstand.edge.transports.gps import distance_m, gga_sentence, nmea_sentence, rmc_sentence
from kickstand.edge.transports.motion import Sensed, motion_line
from kickstand.edge.transports.pinpad import pin_line
from kickstand.protocol.spotbus import BusLock
from kickstand.protocol.v1.enums import BatteryKind, ChainType
from kickstand.simulators.nfc import BadgeTagPeer
from kickstand.simulators.vehicle.bms import BmsPeer
from kickstand.simulators.vehicle.errors import ScenarioError
from kickstand.simulators.vehicle.lockbox import LockBoxFirmware
from kickstand.simulators.vehicle.route import Route
from kickstand.simulators.vehicle.wire import PtyLine

log = logging.getLogger("kickstand.simulators.vehicle")

DEFAULT_POSITION = (4.835659, 45.764043)  # (lon, lat): Lyon, place Bellecour


#: A Unix socket's path fits in 107 bytes (sun_path); a test's deep working folder may not.
_SUN_PATH_MAX = 100


def _socket_path(base_dir: Path, name: str) -> str:
    """``base_dir/name``, or the same name in a short temporary folder when that is too long
    for a Unix socket (the agent is told the path, wherever it is)."""
    path = str(base_dir / name)
    if len(path.encode()) <= _SUN_PATH_MAX:
        return path
    return str(Path(tempfile.mkdtemp(prefix="ks-")) / name)


@dataclass(frozen=True, slots=True)
class VehiclePorts:
    """What to put in the agent's configuration."""

    gps: str  # tty path
    lockbox: str  # tty path
    pinpad: str  # tty path
    motion: str  # tty path
    bms: str  # BLE peer address ("sim:/path/to/socket")
    nfc: str = "none"  # nfcpy path ("udp:127.0.0.1:<port>") when the NFC peer runs


class SimulatedVehicle:
    def __init__(
        self,
        serial_number: str,
        *,
        base_dir: Path,
        position: tuple[float, float] = DEFAULT_POSITION,
        gps_interval_s: float = 1.0,
        seed: int | None = None,
        nfc: bool = False,
    ) -> None:
        if not (serial_number.isascii() and serial_number.isalnum() and
                6 <= len(serial_number) <= 10):
            raise ScenarioError(f"serial number {serial_number!r} is not 6-10 alphanumerics")
        self.serial_number = serial_number
        self.base_dir = base_dir
        self.gps_interval_s = gps_interval_s
        self._rng = random.Random(seed)
        self.lon, self.lat = position
        self.heading = 0.0
        self.speed_kmh = 0.0
        self.gps_quality = 1
        self.gps_hdop = 0.9
        self.gps_satellites = 9
        self.gps_enabled = True
        self.odometer_m = 0.0
        self._route: Route | None = None
        self._route_pos = 0.0
        self._route_done = asyncio.Event()
        self._inject: list[bytes] = []
        self._teleport: tuple[float, float] | None = None
        self.gps_line = PtyLine(f"{serial_number}-gps")
        self.lockbox_line = PtyLine(f"{serial_number}-lockbox")
        self.pinpad_line = PtyLine(f"{serial_number}-pinpad")
        self.motion_line = PtyLine(f"{serial_number}-motion")
        self.lockbox = LockBoxFirmware(self.lockbox_line, serial_number)
        base_dir.mkdir(parents=True, exist_ok=True)
        self.bms = BmsPeer(_socket_path(base_dir, f"bms-{serial_number}.sock"))
        self.nfc = BadgeTagPeer() if nfc else None
        self._task: asyncio.Task[None] | None = None

    @property
    def device_id(self) -> str:
        return f"vh-{self.serial_number}"

    @property
    def ports(self) -> VehiclePorts:
        return VehiclePorts(
            gps=self.gps_line.slave_path,
            lockbox=self.lockbox_line.slave_path,
            pinpad=self.pinpad_line.slave_path,
            motion=self.motion_line.slave_path,
            bms=self.bms.address,
            nfc=self.nfc.path if self.nfc is not None else "none",
        )

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self.lockbox.start()
        await self.bms.start()
        if self.nfc is not None:
            await self.nfc.start()
        self._task = asyncio.create_task(self._tick_loop(), name=f"sim {self.serial_number}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.lockbox.stop()
        await self.bms.stop()
        if self.nfc is not None:
            await self.nfc.stop()
        for line in (self.gps_line, self.lockbox_line, self.pinpad_line, self.motion_line):
            line.close()

    async def __aenter__(self) -> SimulatedVehicle:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _tick_loop(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.gps_interval_s)
            now = time.monotonic()
            self.tick(now - last)
            last = now

    def tick(self, dt_s: float) -> None:
        """Advance the world by ``dt_s``: move along the route, drain batteries, emit NMEA."""
        ridden = 0.0
        if self._route is not None:
            step = self.speed_kmh / 3.6 * dt_s
            self._route_pos += step
            ridden = step
            self.lat, self.lon, self.heading = self._route.at(self._route_pos)
            if self._route_pos >= self._route.length_m:
                self._finish_route()
        self.odometer_m += ridden
        self.bms.tick(dt_s, ridden)
        self._emit_gps()

    def _emit_gps(self) -> None:
        out = b"".join(self._inject)
        self._inject.clear()
        if self.gps_enabled:
            utc = time.time() % 86400
            lat, lon = self.lat, self.lon
            if self._teleport is not None:
                lat, lon = self._teleport
                self._teleport = None
            # a few metres of receiver noise
            lat += self._rng.gauss(0, 1.5e-5)
            lon += self._rng.gauss(0, 2e-5)
            out += rmc_sentence(utc, lat, lon, speed_kmh=self.speed_kmh, course_deg=self.heading,
                                valid=self.gps_quality > 0).encode()
            out += gga_sentence(utc, lat, lon, quality=self.gps_quality,
                                satellites=self.gps_satellites, hdop=self.gps_hdop).encode()
            out += nmea_sentence("GPGSV,1,1,04,10,63,137,42,12,41,064,38,25,20,317,33,32,16,"
                                 "041,30").encode()
        if out:
            self.gps_line.write(out)

    # -- riding ----------------------------------------------------------------------

    def ride(self, route: Route | list[tuple[float, float]], speed_kmh: float = 18.0) -> None:
        """Ride ``route`` (lon/lat waypoints) at ``speed_kmh``, from where the vehicle stands."""
        if not isinstance(route, Route):
            route = Route.of(route)
        if not 0 < speed_kmh <= 60:
            raise ScenarioError(f"speed {speed_kmh} km/h is not a ride")
        start_lon, start_lat = route.waypoints[0]
        if distance_m(self.lat, self.lon, start_lat, start_lon) > 5:
            # the vehicle rides from where it stands to the route, it does not jump there
            route = Route(((self.lon, self.lat), *route.waypoints))
        self._route, self._route_pos, self.speed_kmh = route, 0.0, speed_kmh
        self.lat, self.lon, self.heading = route.at(0)
        self._route_done.clear()
        self.motion_line.write(motion_line(Sensed.MOVING))

    def _finish_route(self) -> None:
        self._route = None
        self.speed_kmh = 0.0
        self._route_done.set()
        self.motion_line.write(motion_line(Sensed.STILL))

    def stop_riding(self) -> None:
        if self._route is not None:
            self._finish_route()

    @property
    def riding(self) -> bool:
        return self._route is not None

    async def wait_route_done(self, timeout_s: float | None = None) -> None:
        await asyncio.wait_for(self._route_done.wait(), timeout_s)

    # -- lock box and chain ----------------------------------------------------------

    @property
    def lock(self) -> BusLock:
        return self.lockbox.state.lock

    def take_chain_out(self) -> None:
        """The rider pulls the chain out of the open lock box."""
        if self.lockbox.state.lock is not BusLock.OPEN:
            raise ScenarioError("the chain cannot come out of a closed lock")
        self.lockbox.state.chain_inserted = False

    def insert_chain(self, chain_type: ChainType = ChainType.STANDARD) -> None:
        self.lockbox.state.chain_inserted = True
        self.lockbox.state.chain_type = chain_type

    def change_chain(self, chain_type: ChainType) -> None:
        self.lockbox.state.chain_type = chain_type

    def rider_lock(self, chain_type: ChainType = ChainType.STANDARD) -> None:
        """End of a ride: the rider pushes the chain in, which closes the lock."""
        self.stop_riding()
        self.insert_chain(chain_type)
        self.lockbox.state.lock = BusLock.LOCKED

    def jam_lock(self, jammed: bool = True) -> None:
        self.lockbox.state.jammed = jammed

    def mute_lockbox(self, mute: bool = True) -> None:
        self.lockbox.state.mute = mute

    # -- motion, PIN pad -------------------------------------------------------------

    def fall_over(self) -> None:
        self.motion_line.write(motion_line(Sensed.FALLEN))

    def lift(self) -> None:
        self.motion_line.write(motion_line(Sensed.LIFTED))

    def dismantle(self) -> None:
        self.motion_line.write(motion_line(Sensed.DISMANTLING))

    def shake(self) -> None:
        """Somebody moves the vehicle (while it is locked: an illegal move)."""
        self.motion_line.write(motion_line(Sensed.MOVING))
        self.motion_line.write(motion_line(Sensed.STILL))

    def present_pass(self, uid: bytes, duration_s: float = 2.5) -> None:
        """Hold an NFC pass (4, 7 or 10-byte UID) on the vehicle's reader."""
        if self.nfc is None:
            raise ScenarioError(f"{self.device_id} was built without NFC (nfc=True)")
        try:
            self.nfc.present(uid, duration_s)
        except ValueError as exc:
            raise ScenarioError(str(exc)) from None

    def enter_pin(self, code: str) -> None:
        self.pinpad_line.write(pin_line(code))

    def send_motion_garbage(self) -> None:
        self.motion_line.write(b"MOT SIDEWAYS\n\x00\xff\xfe garbage\n")

    # -- batteries -------------------------------------------------------------------

    def set_battery(self, kind: BatteryKind, pct: float) -> None:
        if not 0 <= pct <= 100:
            raise ScenarioError(f"battery level {pct} is not a percentage")
        self.bms.batteries[kind].level = pct
        self.bms.notify_changes()

    def drain_battery(self, kind: BatteryKind = BatteryKind.VAE, to_pct: float = 15.0) -> None:
        self.set_battery(kind, to_pct)

    def ble_available(self, available: bool) -> None:
        """Out of BLE range (False: links drop, connects refused) or back (True)."""
        self.bms.set_available(available)

    async def ble_drop(self, for_s: float) -> None:
        self.ble_available(False)
        await asyncio.sleep(for_s)
        self.ble_available(True)

    # -- GPS faults ------------------------------------------------------------------

    def send_bad_nmea(self, count: int = 5) -> None:
        """Sentences with wrong checksums, binary noise and an overlong line."""
        for i in range(count):
            good = gga_sentence(time.time() % 86400, self.lat + 0.5, self.lon + 0.5)
            wrong = f"{(int(good[-4:-2], 16) ^ 0x5A):02X}"
            self._inject.append((good[:-4] + wrong + "\r\n").encode())
            self._inject.append(bytes(self._rng.randrange(256) for _ in range(20 + i)) + b"\n")
        self._inject.append(b"$GPGGA," + b"9" * 200 + b"\r\n")
        self._inject.append(b"$GPRMC,not,a,sentence*ZZ\r\n")

    def teleport(self, lat: float, lon: float) -> None:
        """One well-formed, good-quality fix far away (a multipath glitch or a spoofer)."""
        self._teleport = (lat, lon)

    def set_gps_quality(
        self, *, quality: int | None = None, hdop: float | None = None,
        satellites: int | None = None,
    ) -> None:
        if quality is not None:
            self.gps_quality = quality
        if hdop is not None:
            self.gps_hdop = hdop
        if satellites is not None:
            self.gps_satellites = satellites

    def move_to(self, lon: float, lat: float) -> None:
        """Place the vehicle (parked) somewhere, without a jump filter excuse."""
        self.lon, self.lat = lon, lat


async def wait_until(condition: Callable[[], bool], within_s: float | None = 10.0) -> None:
    """Poll ``condition`` (every 50 ms) until it holds; TimeoutError after ``within_s``."""
    async with asyncio.timeout(within_s):
        for _ in itertools.count():
            if condition():
                return
            await asyncio.sleep(0.05)
