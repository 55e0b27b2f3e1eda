"""Charts drawn on the server: accessible SVG that a strict CSP allows."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from suppress.console import charts

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize(
    ("value", "ceiling"), [(0, 1), (1, 1), (3, 5), (7, 10), (11, 20), (250, 500), (1000, 1000)]
)
def test_the_scale_ends_at_a_round_number(value: int, ceiling: int) -> None:
    assert charts.nice_ceiling(value) == ceiling


def test_stacked_bars_are_an_image_with_a_title_and_a_description_and_no_style() -> None:
    series = [
        charts.Series("Unsubscribed <news>", [1, 0, 4], charts.PALETTE[0]),
        charts.Series("Spam complaint", [0, 2, 1], charts.PALETTE[1]),
    ]
    svg = str(
        charts.stacked_bars("x", "Opt-outs", "Seven in all", ["1 Jun", "2 Jun", "3 Jun"], series)
    )
    root = ET.fromstring(svg)
    assert root.get("role") == "img" and root.get("aria-labelledby") == "x-title x-desc"
    assert root.find(f"{SVG}title").text == "Opt-outs"  # type: ignore[union-attr]
    assert root.find(f"{SVG}desc").text == "Seven in all"  # type: ignore[union-attr]
    bars = root.findall(f"{SVG}rect")
    assert len(bars) == 4  # zero values draw nothing
    assert "Unsubscribed &lt;news&gt; 1" in svg  # escaped, with a tooltip per bar
    assert "style" not in svg and "script" not in svg
    heights = sorted(float(b.get("height", 0)) for b in bars)
    # The tallest column holds 5: the scale is four steps of 2, so 4 takes half the height.
    assert ">8</text>" in svg and ">6</text>" in svg and ">0.5<" not in svg
    assert heights[-1] == pytest.approx(204 * 4 / 8, abs=0.1)


def test_every_colour_keeps_three_to_one_against_white() -> None:
    def luminance(hex_colour: str) -> float:
        channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    for colour in charts.PALETTE:
        assert re.fullmatch(r"#[0-9a-f]{6}", colour)
        assert 1.05 / (luminance(colour) + 0.05) >= 4.5, colour


def test_horizontal_bars_write_each_value() -> None:
    svg = str(
        charts.horizontal_bars(
            "g", "Verdicts", "d", [("allowed", 12, "#047857"), ("no", 0, "#c2410c")]
        )
    )
    ET.fromstring(svg)
    assert ">12</text>" in svg and ">0</text>" in svg
