"""Encode + decode messages per second per core for telemetry and events, with full
validation (CDDL + field checks), against the standard library's json on the same content
in the same run.

    .venv/bin/python benchmarks/codec_speed.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _messages import SAMPLES, as_json, from_json

from kickstand.protocol.v1 import codec

MIX = [
    "telemetry (position)",
    "telemetry (station)",
    "event vehicle docked",
    "event vehicle removed",
    "event unlocked",
    "event badge",
    "status (spot)",
]
ROUNDS = 3
SECONDS = 1.0


def rate(fn: object, items: list[object]) -> float:
    best = 0.0
    for _ in range(ROUNDS):
        n = 0
        start = time.perf_counter()
        while time.perf_counter() - start < SECONDS:
            for item in items:
                fn(item)  # type: ignore[operator]
            n += len(items)
        best = max(best, n / (time.perf_counter() - start))
    return best


def main() -> None:
    samples = [SAMPLES[name] for name in MIX]
    channels = [codec.channel_of(body) for _, body in samples]

    def cbor_round(i: object) -> None:
        stamp, body = samples[i]  # type: ignore[index]
        codec.decode_up(channels[i], codec.encode_up(stamp, body))  # type: ignore[index]

    def json_round(i: object) -> None:
        stamp, body = samples[i]  # type: ignore[index]
        from_json(as_json(stamp, body))

    idx = list(range(len(samples)))
    cbor = rate(cbor_round, idx)
    js = rate(json_round, idx)
    print(f"mix: {', '.join(MIX)}")
    print(f"cbor v1 (validated) encode+decode: {cbor:,.0f} msgs/s")
    print(f"json (unvalidated) encode+decode: {js:,.0f} msgs/s")
    print(f"codec msgs/s: {cbor:.0f} (json: {js:.0f})")


if __name__ == "__main__":
    main()
