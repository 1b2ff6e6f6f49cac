"""Vehicle QR codes: one PNG, or sheets of stickers as a PDF (seed 002 "Generate vehicle QR
code", "Get vehicle QR code", "Generate vehicle QR code sheet").

A code holds the vehicle's rent link, ``https://kickstand.app/v/<SERIAL>``: the rider app
opens it, and ``kickstand.cloud.freefloat.serial_from_qr`` (the unlock by QR code) reads the
serial back from it. Codes are drawn with ``segno`` (the PNG) and, on the sheets, as vector
rectangles by ``reportlab``: they print sharp at any size, the serial in clear under each.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import segno
from reportlab.lib.units import cm
from reportlab.pdfgen.canvas import Canvas

#: The rent link a code carries; the unlock by QR code reads the last path segment.
RENT_URL = "https://kickstand.app/v/"
#: Quiet zone around a code, in modules (the QR standard's minimum).
BORDER = 4
#: PNG pixels per module.
PNG_SCALE = 10

#: One sticker of a sheet: the code, the serial under it, spacing.
CODE_CM = 3.0
CELL_WIDTH_CM = 3.6
CELL_HEIGHT_CM = 4.2
MARGIN_CM = 1.0
SERIAL_FONT = ("Helvetica-Bold", 11)


def rent_link(serial: str) -> str:
    return RENT_URL + serial.upper()


def _code(serial: str) -> segno.QRCode:
    # Level M: a sticker survives some scratches; the link fits a version 3 symbol.
    return segno.make(rent_link(serial), error="m", micro=False)


def png(serial: str) -> bytes:
    """The code of ``serial`` as a PNG (black on white, quiet zone included)."""
    out = io.BytesIO()
    _code(serial).save(out, kind="png", scale=PNG_SCALE, border=BORDER)
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class SheetLayout:
    """How many stickers a sheet of that size holds (a grid inside the margins)."""

    width_cm: float
    height_cm: float

    @property
    def columns(self) -> int:
        return max(0, math.floor((self.width_cm - 2 * MARGIN_CM) / CELL_WIDTH_CM))

    @property
    def rows(self) -> int:
        return max(0, math.floor((self.height_cm - 2 * MARGIN_CM) / CELL_HEIGHT_CM))

    @property
    def per_sheet(self) -> int:
        return self.columns * self.rows

    def sheets(self, count: int) -> int:
        return math.ceil(count / self.per_sheet) if self.per_sheet else 0


def _draw_code(canvas: Canvas, serial: str, x: float, y: float, side: float) -> None:
    """The code's dark modules as rectangles, one per run in a row; (x, y) bottom left."""
    matrix = _code(serial).matrix
    n = len(matrix)
    module = side / n
    for r, row in enumerate(matrix):
        top = y + side - (r + 1) * module
        c = 0
        while c < n:
            if row[c] & 1:
                start = c
                while c < n and row[c] & 1:
                    c += 1
                canvas.rect(x + start * module, top, (c - start) * module, module, stroke=0, fill=1)
            else:
                c += 1


def sheet_pdf(serials: Sequence[str], layout: SheetLayout) -> bytes:
    """Sheets of ``layout``'s size with one sticker per serial, in order, row by row."""
    if layout.per_sheet == 0:
        raise ValueError("the sheet is too small for one code")
    out = io.BytesIO()
    width, height = layout.width_cm * cm, layout.height_cm * cm
    canvas = Canvas(out, pagesize=(width, height), pageCompression=1)
    canvas.setTitle("Kickstand vehicle QR codes")
    canvas.setAuthor("Kickstand")
    # The quiet zone is white paper: the code's side is its modules plus the border.
    side = CODE_CM * cm
    for i, serial in enumerate(serials):
        place = i % layout.per_sheet
        if i and place == 0:
            canvas.showPage()
        col, row = place % layout.columns, place // layout.columns
        left = MARGIN_CM * cm + col * CELL_WIDTH_CM * cm
        top = height - MARGIN_CM * cm - row * CELL_HEIGHT_CM * cm
        x = left + (CELL_WIDTH_CM * cm - side) / 2
        y = top - side - 0.1 * cm
        canvas.setFillColorRGB(0, 0, 0)
        _draw_code(canvas, serial, x, y, side)
        canvas.setFont(*SERIAL_FONT)
        canvas.drawCentredString(left + CELL_WIDTH_CM * cm / 2, y - 0.55 * cm, serial)
    canvas.showPage()
    canvas.save()
    return out.getvalue()


def sheet_serials(prefix: str, begin_id: int, count: int) -> list[str]:
    """``prefix`` then the number, zero-padded to the 6 characters a serial has at least."""
    width = max(0, 6 - len(prefix))
    return [f"{prefix}{n:0{width}d}" for n in range(begin_id, begin_id + count)]
