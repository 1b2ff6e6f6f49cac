"""`make run` runs `python -m kickstand.simulators.demo`: the embedded system comes up, and
the journeys its banner prints work when pasted as printed into a fresh shell (no virtualenv
activated, no variable of ours, another working directory); Ctrl-C then stops it cleanly.

One demo process for the module (it takes ~20 s to come up): the rider's ride, then the
sign-up, then the stop.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from kickstand.cloud.broker import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("curl") is None, reason="the banner's lines use curl"),
]

#: A newcomer's shell: the system's PATH only (not the virtualenv's bin).
FRESH_PATH = "/usr/local/bin:/usr/bin:/bin"


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


def _block(banner: str, heading: str) -> str:
    """The indented lines under ``heading``, as a reader would select and paste them."""
    lines = banner[banner.index(heading) :].splitlines()[1:]
    block: list[str] = []
    for line in lines:
        if not line.startswith("  "):
            break
        block.append(line)
    return "\n".join(block)


def _paste(block: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-c", block],
        cwd="/",
        env={"PATH": FRESH_PATH, "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=90,
    )


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    banner: str
    var: Path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    workdir = tmp_path_factory.mktemp("demo")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MQTT_URL", "DATABASE_URL", "INFLUX_URL", "VAR_DIR", "SMTP_HOST")
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kickstand.simulators.demo",
            "--api-port",
            str(free_port()),
            "--broker-port",
            str(free_port()),
            "--control-port",
            str(free_port()),
        ],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = _wait_for(proc, '"password":"my-password-1"}\'', within_s=120)
        yield Demo(proc, banner, workdir / "var")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_banner_ride_works_pasted_into_a_fresh_shell(demo: Demo) -> None:
    assert "st-0001, st-0002, st-0003, st-0004" in demo.banner
    assert "(in-process)" in demo.banner
    block = _block(demo.banner, "Try it")
    assert "python -m kickstand" not in block.replace(f"{sys.executable} -m kickstand", "")
    shell = _paste(block, demo.var.parent)
    assert shell.returncode == 0, shell.stdout + shell.stderr
    out = shell.stdout.splitlines()
    assert "ok LY0001" in out and "ok" in out, shell.stdout  # take, then dock
    trips = json.loads(out[-1])["data"]
    assert trips and trips[0]["state"] == "finished", trips
    assert Decimal(str(trips[0]["cost"])) > 0
    assert trips[0]["cluster_end_id"] != trips[0]["cluster_start_id"]


def test_the_banner_control_help_lists_every_command(demo: Demo) -> None:
    line = next(ln for ln in demo.banner.splitlines() if ln.rstrip().endswith(" help"))
    shell = _paste(line.strip(), demo.var.parent)
    assert shell.returncode == 0, shell.stderr
    for command in ("dock", "take", "power", "alarm", "jam", "link", "firmware", "status"):
        assert re.search(rf"\b{command}\b", shell.stdout), (command, shell.stdout)


def test_the_banner_sign_up_works_pasted_into_a_fresh_shell(demo: Demo) -> None:
    assert f"each mail saved in {demo.var / 'mail'}/" in demo.banner
    shell = _paste(_block(demo.banner, "Sign up a rider"), demo.var.parent)
    assert shell.returncode == 0, shell.stderr
    out = shell.stdout
    assert '"email_confirmation_required":true' in out
    assert "Subject: Confirm your email address" in out, "the mail file was shown"
    assert '{"code":0,"data":{"email":"me@example.com"' in out, "the code was confirmed"
    assert '"refresh_token":' in out, "the new rider logged in"


def test_ctrl_c_stops_the_demo_cleanly(demo: Demo) -> None:
    demo.proc.send_signal(signal.SIGINT)
    assert demo.proc.wait(timeout=40) == 0
    assert (demo.var / "kickstand.sqlite3").exists()
