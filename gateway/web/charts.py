"""A bar chart as plain geometry for an inline SVG (no script, no CDN): one bar per day. The scale is
worked out in Decimal so the axis reads 0.000005, not 4.9999999999999996e-06."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

WIDTH, HEIGHT = 1100, 230
LEFT, RIGHT, TOP, BOTTOM = 96, 12, 12, 28


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


def nice_ceiling(v: Decimal, integer: bool = False) -> Decimal:
    """The smallest of 1, 2, 2.5, 5 × 10^k that is ≥ v (whole and even for counts; 1 for nothing)."""
    if v <= 0:
        return Decimal(2) if integer else Decimal(1)
    exp = math.floor(v.log10())
    for m in (1, 2, 2.5, 5, 10):
        c = Decimal(str(m)).scaleb(exp)
        if c >= v:
            break
    if integer:
        c = max(Decimal(2), c.to_integral_value(rounding="ROUND_CEILING"))
        c += c % 2
    return c.normalize()


def bar_chart(days: list[dict[str, Any]], field: str, fmt: Callable[[Any], str], integer: bool = False) -> Chart:
    """`days`: the /v1/usage period days; `field`: which number to draw; `fmt`: how to label it."""
    values = [Decimal(str(d[field] or 0)) for d in days]
    top = nice_ceiling(max(values, default=Decimal(0)), integer)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(len(days), 1)
    step = plot_w / n
    gap = min(step * 0.3, 8)
    bars = []
    for i, (d, v) in enumerate(zip(days, values, strict=True)):
        h = 0.0 if v <= 0 else max(plot_h * float(v / top), 1.5)
        bars.append(Bar(round(LEFT + i * step + gap / 2, 2), round(TOP + plot_h - h, 2), round(step - gap, 2),
                        round(h, 2), d["date"], fmt(d[field])))
    ticks = [Tick(round(TOP + plot_h * (1 - f), 2), fmt((top * Decimal(str(f))).normalize()))
             for f in (0, 0.5, 1)]
    every = max(1, math.ceil(n / 12))
    xlabels = [XLabel(round(LEFT + i * step + step / 2, 2), d["date"][5:]) for i, d in enumerate(days)
               if i % every == 0]
    return Chart(WIDTH, HEIGHT, bars, ticks, xlabels, TOP + plot_h, LEFT, WIDTH - RIGHT)
