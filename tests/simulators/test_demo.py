"""`make run` runs `python -m kickstand.simulators.demo`: the embedded system must come up,
carry a rider's whole journey, and stop cleanly on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx

from kickstand.cloud.broker import free_port


def _wait_for(proc: subprocess.Popen[str], needle: str, within_s: float) -> str:
    seen: list[str] = []
    deadline = time.monotonic() + within_s
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            seen.append(line)
            if needle in line:
                return "".join(seen)
        elif proc.poll() is not None:
            break
        else:
            time.sleep(0.05)
    raise AssertionError(f"{needle!r} not printed within {within_s} s:\n{''.join(seen)}")


def _ctl(port: int, *words: str) -> str:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kickstand.simulators",
            "station",
            "ctl",
            "--port",
            str(port),
            *words,
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return out.stdout.strip()


def _eventually(fn, within_s: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within_s
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_make_run_demo_carries_a_journey_and_stops_cleanly(tmp_path: Path) -> None:
    api_port, control_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MQTT_URL", "DATABASE_URL", "INFLUX_URL", "VAR_DIR")
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kickstand.simulators.demo",
            "--api-port",
            str(api_port),
            "--broker-port",
            str(free_port()),
            "--control-port",
            str(control_port),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = _wait_for(proc, "Try it", within_s=90)
        assert "st-0001, st-0002, st-0003, st-0004" in banner
        assert "(in-process)" in banner
        api = f"http://127.0.0.1:{api_port}"
        with httpx.Client(base_url=api, timeout=20) as http:
            login = http.post(
                "/v1/auth/login", json={"email": "alice@example.com", "password": "alice-demo-1"}
            )
            token = login.json()["data"]["token"]
            auth = {"authorization": f"Bearer {token}"}
            attempts = iter(range(1000))

            def unlock() -> dict[str, object] | None:
                # A fresh key per attempt: until st-0001 is online, an unlock fails fast.
                key = f"demo-rent-{next(attempts):04d}"
                answer: dict[str, object] = http.post(
                    "/v1/rents", json={"spot_id": 1}, headers={**auth, "Idempotency-Key": key}
                ).json()
                return answer if answer["code"] == 0 else None

            rent = _eventually(unlock, within_s=30)
            assert rent and rent["data"]["status"] == "unlocked", rent  # type: ignore[index]
            assert _ctl(control_port, "st-0001", "take", "1") == "ok LY0001"
            trip = _eventually(lambda: http.get("/v1/trips", headers=auth).json()["data"])
            assert trip and trip[0]["state"] == "running", trip
            assert _ctl(control_port, "st-0002", "dock", "5", "LY0001") == "ok"

            def finished() -> dict[str, object] | None:
                detail = http.get(f"/v1/trips/{trip[0]['trip_id']}", headers=auth).json()["data"]
                return detail if detail["state"] == "finished" else None

            detail = _eventually(finished)
            assert detail, "the trip did not end when the bike docked at st-0002"
            assert detail["cluster_end_id"] != detail["cluster_start_id"]
            assert Decimal(str(detail["cost"])) > 0
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=40) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (tmp_path / "var" / "kickstand.sqlite3").exists()
