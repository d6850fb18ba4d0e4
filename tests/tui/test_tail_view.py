"""The tail view on its own: a bounded ring, follow vs scrolled up, fate updates, filters, speed."""

from __future__ import annotations

import time

import pytest
from textual.app import App, ComposeResult

from tui_currents.tui.widgets.tail_view import TailFilter, TailLine, TailView

pytestmark = pytest.mark.timeout(60)

START = 1_767_225_600.0
TYPES = ("users.messages.email.Send", "users.messages.pushnotification.Open", "users.canvas.Entry")
SEGMENT = {
    "users.messages.email.Send": "Email Sent",
    "users.messages.pushnotification.Open": "Push Notification Tapped",
    "users.canvas.Entry": "Canvas Entered",
}


def line(
    seq: int, *, fate: str = "queued", event_type: str | None = None, connector: str = "Production"
) -> TailLine:
    kind = event_type or TYPES[seq % len(TYPES)]
    return TailLine(
        seq=seq, at=START + seq / 1000, connector=connector, event_type=kind, segment_event=SEGMENT[kind],
        user=f"user-{seq % 97}", fate=fate, message_id=f"m-{seq}",
    )  # fmt: skip


def update(seq: int, fate: str, *, of: int, reason: str | None = None) -> TailLine:
    return TailLine(
        seq=seq, at=START + seq / 1000, connector="Production", event_type=TYPES[of % len(TYPES)],
        segment_event=None, user=None, fate=fate, reason=reason, message_id=f"m-{of}", update=True,
    )  # fmt: skip


class TailApp(App):
    def __init__(self, **kwargs):
        super().__init__()
        self.kwargs = kwargs
        self.chosen: list[TailLine] = []

    def compose(self) -> ComposeResult:
        yield TailView(**self.kwargs)

    def on_mount(self) -> None:
        self.query_one(TailView).focus()

    def on_tail_view_chosen(self, message: TailView.Chosen) -> None:
        self.chosen.append(message.line)


def shown_text(view: TailView) -> list[str]:
    """What the view's rows say on screen (header first)."""
    return ["".join(seg.text for seg in view.render_line(y)) for y in range(view.size.height)]


async def test_keeps_a_bounded_ring_and_follows_the_newest():
    app = TailApp(max_lines=500)
    async with app.run_test(size=(100, 20)) as pilot:
        view = app.query_one(TailView)
        for start in range(0, 3000, 1000):
            view.append([line(s) for s in range(start + 1, start + 1001)])
            await pilot.pause()
        assert len(view.lines) == 500
        assert view.lines[0].seq == 2501 and view.lines[-1].seq == 3000
        assert view.following
        assert "user-" in shown_text(view)[-1] and shown_text(view)[-1].count("queued") == 1
        last = view.lines[-1]
        assert last.user in shown_text(view)[-1]


async def test_scrolling_up_stops_following_and_the_lines_stay_put():
    app = TailApp(max_lines=1000)
    async with app.run_test(size=(100, 12)) as pilot:
        view = app.query_one(TailView)
        view.append([line(s) for s in range(1, 801)])
        await pilot.pause()
        await pilot.press("up", "up", "up")
        assert not view.following
        assert view.cursor_line.seq == 798
        before = shown_text(view)
        view.append([line(s) for s in range(801, 1201)])  # 200 old lines leave the ring
        await pilot.pause()
        assert shown_text(view) == before  # what the user reads does not jump
        assert view.cursor_line.seq == 798
        await pilot.press("end")
        assert view.following and view.cursor_line is None
        assert "user-" in shown_text(view)[-1]
        assert view.lines[-1].user in shown_text(view)[-1]


async def test_a_later_fate_updates_its_line_in_place():
    app = TailApp()
    async with app.run_test(size=(140, 12)) as pilot:
        view = app.query_one(TailView)
        view.append([line(1), line(2)])
        view.append(
            [update(3, "delivered", of=1), update(4, "dead letter", of=2, reason="HTTP 400: bad timestamp")]
        )
        await pilot.pause()
        assert [(v.seq, v.fate) for v in view.lines] == [(1, "delivered"), (2, "dead letter")]
        rows = shown_text(view)
        assert "delivered" in rows[1]
        assert "dead letter: HTTP 400" in rows[2]
        # An update for a line no longer held changes nothing and adds no line.
        view.append([update(5, "delivered", of=999)])
        assert len(view.lines) == 2


async def test_filters_by_type_fate_and_text_and_a_fate_change_moves_a_line_in():
    app = TailApp()
    async with app.run_test(size=(100, 12)) as pilot:
        view = app.query_one(TailView)
        view.append([line(s) for s in range(1, 31)])
        view.set_filter(TailFilter(event_types=frozenset({"users.canvas.Entry"})))
        assert {v.event_type for v in view.lines} == {"users.canvas.Entry"}
        assert len(view.lines) == 10
        view.set_filter(TailFilter(text="user-5"))
        assert {v.user for v in view.lines} == {"user-5"}
        view.set_filter(TailFilter(fates=frozenset({"delivered"})))
        assert view.lines == []
        view.append([update(31, "delivered", of=7)])  # line 7 is delivered now: it passes the filter
        assert [v.seq for v in view.lines] == [7]
        view.append([line(32, fate="delivered")])
        assert [v.seq for v in view.lines] == [7, 32]
        view.set_filter(TailFilter())
        assert len(view.lines) == 31  # 30 lines and line 32; an update is not a line
        await pilot.pause()


async def test_enter_chooses_the_line_under_the_cursor():
    app = TailApp()
    async with app.run_test(size=(100, 12)) as pilot:
        view = app.query_one(TailView)
        view.append([line(s) for s in range(1, 11)])
        await pilot.press("up", "up", "enter")
        await pilot.pause()
        assert [c.seq for c in app.chosen] == [9]


async def test_ten_thousand_events_a_second_stay_cheap():
    # 10 polls a second of 1,000 rows each, for two seconds' worth, each followed by a repaint.
    app = TailApp(max_lines=5000)
    async with app.run_test(size=(120, 40)) as pilot:
        view = app.query_one(TailView)
        started = time.perf_counter()
        for poll in range(20):
            base = poll * 1000
            view.append([line(s) for s in range(base + 1, base + 1001)])
            await pilot.pause()
        elapsed = time.perf_counter() - started
        assert len(view.lines) == 5000 and view.received == 20_000
        # The budget is 2 s of wall time for 2 s of traffic; the view needs a small part of it.
        assert elapsed < 2.0, f"20,000 lines took {elapsed:.2f} s to take in and draw"
