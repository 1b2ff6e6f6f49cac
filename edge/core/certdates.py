"""A certificate's validity dates, read without ``cryptography.x509``.

An idle agent looks at its certificate's dates at each connection (a report: the broker's
clock decides) and every hour (is a renewal due?). ``cryptography.x509`` for that costs a
station ~1.3 MB of resident memory (the x509 modules and the bundled OpenSSL's parsing
code it pages in, beside the copy Python's ``ssl`` already uses; issue 17's footprint
figure), so only the dates are read here, from the DER the PEM file holds. Whether a
certificate is good is never decided here: OpenSSL checks the pair when the TLS context
loads it (``link.tls_context``) and the broker checks the chain; the renewal's own checks
(``identity.install``) still parse the whole certificate with ``cryptography``.

RFC 5280 §4.1: Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
serialNumber, signature, issuer, validity SEQUENCE { notBefore Time, notAfter Time }, …
} … }; Time is UTCTime ``YYMMDDHHMMSSZ`` (years 1950-2049) or GeneralizedTime
``YYYYMMDDHHMMSSZ``.
"""

from __future__ import annotations

import binascii
from datetime import UTC, datetime
from pathlib import Path

_SEQUENCE = 0x30
_VERSION = 0xA0  # [0] EXPLICIT
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18
_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
_PEM_END = b"-----END CERTIFICATE-----"


def _element(der: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at ``pos``; ValueError when it
    does not fit in ``end`` or uses a form DER forbids (indefinite length)."""
    if pos + 2 > end:
        raise ValueError("truncated")
    tag, first = der[pos], der[pos + 1]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-byte tag")
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > end:
            raise ValueError("bad length")
        length = int.from_bytes(der[pos:pos + count], "big")
        pos += count
    if pos + length > end:
        raise ValueError("truncated")
    return tag, pos, pos + length


def _time(tag: int, text: bytes) -> datetime:
    if tag == _UTC_TIME and len(text) == 13:
        year = int(text[0:2])
        year += 1900 if year >= 50 else 2000
        rest = text[2:]
    elif tag == _GENERALIZED_TIME and len(text) == 15:
        year = int(text[0:4])
        rest = text[4:]
    else:
        raise ValueError(f"not an RFC 5280 time: tag {tag:#x} {text!r}")
    if not rest.endswith(b"Z") or not rest[:-1].isdigit():
        raise ValueError(f"not an RFC 5280 time: {text!r}")
    month, day, hour, minute, second = (int(rest[i:i + 2]) for i in range(0, 10, 2))
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def der_validity(der: bytes) -> tuple[datetime, datetime]:
    """(notBefore, notAfter) of a DER certificate; ValueError when it is not one."""
    tag, start, end = _element(der, 0, len(der))
    if tag != _SEQUENCE:
        raise ValueError("not a certificate")
    tag, pos, tbs_end = _element(der, start, end)
    if tag != _SEQUENCE:
        raise ValueError("not a certificate")
    skip = 0
    while True:
        tag, content, after = _element(der, pos, tbs_end)
        if skip == 0 and tag == _VERSION:
            pos = after
            continue
        if skip < 3:  # serialNumber, signature, issuer
            pos, skip = after, skip + 1
            continue
        if tag != _SEQUENCE:
            raise ValueError("no validity")
        times: list[datetime] = []
        inner = content
        for _ in range(2):
            time_tag, text_start, inner = _element(der, inner, after)
            times.append(_time(time_tag, der[text_start:inner]))
        return times[0], times[1]


def pem_validity(pem: bytes) -> tuple[datetime, datetime]:
    """(notBefore, notAfter) of the first certificate of a PEM text; ValueError otherwise."""
    begin = pem.find(_PEM_BEGIN)
    end = pem.find(_PEM_END, begin + 1)
    if begin < 0 or end < 0:
        raise ValueError("no PEM certificate")
    try:
        der = binascii.a2b_base64(pem[begin + len(_PEM_BEGIN):end])
    except binascii.Error as exc:
        raise ValueError(f"bad PEM: {exc}") from None
    return der_validity(der)


def file_validity(path: str | Path) -> tuple[datetime, datetime]:
    """(notBefore, notAfter) of the certificate file; OSError, ValueError otherwise."""
    with open(path, "rb") as file:
        return pem_validity(file.read())
