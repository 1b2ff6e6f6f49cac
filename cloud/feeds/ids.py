"""The identifiers the feeds publish instead of our database ids.

- GBFS ``vehicle_id`` (public): a MAC (keyed BLAKE2b) of the vehicle and its latest trip under a key
  derived from the installation's secret, so it looks random, changes after every trip
  (GBFS v3.0: rotated to a random string after each trip) and cannot be turned back
  into the vehicle; every API process computes the same one, with nothing stored.
- MDS UUIDs (for the city's agency, authenticated): stable, so an agency can follow a
  vehicle across its endpoints as MDS requires. Things an agency names in a path
  (``device_id``, ``stop_id``) and trips are RFC 9562 version 8 UUIDs that carry our id
  under a per-kind tag (:func:`mds_id` / :func:`parse_mds_id`); events, telemetry points
  and the provider are name-based (v5) UUIDs.
"""

from __future__ import annotations

import base64
import hashlib
import uuid

#: The namespace of every MDS UUID we derive (fixed: changing it renames everything).
MDS_NAMESPACE = uuid.UUID("6f1c7a52-2b1e-4c55-9d1c-8a4f1f0b9e37")


def vehicle_id_key(secret: str) -> bytes:
    """The GBFS vehicle id key: derived from (never equal to) the installation's secret."""
    return hashlib.sha256(b"kickstand gbfs vehicle_id\x00" + secret.encode()).digest()


def public_vehicle_id(key: bytes, vehicle_id: int, last_trip_id: int | None) -> str:
    # BLAKE2b in keyed mode is a MAC in one call (HMAC-SHA256 costs three): 10,000 a build.
    mac = hashlib.blake2b(f"{vehicle_id}:{last_trip_id or 0}".encode(), key=key, digest_size=15)
    return base64.b32encode(mac.digest()).decode().lower()


def mds_uuid(kind: str, key: object) -> str:
    """A name-based UUID (``kind``: event, telemetry, provider)."""
    return str(uuid.uuid5(MDS_NAMESPACE, f"{kind}:{key}"))


#: The tag of each kind of id carried in a version 8 UUID ("ks" + a letter + 1).
ID_TAGS = {"vehicle": 0x6B737601, "trip": 0x6B737401, "stop": 0x6B737301}
_VERSION_8 = 0x8 << 12
_VARIANT = 0b10 << 62


def mds_id(kind: str, value: int) -> str:
    """Our ``value`` (1 … 2³¹−1) of ``kind`` as a UUID: tag, version 8, variant, id."""
    high = (ID_TAGS[kind] << 32) | _VERSION_8
    return str(uuid.UUID(int=(high << 64) | _VARIANT | value))


def parse_mds_id(kind: str, text: str) -> int | None:
    """The id :func:`mds_id` put in ``text``; None when it is not one of ours of ``kind``."""
    try:
        number = uuid.UUID(text).int
    except ValueError:
        return None
    high, low = number >> 64, number & ((1 << 64) - 1)
    value = low & 0xFFFFFFFF
    if high != (ID_TAGS[kind] << 32) | _VERSION_8 or low >> 32 != _VARIANT >> 32 or value < 1:
        return None
    return value


__all__ = [
    "ID_TAGS",
    "MDS_NAMESPACE",
    "mds_id",
    "mds_uuid",
    "parse_mds_id",
    "public_vehicle_id",
    "vehicle_id_key",
]
