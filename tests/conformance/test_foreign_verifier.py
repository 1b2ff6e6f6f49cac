"""The foreign station's command verifier (tests/conformance/foreign_commands.py, written
from the documents alone) against the normative vectors: every valid command verifies at
its ``verify_at_ms``, every invalid one is refused with the RejectReason the vector names
(SPEC §7.2, §11), and a second verification of a valid one is REPLAYED. Imports nothing of
``kickstand``."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.foreign_cbor import decode
from tests.conformance.foreign_commands import Refused, Verified, Verifier

VECTORS = json.loads((Path(__file__).parents[2] / "protocol" / "vectors" / "v1.json").read_text())
KEY = bytes.fromhex(VECTORS["test_keys"]["public_hex"])
DEVICE = VECTORS["test_keys"]["device_id"]
COMMANDS = [v for v in VECTORS["vectors"] if v.get("channel") == "cmd"]


@pytest.mark.parametrize("vector", COMMANDS, ids=[v["name"] for v in COMMANDS])
def test_a_command_vector_is_verified_or_refused_as_the_vector_says(
    vector: dict[str, Any],
) -> None:
    verifier = Verifier(DEVICE, [KEY])
    outcome = verifier.verify(bytes.fromhex(vector["hex"]), vector["verify_at_ms"])
    if vector["valid"]:
        assert isinstance(outcome, Verified), outcome
        assert outcome.command_id.hex() == vector["decoded"]["command_id"]
        again = verifier.verify(bytes.fromhex(vector["hex"]), vector["verify_at_ms"])
        assert isinstance(again, Refused) and again.reason.name == "REPLAYED"
    else:
        assert isinstance(outcome, Refused), vector["name"]
        assert outcome.reason.name == vector["reject"], outcome


def test_there_are_valid_and_invalid_command_vectors() -> None:
    assert {v["valid"] for v in COMMANDS} == {True, False}


DEVICE_MESSAGES = [v for v in VECTORS["vectors"] if v.get("channel") != "cmd"]


@pytest.mark.parametrize("vector", DEVICE_MESSAGES, ids=[v["name"] for v in DEVICE_MESSAGES])
def test_the_strict_decoder_refuses_exactly_the_malformed_vectors(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    malformed = vector.get("error") == "malformed"
    try:
        decode(vector["channel"], raw)
    except Exception:
        assert malformed, f"{vector['name']} refused but it is not malformed"
        return
    assert not malformed, f"{vector['name']} is malformed but decoded"


FOREIGN = sorted(Path(__file__).parent.glob("foreign_*.py"))


@pytest.mark.parametrize("module", FOREIGN, ids=[p.name for p in FOREIGN])
def test_the_foreign_station_imports_nothing_of_ours(module: Path) -> None:
    """The hold-out stays one (CONTRIBUTING.md): the standard library, cbor2, aiomqtt,
    cryptography and its own modules only."""
    allowed = set(sys.stdlib_module_names) | {"cbor2", "aiomqtt", "cryptography"}
    own = {f"tests.conformance.{p.stem}" for p in FOREIGN}
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        else:
            continue
        for name in names:
            assert name in own or name.split(".")[0] in allowed, f"{module.name}: {name}"
