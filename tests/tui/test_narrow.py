"""At 80x24: columns give way by priority, states keep short unambiguous forms, event names keep their
distinguishing end, a dead letter's reason is read whole, and the footer always shows help and quit."""

from __future__ import annotations

import os
import time

import pytest

from tui_currents.control import Control
from tui_currents.store import ConnectorState, Store
from tui_currents.tui.screens.connectors import visible_columns
from tui_currents.tui.widgets.tail_view import TailLine, TailView

from .helpers import FIXED_NOW, make_app, ready
from .test_tail_view import TailApp

pytestmark = pytest.mark.timeout(90)
SCREENS = {"connectors": [], "tail": ["t"], "health": ["h"], "dead letters": ["x"], "editor": ["n"]}


def screen_lines(app) -> list[str]:
    return ["".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips()]


async def test_the_footer_shows_help_and_quit_on_every_screen(seeded):
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        for name, keys in SCREENS.items():
            app.show_home()
            await pilot.pause(0.1)
            await pilot.press(*keys)
            await pilot.pause(0.3)
            footer = screen_lines(app)[-1]
            assert "Help" in footer and "Quit" in footer, f"{name}: {footer!r}"


def test_columns_give_way_by_priority():
    assert visible_columns(160)[-1] == "error" and "workspace" in visible_columns(160)
    narrow = visible_columns(80)
    for kept in ("name", "state", "backlog", "dead", "error"):
        assert kept in narrow
    assert "workspace" not in narrow  # shown in the detail panel below


async def test_at_80_columns_states_and_last_error_read(seeded):
    home = seeded.home
    with Store(home.store_file) as store:
        store.set_state(
            "Production",
            ConnectorState(
                state="credentials rejected",
                since=FIXED_NOW - 5,
                last_error="HTTP 401 Unauthorized",
                last_error_at=FIXED_NOW - 5,
            ),
        )
    service = Control(home.store_file)  # a live service, so stored states are current
    service.beat(pid=os.getpid(), started_at=time.time(), receiver=None, demo=False)
    try:
        app = make_app(home)
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(pilot)
            lines = screen_lines(app)
            assert "Last error" in lines[1]
            row = next(line for line in lines if line.startswith(" Production"))
            assert "✖ key rejected" in row and "HTTP 401" in row
            assert "…" not in row.split("✖")[1].split("HTTP")[0]  # the state is whole
    finally:
        service.close()


async def test_event_names_keep_their_distinguishing_end():
    lines = [
        TailLine(
            seq=i,
            at=FIXED_NOW,
            connector="Production",
            event_type=t,
            segment_event=name,
            user="u-1",
            fate="queued",
            message_id=f"m{i}",
        )  # fmt: skip
        for i, (t, name) in enumerate(
            [
                ("users.messages.pushnotification.Send", "Push Notification Sent"),
                ("users.messages.pushnotification.Open", "Push Notification Tapped"),
                ("users.messages.pushnotification.Bounce", "Push Notification Bounced"),
            ]
        )
    ]
    app = TailApp(show_connector=True)
    async with app.run_test(size=(80, 10)) as pilot:
        view = app.query_one(TailView)
        view.append(lines)
        await pilot.pause(0.1)
        rows = ["".join(s.text for s in view.render_line(y)) for y in range(1, 4)]
    for row, end in zip(rows, ("Sent", "Tapped", "Bounced"), strict=True):
        assert f" {end} " in row, row


async def test_a_dead_letters_reason_is_read_whole(seeded):
    reason = (
        "Segment answered 400: the property `campaign_name` is longer than the 8,000 characters allowed for "
        "one field; shorten it with a field transform (redact or hash) and retry this dead letter"
    )
    with Store(seeded.home.store_file) as store:
        rows = store.lease("SMS to EU", max_messages=1, max_bytes=10**9, lease_seconds=30)
        store.dead_letter("SMS to EU", [rows[0].seq], reason=reason, now=FIXED_NOW)
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("x")
        await pilot.pause(0.5)
        text = " ".join(" ".join(line.split()) for line in screen_lines(app))
        assert " ".join(reason.split()) in text
