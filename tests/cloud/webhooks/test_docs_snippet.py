"""The verification snippet of docs/webhooks.md, run against real signatures."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kickstand.cloud.webhooks import signing
from kickstand.cloud.webhooks.delivery import Job, envelope

DOC = Path(__file__).resolve().parents[3] / "docs" / "webhooks.md"
Verify = Callable[..., bool]


@pytest.fixture(scope="module")
def verify() -> Verify:
    text = DOC.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    [snippet] = [b for b in blocks if "def verify_kickstand_signature" in b]
    namespace: dict[str, object] = {}
    exec(compile(snippet, str(DOC), "exec"), namespace)
    fn = namespace["verify_kickstand_signature"]
    assert callable(fn)
    return fn


def _body() -> bytes:
    job = Job(1, 1, "http://x", "s", True, "ev-1", "trip.created", 1763740800, {"trip_id": 1})
    return json.dumps(envelope(job, "att-1"), separators=(",", ":")).encode()


def test_snippet_accepts_worker_signatures(verify: Verify) -> None:
    secret = signing.new_secret()
    body = _body()
    assert verify(secret, signing.sign(secret, body), body)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda secret, header, body: (secret + "x", header, body),
        lambda secret, header, body: (secret, header, body + b" "),
        lambda secret, header, body: (secret, header.replace("v1=", "v1=0"), body),
        lambda secret, header, body: (secret, "garbage", body),
        lambda secret, header, body: (
            secret,
            signing.sign(secret, body, int(time.time()) - 3600),
            body,
        ),
    ],
)
def test_snippet_refuses_tampering(verify: Verify, tamper: Callable[..., tuple]) -> None:
    secret = signing.new_secret()
    body = _body()
    args = tamper(secret, signing.sign(secret, body), body)
    assert verify(*args) is False
