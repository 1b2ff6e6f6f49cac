"""The vehicle simulator on its own: routes, the wire it speaks, coverage proxy, the CLI."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import pytest

from kickstand.edge.transports.gps import GpsReceiver
from kickstand.edge.transports.motion import MotionSensor, Sensed
from kickstand.protocol.v1.enums import BatteryKind
from kickstand.simulators.vehicle import (
    CoverageProxy,
    Route,
    ScenarioError,
    SimulatedVehicle,
    wait_until,
)
from kickstand.simulators.vehicle.cli import main, parse_route
from kickstand.testing import MosquittoService


def test_route_geometry() -> None:
    route = Route.of([(4.0, 45.0), (4.0, 45.01), (4.01, 45.01)])
    assert route.length_m == pytest.approx(1112 + 786, rel=0.01)
    lat, lon, heading = route.at(556)
    assert (lat, lon) == (pytest.approx(45.005, abs=1e-5), 4.0) and heading == pytest.approx(0)
    assert route.at(1e9)[:2] == (pytest.approx(45.01), pytest.approx(4.01))
    with pytest.raises(ValueError):
        Route.of([(200.0, 45.0)])


def _read_pty(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return b""
    finally:
        os.close(fd)


async def test_gps_pty_follows_the_route(tmp_path: Path) -> None:
    async with SimulatedVehicle("BK000777", base_dir=tmp_path, gps_interval_s=3600) as sim:
        fd = os.open(sim.ports.gps, os.O_RDONLY | os.O_NONBLOCK)
        rx = GpsReceiver()
        try:
            sim.ride([(4.835659, 45.764043), (4.845659, 45.764043)], speed_kmh=36)
            for _ in range(5):
                sim.tick(1.0)  # 10 m per tick
                await asyncio.sleep(0.01)
                rx.feed(os.read(fd, 65536))
            # the first fix waits for a second one to agree (cold start)
            assert rx.stats.fixes_accepted == 4 and rx.stats.unsupported == 5  # GSV too
            assert rx.latest is not None and rx.latest.speed_kmh == pytest.approx(36, abs=0.1)
            assert rx.latest.lon > 4.8361
            sim.send_bad_nmea(3)
            sim.tick(1.0)
            await asyncio.sleep(0.01)
            rx.feed(os.read(fd, 65536))
            assert rx.stats.checksum_errors == 3 and rx.stats.fixes_accepted == 5
        finally:
            os.close(fd)


async def test_inputs_and_scenario_errors(tmp_path: Path) -> None:
    async with SimulatedVehicle("BK000778", base_dir=tmp_path, gps_interval_s=3600) as sim:
        fd = os.open(sim.ports.motion, os.O_RDONLY | os.O_NONBLOCK)
        try:
            sim.fall_over()
            sim.shake()
            await asyncio.sleep(0.01)
            seen: list[Sensed] = []
            MotionSensor(on_motion=seen.append).feed(os.read(fd, 4096))
            assert seen == [Sensed.FALLEN, Sensed.MOVING, Sensed.STILL]
        finally:
            os.close(fd)
        with pytest.raises(ScenarioError):
            sim.take_chain_out()  # the lock is closed
        with pytest.raises(ScenarioError):
            sim.set_battery(BatteryKind.VAE, 120)
        with pytest.raises(ScenarioError):
            sim.present_pass(b"\x01\x02\x03\x04")  # built without NFC
    with pytest.raises(ScenarioError):
        SimulatedVehicle("BK 1", base_dir=tmp_path)


async def test_coverage_proxy_cuts_and_restores() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(100):
            writer.write(data)
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with CoverageProxy("127.0.0.1", port) as proxy:
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        w.write(b"ping")
        assert await r.read(4) == b"ping"
        proxy.cut()
        assert await r.read(4) == b""  # the live connection dropped
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", proxy.port)
        await proxy.restore()
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        w.write(b"pong")
        assert await r.read(4) == b"pong"
        w.close()
    server.close()


async def test_wait_until_times_out() -> None:
    with pytest.raises(TimeoutError):
        await wait_until(lambda: False, 0.1)


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--count", "0", "idle"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit):
        main(["--mqtt-url", "http://x", "idle"])
    with pytest.raises(argparse.ArgumentTypeError):
        parse_route("4.8,45.7;nonsense")


def test_cli_coverage_scenario(
    mosquitto: MosquittoService, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main([
        "--mqtt-url", mosquitto.device_url, "--cloud-url", mosquitto.url,
        "--count", "2", "--riding-interval-s", "0.5", "--reconnect-max-s", "0.3",
        "coverage", "--distance-m", "50", "--speed", "60", "--outage-s", "1",
    ])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.count("coverage lost") == 2 and out.count("coverage back") == 2
    assert out.count("state=LOCKED lock=LOCKED queue=0") == 2
    assert out.count("'Locked': 1") == 2
