"""A throughput chart a person reads in one glance: bars of events/s over a time window (the last minute or
the last hour), delivered and failed in their own colours (failed stacked on top), with a labelled scale
(events/s, its maximum and zero) and a time axis ("-60 s" ... "now")."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.style import Style
from rich.text import Text

# (label, seconds covered, bucket seconds): the windows the health screen switches between.
WINDOWS = (("last minute", 60, 1), ("last hour", 3600, 60))
BLOCKS = " ▁▂▃▄▅▆▇█"
AXIS_WIDTH = 7  # "12.3k ┤"


def scale_label(value: float) -> str:
    """A short events/s figure for the axis: 0, 4.5, 202, 12.3k."""
    if value <= 0:
        return "0"
    if value < 10:
        return f"{value:.1f}"
    if value < 10_000:
        return f"{value:.0f}"
    return f"{value / 1000:.1f}k"


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _resample(values: Sequence[float], width: int) -> list[float]:
    """`values` squeezed or stretched to `width` columns (a column takes the mean of its values)."""
    if not values or width <= 0:
        return [0.0] * max(width, 0)
    out = []
    for column in range(width):
        lo = column * len(values) // width
        hi = max((column + 1) * len(values) // width, lo + 1)
        chunk = values[lo:hi]
        out.append(sum(chunk) / len(chunk))
    return out


def render_chart(
    delivered: Sequence[float],
    failed: Sequence[float],
    *,
    width: int,
    height: int = 3,
    window: str = "last minute",
    seconds: int = 60,
    delivered_style: Style | str = "",
    failed_style: Style | str = "",
    axis_style: Style | str = "",
) -> Text:
    """The chart as text: `height` rows of bars, then the time axis and a legend line."""
    columns = max(width - AXIS_WIDTH, 8)
    ok = _resample(delivered, columns)
    bad = _resample(failed, columns)
    top = _nice_max(max((a + b for a, b in zip(ok, bad, strict=True)), default=0.0))
    levels = height * 8
    text = Text(no_wrap=True, overflow="crop")
    for row in range(height):
        floor = (height - 1 - row) * 8  # eighths below this row
        label = scale_label(top) if row == 0 else ("0" if row == height - 1 else "")
        text.append(f"{label:>5} ┤", style=axis_style)
        for a, b in zip(ok, bad, strict=True):
            good_eighths = round(a / top * levels)
            all_eighths = round((a + b) / top * levels)
            if b > 0 and all_eighths == good_eighths:
                all_eighths += 1  # a failure is never too small to see
            filled = min(max(all_eighths - floor, 0), 8)
            # Failed events sit on top of the delivered ones: a cell reaching into them is failed's colour.
            style = (
                failed_style
                if filled and all_eighths > good_eighths and all_eighths <= floor + 8
                else (failed_style if filled and good_eighths <= floor else delivered_style)
            )
            text.append(BLOCKS[filled], style=style)
        text.append("\n")
    unit = "s" if seconds <= 60 else "min"
    start = f"-{seconds if unit == 's' else seconds // 60} {unit}"
    axis = start + "now".rjust(max(columns - len(start), 3))
    text.append(" " * AXIS_WIDTH + axis + "\n", style=axis_style)
    text.append(" " * (AXIS_WIDTH - 6) + "events/s, " + window + " · ", style=axis_style)
    text.append("█ delivered", style=delivered_style)
    text.append("  ", style=axis_style)
    text.append("█ failed", style=failed_style)
    return text
