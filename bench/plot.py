"""Draw bench/sizes.py's results as one SVG figure: four panels of throughput against the
list's size (log scale), each service line beside its yardstick or peer.

    .venv/bin/python -m bench.sizes --from-json sizes.json --plot docs/performance-sizes.svg
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 1000, 860
PANEL_W, PANEL_H = 500, 420
MARGIN = {"left": 78, "right": 24, "top": 40, "bottom": 130}
# Okabe-Ito colours (distinguishable with colour-blindness), and a dash per kind of line.
SQLITE, POSTGRES, YARDSTICK, PEER = "#0072B2", "#D55E00", "#555555", "#009E73"
SOLID, DASHED, DOTTED = "", "6 4", "2 3"

Series = tuple[str, str, str, list[tuple[int, float]]]  # label, colour, dash, points


def _points(results: dict[str, Any], *path: str) -> list[tuple[int, float]]:
    found = []
    for size in results["sizes"]:
        value: Any = results.get(str(size))
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, (int, float)):
            found.append((size, float(value)))
    return found


def panels(results: dict[str, Any]) -> list[tuple[str, str, list[Series], bool]]:
    """The four panels: title, y-axis unit, series, and whether the y axis is logarithmic
    (the library-call panel: the peer's rate is orders of magnitude apart)."""

    def service(what: str, *path: str, dash: str = SOLID) -> list[Series]:
        return [
            (f"{what}, SQLite", SQLITE, dash, _points(results, "sqlite", *path)),
            (f"{what}, PostgreSQL", POSTGRES, dash, _points(results, "postgresql", *path)),
        ]

    mailman = _points(results, "mailman", "checks_per_s")
    limit = _points(results, "filter_limit_per_s")
    return [
        (
            "Single check through gunicorn (2 workers)",
            "requests/s",
            service("suppress", "check_suppress", "rps")
            + service("minimal app", "check_minimal", "rps", dash=DASHED),
            False,
        ),
        (
            "Check as a library call (one thread)",
            "checks/s",
            service("suppress", "check_in_process", "checks_per_s")
            + [("GNU Mailman 3 ban check, SQLite", PEER, DOTTED, mailman)],
            True,
        ),
        (
            f"Streamed filter of {results.get('recipients', 0):,} recipients",
            "recipients/s",
            service("suppress", "filter", "per_second")
            + [("in-process limit", YARDSTICK, DASHED, limit)],
            False,
        ),
        (
            f"Import of {results.get('imports', 0):,} new addresses over HTTP",
            "rows/s",
            service("suppress", "import", "rows_per_s"),
            False,
        ),
    ]


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _count(value: float) -> str:
    if 0 < value < 1:
        return f"{value:g}"
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1_000:
        return f"{value / 1_000:g}k"
    return f"{value:g}"


def _panel(
    x0: int, y0: int, title: str, unit: str, series: list[Series], sizes: list[int], log_y: bool
) -> str:
    left, top = x0 + MARGIN["left"], y0 + MARGIN["top"]
    width = PANEL_W - MARGIN["left"] - MARGIN["right"]
    height = PANEL_H - MARGIN["top"] - MARGIN["bottom"]
    lo, hi = math.log10(min(sizes)), math.log10(max(sizes))
    span = (hi - lo) or 1.0
    values = [v for *_x, pts in series for _s, v in pts if v > 0] or [1.0]
    if log_y:
        # A decade of room under the lowest point when it sits near a decade's line.
        bottom_exp = math.floor(math.log10(min(values)) - 0.15)
        top_exp = max(math.ceil(math.log10(max(values))), bottom_exp + 1)
        ticks = [10.0**e for e in range(bottom_exp, top_exp + 1)]
        unit += " (log scale)"
    else:
        top_value = _nice_max(max(values) * 1.05)
        ticks = [top_value * i / 4 for i in range(5)]

    def x(size: int) -> float:
        return left + (math.log10(size) - lo) / span * width

    def y(value: float) -> float:
        if log_y:
            share = (math.log10(max(value, ticks[0])) - bottom_exp) / (top_exp - bottom_exp)
        else:
            share = value / top_value
        return top + height - share * height

    out = [
        f'<text x="{x0 + PANEL_W / 2}" y="{y0 + 22}" text-anchor="middle" '
        f'font-weight="bold">{escape(title)}</text>',
        f'<text x="{x0 + 16}" y="{top + height / 2}" text-anchor="middle" '
        f'transform="rotate(-90 {x0 + 16} {top + height / 2})">{escape(unit)}</text>',
    ]
    for value in ticks:
        out.append(
            f'<line x1="{left}" x2="{left + width}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            'stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{_count(value)}</text>'
        )
    for size in sizes:
        out.append(
            f'<line x1="{x(size):.1f}" x2="{x(size):.1f}" y1="{top + height}" '
            f'y2="{top + height + 5}" stroke="#333"/>'
            f'<text x="{x(size):.1f}" y="{top + height + 19}" text-anchor="middle">'
            f"{_count(size)}</text>"
        )
    out.append(
        f'<text x="{left + width / 2}" y="{top + height + 38}" text-anchor="middle">'
        "suppressions in the list (log scale)</text>"
        f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" stroke="#333"/>'
    )
    legend_y = top + height + 60
    for label, colour, dash, pts in series:
        if not pts:
            continue
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        path = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in pts)
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2.2"{dashes}/>'
        )
        out += [
            f'<circle cx="{x(s):.1f}" cy="{y(v):.1f}" r="3.2" fill="{colour}"/>' for s, v in pts
        ]
        out.append(
            f'<line x1="{left}" x2="{left + 26}" y1="{legend_y}" y2="{legend_y}" '
            f'stroke="{colour}" stroke-width="2.2"{dashes}/>'
            f'<text x="{left + 32}" y="{legend_y + 4}">{escape(label)}</text>'
        )
        legend_y += 16
    return "\n".join(out)


def render(results: dict[str, Any]) -> str:
    sizes = [int(s) for s in results["sizes"]]
    body = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12" '
        'role="img" aria-label="Throughput against list size">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
    ]
    for n, (title, unit, series, log_y) in enumerate(panels(results)):
        x0, y0 = (n % 2) * PANEL_W, (n // 2) * PANEL_H + 10
        body.append(_panel(x0, y0, title, unit, series, sizes, log_y))
    body.append("</svg>")
    return "\n".join(body) + "\n"


def write(results: dict[str, Any], path: Path) -> None:
    path.write_text(render(results), encoding="utf-8")
