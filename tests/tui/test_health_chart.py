"""The health screen reads in one glance: a throughput chart with a labelled scale (events/s) and time axis,
a window switched between the last minute and the last hour, delivered and failed in their own colours,
per connector and in total; and a state that tells the truth while events flow."""

from __future__ import annotations

import os
import time

import pytest
from rich.style import Style

from tui_currents.control import Control
from tui_currents.store import ConnectorState, Store
from tui_currents.tui.models import CounterHistory
from tui_currents.tui.screens.health import HealthScreen
from tui_currents.tui.widgets.throughput import render_chart

from .helpers import FIXED_NOW, make_app, ready, wait_until

pytestmark = pytest.mark.timeout(60)
GOOD, BAD = Style(color="green"), Style(color="red")


def test_rates_come_from_the_counters_over_the_window():
    history = CounterHistory()
    for second in range(121):  # 200 delivered and 5 failed each second, for two minutes
        history.add(1000.0 + second, 200 * second, 5 * second)
    delivered, failed = history.rates(1120.0, 60, 1)
    assert len(delivered) == 60 and all(abs(d - 200) < 1e-6 for d in delivered)
    assert all(abs(f - 5) < 1e-6 for f in failed)
    hourly, _ = history.rates(1120.0, 3600, 60)
    assert len(hourly) == 60 and hourly[:57] == [0.0] * 57 and hourly[-1] > 0  # only the last minutes


def test_the_chart_has_a_scale_a_time_axis_and_two_colours():
    chart = render_chart(
        [200.0] * 60, [0.0] * 50 + [80.0] * 10, width=70, window="last minute", seconds=60,
        delivered_style=GOOD, failed_style=BAD,
    )  # fmt: skip
    lines = chart.plain.splitlines()
    assert lines[0].strip().startswith("500 ┤") and lines[2].strip().startswith("0 ┤")
    assert "-60 s" in lines[3] and lines[3].rstrip().endswith("now")
    assert "events/s, last minute" in lines[4] and "delivered" in lines[4] and "failed" in lines[4]
    colours = {
        span.style for span in chart.spans if chart.plain[span.start : span.end].strip("▁▂▃▄▅▆▇█") == ""
    }
    assert GOOD in colours and BAD in colours
    hour = render_chart([1.0] * 60, [0.0] * 60, width=70, window="last hour", seconds=3600)
    assert "-60 min" in hour.plain and "last hour" in hour.plain


async def test_the_window_switches_and_a_busy_idle_reads_running(seeded):
    home = seeded.home
    with Store(home.store_file) as store:
        store.set_state("SMS to EU", ConnectorState(state="idle", detail="Nothing to send.", since=FIXED_NOW))
    service = Control(home.store_file)
    service.beat(pid=os.getpid(), started_at=time.time(), receiver=None, demo=False)
    try:
        app = make_app(home)
        async with app.run_test(size=(100, 60)) as pilot:
            await ready(pilot)
            await pilot.press("h")
            await wait_until(pilot, lambda: isinstance(app.screen, HealthScreen))
            await pilot.pause(0.5)
            text = "\n".join(
                "".join(s.text for s in strip) for strip in app.screen._compositor.render_strips()
            )
            assert "All connectors" in text and text.count("events/s, last minute") == 4  # total + 3
            sms = next(line for line in text.splitlines() if "SMS to EU" in line)
            assert "● running" in sms and "idle" not in sms  # 11 events wait: not idle
            assert "Nothing to send" not in text
            await pilot.press("w")
            await wait_until(
                pilot, lambda: "events/s, last hour" in str(app.screen.query_one("#total-chart").render())
            )
    finally:
        service.close()
