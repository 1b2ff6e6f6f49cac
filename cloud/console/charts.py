"""Small SVG charts drawn on the server (no charting library in the browser): bars for
counts per period, a line for a series in time. Each carries a ``<title>`` and a
``<desc>`` for screen readers, and the page shows the same numbers in a table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 640, 200, 28


@dataclass(frozen=True, slots=True)
class Point:
    label: str
    value: float


def _frame(title: str, body: str, desc: str) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'preserveAspectRatio="xMidYMid meet"><title>{escape(title)}</title>'
        f"<desc>{escape(desc)}</desc>{body}</svg>"
    )


def bars(title: str, points: Sequence[Point]) -> Markup:
    if not points:
        return _frame(title, "", "no data")
    top = max(p.value for p in points) or 1.0
    step = (WIDTH - 2 * PAD) / len(points)
    parts = []
    for i, p in enumerate(points):
        h = (HEIGHT - 2 * PAD) * p.value / top
        x = PAD + i * step
        parts.append(
            f'<rect x="{x + step * 0.1:.1f}" y="{HEIGHT - PAD - h:.1f}" '
            f'width="{step * 0.8:.1f}" height="{h:.1f}"><title>{escape(p.label)}: '
            f"{p.value:g}</title></rect>"
            f'<text x="{x + step / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle">'
            f"{escape(p.label[-5:])}</text>"
        )
    parts.append(f'<text x="4" y="{PAD - 8}">{top:g}</text>')
    desc = ", ".join(f"{p.label}: {p.value:g}" for p in points)
    return _frame(title, "".join(parts), desc)


def line(title: str, points: Sequence[Point]) -> Markup:
    if len(points) < 2:
        return _frame(title, "", "not enough data")
    values = [p.value for p in points]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = (WIDTH - 2 * PAD) / (len(points) - 1)
    coords = " ".join(
        f"{PAD + i * step:.1f},{HEIGHT - PAD - (HEIGHT - 2 * PAD) * (v - low) / span:.1f}"
        for i, v in enumerate(values)
    )
    body = (
        f'<polyline fill="none" stroke="currentColor" stroke-width="2" points="{coords}"/>'
        f'<text x="4" y="{PAD - 8}">{high:g}</text>'
        f'<text x="4" y="{HEIGHT - 8}">{low:g}</text>'
    )
    desc = f"{len(points)} points from {points[0].label} to {points[-1].label}, {low:g} to {high:g}"
    return _frame(title, body, desc)
