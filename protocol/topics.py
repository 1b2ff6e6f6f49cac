"""The MQTT topic tree of protocol v1.

    ks/v1/d/<device_id>/<channel>   device -> cloud
    ks/v1/c/<device_id>/<channel>   cloud  -> device

The device id in the topic must equal the device's identity at the broker: in
production the CN of its client certificate (Mosquitto's TLS listener with
``use_identity_as_username`` and ``use_username_as_clientid``; ACL pattern
``ks/v1/d/%u/#``), so a device can never speak for another one. The test harness's
plain listener and the embedded broker of ``make run`` bind no identity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from kickstand.protocol.errors import TopicError

ROOT = "ks/v1"
DEVICE_ID_RE = re.compile(r"^[a-z]{2}-[A-Za-z0-9]{4,16}$")


class Direction(StrEnum):
    UP = "d"  # device -> cloud
    DOWN = "c"  # cloud -> device


class Channel(StrEnum):
    # device -> cloud
    BIRTH = "birth"
    DEATH = "death"
    HEARTBEAT = "hb"
    STATUS = "status"
    EVENT = "evt"
    TELEMETRY = "tlm"
    RESULT = "res"
    # cloud -> device
    BOOT = "boot"
    TIME = "time"
    COMMAND = "cmd"
    ACK = "ack"
    BADGE = "badge"  # the cloud's answer to a badge, shown at the reader


UP_CHANNELS = frozenset(
    {
        Channel.BIRTH,
        Channel.DEATH,
        Channel.HEARTBEAT,
        Channel.STATUS,
        Channel.EVENT,
        Channel.TELEMETRY,
        Channel.RESULT,
    }
)
DOWN_CHANNELS = frozenset({Channel.BOOT, Channel.TIME, Channel.COMMAND, Channel.ACK, Channel.BADGE})


@dataclass(frozen=True, slots=True)
class Topic:
    direction: Direction
    device_id: str
    channel: Channel

    def __str__(self) -> str:
        return f"{ROOT}/{self.direction.value}/{self.device_id}/{self.channel.value}"


def validate_device_id(device_id: str) -> str:
    if not DEVICE_ID_RE.match(device_id):
        raise TopicError(f"device id {device_id!r} is not <kind>-<4..16 alphanumerics>")
    return device_id


def up(device_id: str, channel: Channel) -> str:
    if channel not in UP_CHANNELS:
        raise TopicError(f"{channel} is not a device -> cloud channel")
    return f"{ROOT}/d/{validate_device_id(device_id)}/{channel.value}"


def down(device_id: str, channel: Channel) -> str:
    if channel not in DOWN_CHANNELS:
        raise TopicError(f"{channel} is not a cloud -> device channel")
    return f"{ROOT}/c/{validate_device_id(device_id)}/{channel.value}"


def parse(topic: str) -> Topic:
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != ROOT:
        raise TopicError(f"topic {topic!r} is outside {ROOT}/<d|c>/<device>/<channel>")
    try:
        direction = Direction(parts[2])
        channel = Channel(parts[4])
    except ValueError as exc:
        raise TopicError(f"topic {topic!r}: {exc}") from None
    allowed = UP_CHANNELS if direction is Direction.UP else DOWN_CHANNELS
    if channel not in allowed:
        raise TopicError(f"topic {topic!r}: channel {channel} does not flow that way")
    return Topic(direction, validate_device_id(parts[3]), channel)


def device_subscriptions(device_id: str) -> str:
    """The one filter a device subscribes to."""
    return f"{ROOT}/c/{validate_device_id(device_id)}/+"


def ingest_subscription(group: str = "ingest") -> str:
    """Shared subscription: any number of ingest workers split the devices' traffic."""
    return f"$share/{group}/{ROOT}/d/+/+"
