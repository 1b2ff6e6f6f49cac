"""`python -m kickstand.cloud pki firmware-key`: the firmware signing key, written once,
and the line devices are provisioned with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kickstand.cloud.__main__ import main
from kickstand.protocol.firmware import firmware_key_id
from kickstand.protocol.signing import load_private_key, public_key_bytes


def test_firmware_key_is_created_once_and_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys" / "firmware.key"
    assert main(["pki", "firmware-key", "--file", str(path), "--format", "toml"]) == 0
    public = public_key_bytes(load_private_key(path))
    assert path.stat().st_mode & 0o777 == 0o600
    line = capsys.readouterr().out.strip()
    assert line.startswith(f'firmware_public_keys = ["{public.hex()}"]')
    # Never replaced by accident: every provisioned device would refuse the next manifests.
    assert main(["pki", "firmware-key", "--file", str(path)]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["pki", "firmware-key", "--file", str(path), "--show"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["public_key"] == public.hex()
    assert doc["key_id"] == firmware_key_id(public).hex()
