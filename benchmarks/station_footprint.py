"""Footprint of the station agent: a 20-spot station, idle, as a real process.

The agent runs as a subprocess (``python -m kickstand.edge.station --config …``) with
its production timings (idle spots polled once a second, the NFC reader polling via
nfcpy's udp driver, inputs read every second) against the station simulator (20
spot boards on a pty, a badge peer, input files) and the harness's Mosquitto. This
script plays the cloud (answers birth and heartbeats). After a warm-up it samples
the agent's resident memory and CPU time (psutil) over ``--seconds``.

    .venv/bin/python benchmarks/station_footprint.py [--seconds 20] [--spots 20]

Targets: RSS <= 60 MB, idle CPU <= 2 % of one core.
Last line: ``station agent rss_mb: X idle_cpu_pct: Y``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

from kickstand.simulators.station.cloudpeer import CloudPeer
from kickstand.simulators.station.sim import SimulatedStation
from kickstand.testing import MosquittoService


async def measure(
    seconds: float, spots: int, warmup: float
) -> tuple[float, float, float, int]:
    with tempfile.TemporaryDirectory() as tmp, MosquittoService() as broker:
        work = Path(tmp)
        sim = SimulatedStation("st-bench01", spots, workdir=work, nfc=True)
        await sim.start()
        for spot in range(1, spots // 2 + 1):
            sim.dock(spot, f"BN{spot:04d}")
        async with CloudPeer(broker.host, broker.port, username=broker.cloud_username,
                             password=broker.cloud_password, heartbeat_s=30) as cloud:
            config = sim.write_config(
                work / "station.toml", broker.device_url, [cloud.public_key_hex],
                log_level="WARNING",
            )
            agent_log = open(work / "agent.log", "w")  # noqa: ASYNC230 - closed below
            proc = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, "-m", "kickstand.edge.station", "--config", str(config)],
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdout=agent_log,
                stderr=subprocess.STDOUT,
            )
            try:
                await cloud.wait_birth("st-bench01", within=30)
                await asyncio.sleep(warmup)
                p = psutil.Process(proc.pid)
                t0 = p.cpu_times()
                await asyncio.sleep(seconds)
                t1 = p.cpu_times()
                rss_mb = p.memory_info().rss / 1e6
                uss_mb = p.memory_full_info().uss / 1e6
                cpu = (t1.user - t0.user) + (t1.system - t0.system)
                cpu_pct = 100 * cpu / seconds
                docked = len([b for b in cloud.bodies("st-bench01")
                              if type(b).__name__ == "VehicleDocked"])
            finally:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                agent_log.close()
        await sim.stop()
        return rss_mb, uss_mb, cpu_pct, docked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--spots", type=int, default=20)
    parser.add_argument("--warmup", type=float, default=3.0)
    args = parser.parse_args()
    rss_mb, uss_mb, cpu_pct, docked = asyncio.run(
        measure(args.seconds, args.spots, args.warmup)
    )
    print(f"spots: {args.spots} (vehicles docked and reported: {docked}), "
          f"sampled over {args.seconds:.0f} s after {args.warmup:.0f} s warm-up")
    print(f"unique memory (uss, without shared libraries): {uss_mb:.1f} MB")
    print(f"targets: rss <= 60 MB ({'ok' if rss_mb <= 60 else 'OVER'}), "
          f"idle cpu <= 2 % ({'ok' if cpu_pct <= 2 else 'OVER'})")
    print(f"station agent rss_mb: {rss_mb:.1f} idle_cpu_pct: {cpu_pct:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
