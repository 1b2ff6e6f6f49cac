"""Bytes per message type: CBOR (protocol v1) against the same content as compact JSON,
and MQTT bytes per message including the topic.

    .venv/bin/python benchmarks/protocol_size.py

Targets: heartbeat and spot status payload <= 24 bytes, position telemetry <= 40 bytes,
overall CBOR/JSON ratio <= 0.40 (sum over one message of each type).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _messages import SAMPLES, as_json

from kickstand.protocol import topics
from kickstand.protocol.v1 import codec


def mqtt_publish_bytes(topic: str, payload_len: int, qos: int) -> int:
    """Bytes of an MQTT 3.1.1 PUBLISH packet: fixed header, topic, packet id (QoS>0), payload."""
    remaining = 2 + len(topic.encode()) + (2 if qos else 0) + payload_len
    length_bytes = 1 if remaining < 128 else 2 if remaining < 16384 else 3
    return 1 + length_bytes + remaining


def main() -> None:
    total_cbor = total_json = 0
    print(f"{'message':28} {'cbor':>5} {'json':>5} {'ratio':>6} {'mqtt':>5}")
    for name, (stamp, body) in SAMPLES.items():
        cbor = codec.encode_up(stamp, body)
        js = as_json(stamp, body)
        channel = codec.channel_of(body)
        qos = 0 if channel is topics.Channel.HEARTBEAT else 1
        mqtt = mqtt_publish_bytes(topics.up("st-0001", channel), len(cbor), qos)
        total_cbor += len(cbor)
        total_json += len(js)
        print(f"{name:28} {len(cbor):5} {len(js):5} {len(cbor) / len(js):6.2f} {mqtt:5}")
    hb = len(codec.encode_up(*SAMPLES["heartbeat"]))
    status = len(codec.encode_up(*SAMPLES["status (spot)"]))
    position = len(codec.encode_up(*SAMPLES["telemetry (position)"]))
    print(f"heartbeat payload: {hb} B (target <= 24)")
    print(f"spot status payload: {status} B (target <= 24)")
    print(f"position telemetry payload: {position} B (target <= 40)")
    print(f"total: cbor {total_cbor} B, json {total_json} B")
    print(f"cbor/json size ratio: {total_cbor / total_json:.2f}")


if __name__ == "__main__":
    main()
