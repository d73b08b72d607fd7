"""A bar chart as plain geometry for an inline SVG (no script, no CDN): one bar per day."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT = 760, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 14, 30


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str        # the day, for the tooltip
    value: str        # formatted value, for the tooltip


@dataclass(frozen=True, slots=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True, slots=True)
class XLabel:
    x: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    ticks: list[Tick]
    xlabels: list[XLabel]
    baseline: float
    left: int
    right: int


def nice_ceiling(v: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k that is ≥ v (1 for nothing)."""
    if v <= 0:
        return 1.0
    exp = math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        c = m * 10 ** exp
        if c >= v * (1 - 1e-12):
            return float(c)
    return float(10 ** (exp + 1))


def bar_chart(days: list[dict[str, Any]], field: str, fmt: Any, integer: bool = False) -> Chart:
    """`days`: the /v1/usage period days; `field`: which number to draw; `fmt`: how to label it."""
    values = [float(d[field] or 0) for d in days]
    top = nice_ceiling(max(values, default=0))
    if integer:
        top = max(math.ceil(top), 2)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(len(days), 1)
    step = plot_w / n
    gap = min(step * 0.25, 6)
    bars = []
    for i, (d, v) in enumerate(zip(days, values)):
        h = 0.0 if v <= 0 else max(plot_h * v / top, 1.5)
        bars.append(Bar(round(LEFT + i * step + gap / 2, 2), round(TOP + plot_h - h, 2), round(step - gap, 2),
                        round(h, 2), d["date"], fmt(d[field])))
    ticks = [Tick(round(TOP + plot_h * (1 - f), 2), fmt(top * f)) for f in (0, 0.5, 1)
             if not integer or float(top * f).is_integer()]
    every = max(1, math.ceil(n / 10))
    xlabels = [XLabel(round(LEFT + i * step + step / 2, 2), d["date"][5:]) for i, d in enumerate(days)
               if i % every == 0]
    return Chart(WIDTH, HEIGHT, bars, ticks, xlabels, TOP + plot_h, LEFT, WIDTH - RIGHT)
