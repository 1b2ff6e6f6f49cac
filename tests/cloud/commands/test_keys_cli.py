"""`python -m kickstand.cloud.commands`: the provisioning document a device is made with
(SPEC §7.6), in the forms an agent's settings take; a device set up from it obeys the
cloud's signed commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kickstand.edge.core.config import EdgeSettings
from kickstand.protocol import signing
from kickstand.protocol.v1 import messages as m

SEED = bytes(range(32))  # TEST ONLY


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KICKSTAND_")}
    env["COMMAND_SIGNING_KEY_FILE"] = str(cwd / "signing.key")
    return subprocess.run(
        [sys.executable, "-m", "kickstand.cloud.commands", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_names_the_formats_and_the_spec(tmp_path: Path) -> None:
    done = run("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "--format {json,toml,env}" in done.stdout
    assert "SPEC.md §7.6" in done.stdout
    assert not (tmp_path / "var").exists()  # --help touches no key


def test_the_document_provisions_an_agent_that_obeys_the_cloud(tmp_path: Path) -> None:
    (tmp_path / "signing.key").write_text(SEED.hex() + "\n")
    signer = signing.CommandSigner(Ed25519PrivateKey.from_private_bytes(SEED))

    doc = json.loads(run(cwd=tmp_path).stdout)
    assert doc == {
        "alg": "EdDSA",
        "crv": "Ed25519",
        "kid": signer.kid.hex(),
        "public_key": signer.public_key.hex(),
    }
    toml = run("--format", "toml", cwd=tmp_path).stdout
    env = run("--format", "env", cwd=tmp_path).stdout.strip()
    assert env == f"KICKSTAND_COMMAND_KEYS='[\"{doc['public_key']}\"]'"
    written = tmp_path / "provision" / "keys.toml"
    assert run("--format", "toml", "--out", str(written), cwd=tmp_path).stdout == ""
    assert written.read_text() == toml

    # The TOML line is the agent's own settings file: its verifier takes the cloud's command.
    settings_file = tmp_path / "station.toml"
    settings_file.write_text('device_id = "st-0042"\n' + toml)
    settings = EdgeSettings.load(settings_file, state_dir=tmp_path / "state")
    assert tomllib.loads(toml)["command_keys"] == [doc["public_key"]]
    now = 1_763_740_800_000
    envelope = m.CommandEnvelope(bytes(16), "st-0042", now, now + 30_000, m.Unlock(1))
    verifier = signing.CommandVerifier(
        "st-0042", settings.trusted_keys(), signing.MemoryReplayGuard(), clock=lambda: now
    )
    assert verifier.verify(signer.sign(envelope)) == envelope


def test_outside_development_a_missing_key_is_an_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kickstand.cloud.commands"],
        cwd=tmp_path,
        env={
            **{k: v for k, v in os.environ.items() if k != "COMMAND_SIGNING_KEY_FILE"},
            "ENVIRONMENT": "production",
            "JWT_SECRET": "x" * 64,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "COMMAND_SIGNING_KEY_FILE" in done.stderr
