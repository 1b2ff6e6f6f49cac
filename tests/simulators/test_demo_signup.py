"""`make run`'s banner shows where mails land and how a rider signs up: those lines, pasted
into a fresh shell, sign up, read the code from the mail file, confirm and log in."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kickstand.cloud.broker import free_port
from tests.simulators.test_demo import _wait_for

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("curl") is None, reason="the banner's lines use curl")
def test_the_banner_sign_up_works_pasted_into_a_fresh_shell(tmp_path: Path) -> None:
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
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = _wait_for(proc, '"password":"my-password-1"}\'', within_s=90)
        assert f"each mail saved in {tmp_path / 'var' / 'mail'}/" in banner
        lines = banner[banner.index("Sign up a rider") :].splitlines()[1:]
        # A fresh shell: no variable of ours, another working directory.
        shell = subprocess.run(
            ["bash", "-e", "-c", "\n".join(lines)],
            cwd="/",
            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shell.returncode == 0, shell.stderr
        out = shell.stdout
        assert '"email_confirmation_required":true' in out
        assert "Subject: Confirm your email address" in out, "the mail file was shown"
        assert '{"code":0,"data":{"email":"me@example.com"' in out, "the code was confirmed"
        assert '"refresh_token":' in out, "the new rider logged in"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
