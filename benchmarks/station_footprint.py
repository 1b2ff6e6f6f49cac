"""Footprint of the station agent: a 20-spot station, idle, as a real process.

The agent runs as a subprocess (``python -m kickstand.edge.station --config …``) with
its production timings (idle spots polled once a second, the NFC reader polling via
nfcpy's udp driver, inputs read every second) against the station simulator (20
spot boards on a pty, a badge peer, input files) and the harness's Mosquitto. This
script plays the cloud (answers birth and heartbeats). After a warm-up it samples
the agent's resident memory and CPU time (psutil) over ``--seconds``.

    .venv/bin/python benchmarks/station_footprint.py [--seconds 20] [--spots 20] [--no-tls]

Run twice in the same run (issue 17): over plain MQTT, then over TLS with the device's own
certificate against the harness's Mosquitto with the deployment's TLS policy
(``MosquittoService(tls=...)``: client certificate, CRL, identity from the CN).

Targets: RSS <= 60 MB, idle CPU <= 2 % of one core, TLS included.
Last line: ``station agent rss_mb: X idle_cpu_pct: Y tls_rss_mb: X tls_idle_cpu_pct: Y``.
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

from kickstand.cloud import pki
from kickstand.simulators.station.cloudpeer import CloudPeer
from kickstand.simulators.station.sim import SimulatedStation
from kickstand.testing import DeviceTls, MosquittoService

DEVICE_ID = "st-bench01"


#: A deployed certificate's life, and its CA's (a certificate never outlives its CA). Not the
#: harness's 30 days: a certificate within its renew-before window (30 days) makes the agent
#: ask for a renewal at once (a new key, a CSR), which is not an idle station.
CERT_DAYS = 365


def device_identity(tls: DeviceTls, work: Path) -> dict[str, str]:
    """The station's key and certificate (CN = its id) signed by the broker's CA: the
    agent's TLS settings."""
    key = pki.device_key()
    cert = tls.ca.sign_csr(pki.device_csr(key, DEVICE_ID), DEVICE_ID, CERT_DAYS)
    pki.write_pem(work / "device.pem", cert)
    pki.write_pem(work / "device.key", key)
    return {
        "mqtt_ca_file": str(tls.ca_file),
        "mqtt_cert_file": str(work / "device.pem"),
        "mqtt_key_file": str(work / "device.key"),
    }


async def measure(
    seconds: float, spots: int, warmup: float, *, tls: bool = False
) -> tuple[float, float, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ca = pki.CertificateAuthority.create("Kickstand bench CA", valid_days=2 * CERT_DAYS)
        device_tls = DeviceTls.create(work / "pki", ca=ca) if tls else None
        with MosquittoService(tls=device_tls) as broker:
            return await _measure(broker, work, seconds, spots, warmup)


async def _measure(
    broker: MosquittoService, work: Path, seconds: float, spots: int, warmup: float
) -> tuple[float, float, float, int]:
    identity = device_identity(broker.tls, work) if broker.tls is not None else {}
    sim = SimulatedStation("st-bench01", spots, workdir=work, nfc=True)
    await sim.start()
    for spot in range(1, spots // 2 + 1):
        sim.dock(spot, f"BN{spot:04d}")
    async with CloudPeer(broker.host, broker.port, username=broker.cloud_username,
                         password=broker.cloud_password, heartbeat_s=30) as cloud:
        config = sim.write_config(
            work / "station.toml", broker.device_url, [cloud.public_key_hex],
            log_level="WARNING", **identity,
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
    parser.add_argument("--no-tls", action="store_true", help="plain MQTT only")
    args = parser.parse_args()
    runs = [("plain", False)] + ([] if args.no_tls else [("tls", True)])
    results: dict[str, tuple[float, float, float, int]] = {}
    for name, tls in runs:
        results[name] = asyncio.run(measure(args.seconds, args.spots, args.warmup, tls=tls))
        rss_mb, uss_mb, cpu_pct, docked = results[name]
        print(f"{name}: spots: {args.spots} (vehicles docked and reported: {docked}), "
              f"sampled over {args.seconds:.0f} s after {args.warmup:.0f} s warm-up")
        print(f"{name}: unique memory (uss, without shared libraries): {uss_mb:.1f} MB")
        print(f"{name}: targets: rss <= 60 MB ({'ok' if rss_mb <= 60 else 'OVER'}), "
              f"idle cpu <= 2 % ({'ok' if cpu_pct <= 2 else 'OVER'})")
    rss_mb, _, cpu_pct, _ = results["plain"]
    line = f"station agent rss_mb: {rss_mb:.1f} idle_cpu_pct: {cpu_pct:.2f}"
    if "tls" in results:
        tls_rss, _, tls_cpu, _ = results["tls"]
        line += f" tls_rss_mb: {tls_rss:.1f} tls_idle_cpu_pct: {tls_cpu:.2f}"
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
