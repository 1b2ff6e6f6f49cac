"""Protocol v1: messages (``messages``), integer codes (``enums``), the codec (``codec``)."""

from kickstand.protocol.v1.codec import (
    SEQUENCED_CHANNELS,
    channel_of,
    decode_command_payload,
    decode_down,
    decode_up,
    encode_command_payload,
    encode_down,
    encode_up,
)

__all__ = [
    "SEQUENCED_CHANNELS",
    "channel_of",
    "decode_command_payload",
    "decode_down",
    "decode_up",
    "encode_command_payload",
    "encode_down",
    "encode_up",
]
