"""QR codes (a real PNG, real PDF sheets), statistic, alerts and external locks, through HTTP
on PostgreSQL."""

from __future__ import annotations

import base64
import re
import struct
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import segno
from sqlalchemy import select

from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import AlertSeverity, AlertState, AlertType
from kickstand.cloud.freefloat import serial_from_qr
from kickstand.cloud.models import Trip, TripStatus
from kickstand.cloud.vehicles import lockcodes, qr, service
from kickstand.cloud.vehicles.lockcodes import LockCodeUnreadableError
from kickstand.cloud.vehicles.models import VehicleExternalLock
from tests.cloud.api.support import Api
from tests.cloud.vehicles.conftest import OPERATOR, PG, register

URL = "/v1/dashboard/vehicles"
#: The api fixture's JWT_SECRET (tests/cloud/api/conftest.py): the lock code key's source.
SECRET = "test-secret-" + "x" * 40


def png_pixels(data: bytes) -> tuple[int, int, list[list[int]]]:
    """Width, height and grey rows of a non-interlaced 1-bit or 8-bit grey PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        assert (
            zlib.crc32(kind + body)
            == struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0]
        )
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert colour in (0, 3) and depth in (1, 8)  # grey or palette, as segno writes
    raw = zlib.decompress(idat)
    stride = (width * depth + 7) // 8
    rows, prev = [], bytes(stride)
    for y in range(height):
        filt, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):  # the PNG filters, for bytes (bpp 1)
            left = line[i - 1] if i else 0
            up = prev[i]
            if filt == 1:
                line[i] = (line[i] + left) & 0xFF
            elif filt == 2:
                line[i] = (line[i] + up) & 0xFF
            elif filt == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif filt == 4:
                ul = prev[i - 1] if i else 0
                p = left + up - ul
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - ul)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else ul
                line[i] = (line[i] + pred) & 0xFF
        prev = bytes(line)
        if depth == 1:
            rows.append([(line[x // 8] >> (7 - x % 8)) & 1 for x in range(width)])
        else:
            rows.append(list(line[:width]))
    return width, height, rows


def pdf_pages_and_text(data: bytes) -> tuple[int, bytes]:
    """Page objects and the decompressed content streams of a PDF."""
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    pages = len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", data))
    text = b""
    for match in re.finditer(rb"stream\r?\n(.*?)\s*endstream", data, re.S):
        stream = match.group(1).strip()
        if stream.endswith(b"~>"):  # reportlab: /ASCII85Decode then /FlateDecode
            stream = base64.a85decode(stream[:-2])
        try:
            text += zlib.decompress(stream)
        except zlib.error:
            text += stream
    return pages, text


@PG
async def test_qr_code_png_carries_the_rent_link(api: Api) -> None:
    op = await api.login(OPERATOR)
    made = await register(api, op, serial_number="QRC001", vehicle_type="bike")
    for path, params in (
        (f"{URL}/{made['vehicle_id']}/qr-code", {}),
        (f"{URL}/qr-code", {"serial": "qrc001"}),
    ):
        r = await api.client.get(path, params=params, headers=op)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
        width, height, rows = png_pixels(r.content)
        expected = segno.make(qr.rent_link("QRC001"), error="m", micro=False)
        modules = len(expected.matrix)
        side = (modules + 2 * qr.BORDER) * qr.PNG_SCALE
        assert (width, height) == (side, side)
        # Each module's centre pixel is dark exactly where the symbol of the link is.
        offset = qr.BORDER * qr.PNG_SCALE + qr.PNG_SCALE // 2
        dark_pixel = min(min(row) for row in rows)
        seen = [
            [
                rows[offset + y * qr.PNG_SCALE][offset + x * qr.PNG_SCALE] == dark_pixel
                for x in range(modules)
            ]
            for y in range(modules)
        ]
        assert seen == [[bool(v & 1) for v in row] for row in expected.matrix]
    assert serial_from_qr(qr.rent_link("QRC001")) == "QRC001"  # the unlock reads it back
    r = await api.client.get(f"{URL}/qr-code", params={"serial": "AB-12"}, headers=op)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "serial"


@PG
async def test_qr_code_sheet_is_a_pdf_with_a_page_per_sheet(api: Api) -> None:
    op = await api.login(OPERATOR)
    a4: dict[str, Any] = {"prefix": "SXB", "begin_id": 7, "width_in_cm": 21, "height_in_cm": 29.7}
    layout = qr.SheetLayout(21, 29.7)
    r = await api.client.get(f"{URL}/qr-code-sheet", params={**a4, "count": 40}, headers=op)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf", r.text
    pages, text = pdf_pages_and_text(r.content)
    assert layout.per_sheet == 30 and pages == 2
    # The serials printed under the codes, in order, zero-padded to 6 characters.
    printed = re.findall(rb"\((SXB\d+)\) Tj", text)
    assert printed == [f"SXB{n:03d}".encode() for n in range(7, 47)]
    # Default: one full sheet.
    r = await api.client.get(f"{URL}/qr-code-sheet", params=a4, headers=op)
    assert pdf_pages_and_text(r.content)[0] == 1
    # A sheet too small for one code, serials longer than 10 characters: refused.
    r = await api.client.get(f"{URL}/qr-code-sheet", params={**a4, "width_in_cm": 3}, headers=op)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "width_in_cm"
    r = await api.client.get(
        f"{URL}/qr-code-sheet", params={**a4, "prefix": "ABCDEFG", "begin_id": 9999}, headers=op
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "begin_id"


@PG
async def test_statistic_and_current_alerts(api: Api) -> None:
    op = await api.login(OPERATOR)
    made = await register(api, op, serial_number="STA001", vehicle_type="bike")
    vid = made["vehicle_id"]
    now = datetime.now(UTC)
    async with api.sessionmaker() as session:
        for i, (days_ago, minutes, status) in enumerate(
            (
                (0, 10, TripStatus.FINISHED),
                (0, 20, TripStatus.FINISHED),
                (2, 30, TripStatus.FINISHED),
                (1, 99, TripStatus.CANCELLED),  # left out
                (60, 5, TripStatus.FINISHED),  # before the period
            )
        ):
            start = now - timedelta(days=days_ago, hours=1, minutes=i)
            session.add(
                Trip(
                    user_id=api.demo.user_ids["alice@example.com"],
                    vehicle_id=vid,
                    network_id=api.demo.network_id,
                    status=status,
                    started_at=start,
                    ended_at=start + timedelta(minutes=minutes),
                    start_latitude=45.0,
                    start_longitude=4.0,
                    end_latitude=45.01,  # ~1112 m north
                    end_longitude=4.0,
                    currency="EUR",
                    hold_periods=[],
                )
            )
        session.add_all(
            FleetAlert(
                network_id=api.demo.network_id,
                alert_type=AlertType.VEHICLE_FALLEN,
                severity=AlertSeverity.LOW,
                state=state,
                cause_key=f"vehicle-fallen|{vid}|{state.value}",
                vehicle_id=vid,
                message="fallen",
            )
            for state in (AlertState.NEW, AlertState.RESOLVED)
        )
        await session.commit()

    r = await api.client.get(f"{URL}/{vid}/statistic", params={"days": 7}, headers=op)
    assert r.status_code == 200, r.text
    stat = r.json()["data"]
    assert stat["trip_count"] == 3 and stat["rider_count"] == 1
    assert stat["total_duration_s"] == 3600 and stat["max_duration_s"] == 1800
    assert abs(stat["total_distance_m"] - 3 * 1112) < 10
    assert len(stat["rides_per_day"]) == 7 and sum(d["trips"] for d in stat["rides_per_day"]) == 3
    assert abs(stat["average_rides_per_day"] - 3 / 7) < 1e-9

    r = await api.client.get(f"{URL}/{vid}/alerts", headers=op)
    assert r.status_code == 200, r.text
    alerts = r.json()["data"]
    assert [(a["state"], a["serial_number"]) for a in alerts] == [("new", "STA001")]


@PG
async def test_external_lock_code_is_sealed_and_never_answered(api: Api) -> None:
    op = await api.login(OPERATOR)
    made = await register(api, op, serial_number="LCK001", vehicle_type="bike")
    vid = made["vehicle_id"]
    body = {
        "vehicle_id": vid,
        "model": "Abus 540",
        "type": "u",
        "serial_number": "AB-1",
        "code": "4711",
    }
    r = await api.client.post(f"{URL}/external-locks", json=body, headers=op)
    assert r.status_code == 200, r.text
    assert "4711" not in r.text and r.json()["data"]["type"] == "u"
    detail = await api.client.get(f"{URL}/{vid}", headers=op)
    assert detail.json()["data"]["external_lock"]["serial_number"] == "AB-1"
    assert "4711" not in detail.text
    listing = await api.client.get(URL, params={"networks": api.demo.network_id}, headers=op)
    assert "4711" not in listing.text
    key = lockcodes.key_from_secret(SECRET)
    async with api.sessionmaker() as session:
        lock = await session.scalar(
            select(VehicleExternalLock).where(VehicleExternalLock.vehicle_id == vid)
        )
        assert lock is not None and b"4711" not in lock.code_sealed
        assert await service.lock_code(session, key, vid) == "4711"
        # Another key (a rotated secret) cannot read it; nor can the sealed code move locks.
        other = lockcodes.key_from_secret("another-secret-" + "y" * 40)
        try:
            lockcodes.unseal(other, lock.id, lock.code_sealed)
            raise AssertionError("unsealed with another key")
        except LockCodeUnreadableError:
            pass
        try:
            lockcodes.unseal(key, lock.id + 1, lock.code_sealed)
            raise AssertionError("unsealed as another lock")
        except LockCodeUnreadableError:
            pass

    # One lock in use per vehicle, one vehicle per lock serial.
    r = await api.client.post(f"{URL}/external-locks", json=body, headers=op)
    assert r.status_code == 409 and r.json()["reason"] == "external-lock-in-use"
    r = await api.client.put(f"{URL}/{vid}/external-lock/code", json={"code": "0815"}, headers=op)
    assert r.status_code == 200 and "0815" not in r.text
    async with api.sessionmaker() as session:
        assert await service.lock_code(session, key, vid) == "0815"
    r = await api.client.put(f"{URL}/{vid}/external-lock/code", json={"code": "x" * 17}, headers=op)
    assert r.status_code == 422

    r = await api.client.delete(f"{URL}/{vid}/external-lock", headers=op)
    assert r.status_code == 200
    assert (await api.client.get(f"{URL}/{vid}", headers=op)).json()["data"][
        "external_lock"
    ] is None
    async with api.sessionmaker() as session:
        assert await service.lock_code(session, key, vid) is None
    r = await api.client.delete(f"{URL}/{vid}/external-lock", headers=op)
    assert r.status_code == 404
    # The serial is free again once its lock is decommissioned.
    r = await api.client.post(f"{URL}/external-locks", json=body, headers=op)
    assert r.status_code == 200, r.text
