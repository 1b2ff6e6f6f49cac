"""The foreign station's command verifier (tests/conformance/foreign_station.py, written
from the documents alone) against the normative vectors: every valid command verifies at
its ``verify_at_ms``, every invalid one is refused with the RejectReason the vector names
(SPEC §7.2, §11), and a second verification of a valid one is REPLAYED. Imports nothing of
``kickstand``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.foreign_station import Refused, Verified, Verifier, decode

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
