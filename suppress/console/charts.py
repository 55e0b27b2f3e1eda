"""Charts drawn on the server as inline SVG: no script, no style sheet of their own (the CSP
allows neither), a title and a description for screen readers, colours that keep 3:1 against
white (WCAG 1.4.11). Every chart has its numbers in a table beside it as well."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

# Distinct hues, each at least 4.5:1 against white.
PALETTE = (
    "#0b4f8a",
    "#c2410c",
    "#047857",
    "#7c3aed",
    "#a16207",
    "#be185d",
    "#0e7490",
    "#4b5563",
)
INK = "#1b1b1b"
MUTED = "#3d3d3d"
GRID = "#d5d9de"
FONT = "system-ui, sans-serif"


@dataclass(frozen=True)
class Series:
    """One named row of values, and the colour it is drawn in."""

    label: str
    values: Sequence[int]
    colour: str


def colours(labels: Sequence[str]) -> list[str]:
    """A colour for each label, in order (the palette repeats past eight)."""
    return [PALETTE[n % len(PALETTE)] for n in range(len(labels))]


def nice_ceiling(value: float) -> int:
    """The smallest of 1, 2 or 5 times a power of ten at or above value (at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return int(step * power)
    return int(10 * power)


def swatch(colour: str) -> Markup:
    """A small square of a legend."""
    return Markup(
        '<svg width="14" height="14" viewBox="0 0 14 14" aria-hidden="true" focusable="false">'
        f'<rect x="0.5" y="0.5" width="13" height="13" fill="{escape(colour)}" '
        f'stroke="{INK}" stroke-width="1"/></svg>'
    )


def stacked_bars(
    ident: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    label_every: int = 15,
    width: int = 760,
    height: int = 240,
) -> Markup:
    """Columns of stacked values, one column per label (e.g. a day)."""
    left, right, top, bottom = 44, 8, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(s.values[n] for s in series) for n in range(len(labels))]
    # Four intervals of a round step: whole numbers on the axis, however small the counts.
    peak = 4 * nice_ceiling(max(totals, default=0) / 4)
    step = plot_w / max(len(labels), 1)
    bar = max(step * 0.78, 1.0)
    out = [_open(ident, title, description, width, height)]
    for tick in range(5):
        value = peak * tick / 4
        y = top + plot_h - plot_h * tick / 4
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
            f'stroke="{GRID}" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'font-family="{FONT}" fill="{MUTED}">{_number(value)}</text>'
        )
    for n, label in enumerate(labels):
        x = left + n * step + (step - bar) / 2
        base = float(top + plot_h)
        for s in series:
            value = s.values[n]
            if not value:
                continue
            h = plot_h * value / peak
            base -= h
            out.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{escape(s.colour)}"><title>{escape(label)}: {escape(s.label)} '
                f"{value}</title></rect>"
            )
        last = n == len(labels) - 1
        if (n % label_every == 0 and len(labels) - n > label_every / 2) or last:
            # The first and last labels keep inside the picture.
            anchor = "end" if last and n else "start" if n == 0 else "middle"
            x_text = left + n * step + (step if anchor == "end" else 0 if n == 0 else step / 2)
            out.append(
                f'<text x="{x_text:.1f}" y="{height - 8}" text-anchor="{anchor}" '
                f'font-size="11" font-family="{FONT}" fill="{MUTED}">{escape(label)}</text>'
            )
    out.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
        f'stroke="{INK}" stroke-width="1"/></svg>'
    )
    return Markup("".join(out))


def horizontal_bars(
    ident: str,
    title: str,
    description: str,
    items: Sequence[tuple[str, int, str]],
    *,
    width: int = 460,
) -> Markup:
    """One bar per (label, value, colour), its value written beside it."""
    row, left, right = 30, 160, 70
    height = row * max(len(items), 1) + 8
    peak = max((value for _label, value, _colour in items), default=0) or 1
    out = [_open(ident, title, description, width, height)]
    for n, (label, value, colour) in enumerate(items):
        y = 4 + n * row
        w = (width - left - right) * value / peak
        out.append(
            f'<text x="{left - 8}" y="{y + 18}" text-anchor="end" font-size="13" '
            f'font-family="{FONT}" fill="{INK}">{escape(label)}</text>'
            f'<rect x="{left}" y="{y + 4}" width="{max(w, 1):.1f}" height="{row - 10}" '
            f'fill="{escape(colour)}"/>'
            f'<text x="{left + w + 6:.1f}" y="{y + 18}" font-size="13" font-family="{FONT}" '
            f'fill="{INK}">{_number(value)}</text>'
        )
    out.append("</svg>")
    return Markup("".join(out))


def _open(ident: str, title: str, description: str, width: int, height: int) -> str:
    ident = escape(ident)
    return (
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'aria-labelledby="{ident}-title {ident}-desc" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{ident}-title">{escape(title)}</title>'
        f'<desc id="{ident}-desc">{escape(description)}</desc>'
    )


def _number(value: float) -> str:
    return f"{int(value):,}".replace(",", "\u2009") if value >= 1000 else f"{value:g}"
