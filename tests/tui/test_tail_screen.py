"""The tail screen on a real store: rows and fates, filters by fate, type and text, the exact Segment
message in a modal and copied through the terminal, pause."""

from __future__ import annotations

import json

import orjson
import pytest

from tui_currents.store import Store
from tui_currents.tui.screens.modals import MessageScreen
from tui_currents.tui.screens.tail import TailScreen
from tui_currents.tui.widgets.mode_bar import ModeBar
from tui_currents.tui.widgets.tail_view import TailView

from .helpers import make_app, ready, wait_until

pytestmark = pytest.mark.timeout(60)


def stored_rows(home, connector):
    with Store(home.store_file, readonly=True) as store:
        return store.tail(after=0, limit=100_000, connector=connector)


async def open_tail(pilot, key="t") -> TailView:
    await pilot.press(key)
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, TailScreen))
    view = pilot.app.screen.query_one(TailView)
    await wait_until(pilot, lambda: len(view.lines) > 0)
    await pilot.pause(0.1)
    return view


async def test_the_tail_shows_each_event_once_with_its_latest_fate(seeded):
    rows = stored_rows(seeded.home, "Production")
    events = [r for r in rows if not r.update]
    latest = {r.message_id: r.fate for r in rows if r.message_id}
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        view = await open_tail(pilot)
        await wait_until(pilot, lambda: len(view.lines) == len(events))
        assert [line.seq for line in view.lines] == [r.seq for r in events]
        # Filtered events are counted in one line per batch and type, with no messageId.
        assert {line.message_id: line.fate for line in view.lines if line.message_id} == latest
        fates = {line.fate for line in view.lines}
        assert {"delivered", "queued", "dead letter", "not selected"} <= fates
        assert view.following


async def test_filter_by_fate_type_and_text(seeded):
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        view = await open_tail(pilot)
        total = len(view.lines)
        await pilot.press("f")  # delivered
        assert view.lines and {line.fate for line in view.lines} == {"delivered"}
        await pilot.press("f", "f")  # dead letters
        assert len(view.lines) == 3 and all("invalid timestamp" in line.reason for line in view.lines)
        await pilot.press("c")  # clear
        assert len(view.lines) == total
        # y: only the type under the cursor
        await pilot.press("up")
        kind = view.cursor_line.event_type
        await pilot.press("y")
        assert view.lines and {line.event_type for line in view.lines} == {kind}
        await pilot.press("c")
        # /: free text in type, Segment event, user or reason
        user = view.lines[0].user[-6:]
        await pilot.press("slash", *user, "enter")
        assert view.lines and all(user in (line.user or "") for line in view.lines)
        assert "text" in str(app.screen.query_one("#tail-status").render())


async def test_enter_shows_the_exact_segment_message_and_c_copies_it(seeded):
    rows = stored_rows(seeded.home, "Production")
    queued = next(r for r in rows if not r.update and r.message is not None)
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        view = await open_tail(pilot)
        assert view.select(queued.seq)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MessageScreen))
        modal = app.screen
        assert modal.message == orjson.loads(queued.message)
        assert modal.message["type"] == "track" and modal.message["messageId"] == queued.message_id
        await pilot.press("c")
        assert json.loads(app.clipboard) == orjson.loads(queued.message)
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, TailScreen))


async def test_a_filtered_event_says_why_it_has_no_message(seeded):
    rows = stored_rows(seeded.home, "Production")
    skipped = next(r for r in rows if r.fate == "not selected")
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        view = await open_tail(pilot)
        assert view.select(skipped.seq)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MessageScreen))
        assert "Not sent to Segment (not selected" in app.screen.note
        assert app.screen.message["event_type"] == skipped.event_type


async def test_pause_stops_reading_and_resume_catches_up(seeded):
    from tui_currents import config
    from tui_currents.sources.demo import DemoGenerator
    from tui_currents.sources.ingest import Ingestor

    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        view = await open_tail(pilot, "T")
        before = len(view.lines)
        await pilot.press("space")
        assert "PAUSED" in str(app.screen.query_one("#tail-status").render())
        with Store(seeded.home.store_file) as store:
            ingestor = Ingestor(config.load(seeded.home), store)
            newest = store.tail_last_seq()
            ingestor.ingest("marketing", DemoGenerator(seed=99).batch(10), source="test")
            added = store.tail_last_seq() - newest  # a line per event, and one per filtered type
        assert added >= 10
        await pilot.pause(0.3)
        assert len(view.lines) == before
        await pilot.press("space")
        await wait_until(pilot, lambda: len(view.lines) == before + added)


async def test_a_delivered_message_still_shows_its_exact_segment_message(seeded):
    # Each body is stored once, in its outbox segment, which keeps it while the tail shows it.
    with Store(seeded.home.store_file) as store:
        rest = store.lease("Production", max_messages=10_000, max_bytes=10**9, lease_seconds=30)
        store.delivered("Production", [r.seq for r in rest])
    rows = stored_rows(seeded.home, "Production")
    delivered = {r.message_id for r in rows if r.update and r.fate == "delivered"}
    sent = next(r for r in rows if not r.update and r.message_id in delivered)
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        view = await open_tail(pilot)
        assert view.select(sent.seq)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MessageScreen))
        assert app.screen.message == orjson.loads(sent.message)


async def test_new_lines_and_the_status_line_show_without_a_layout_of_the_screen(seeded):
    # Under load the tail polls several times a second, its ring of lines full; a layout of the whole screen
    # after each poll took a large part of the app's loop. The status line's words change, its size never
    # does, nor does the view's once its ring is full.
    from tui_currents import config
    from tui_currents.sources.demo import DemoGenerator
    from tui_currents.sources.ingest import Ingestor

    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await app.push_screen(TailScreen(None, keep=100))
        screen = app.screen
        view = screen.query_one(TailView)
        await wait_until(pilot, lambda: screen.after is not None)  # it has read where to start
        with Store(seeded.home.store_file) as store:
            Ingestor(config.load(seeded.home), store).ingest(
                "marketing", DemoGenerator(seed=99).batch(300), source="test"
            )
        await wait_until(pilot, lambda: len(view.lines) == 100)  # the ring is full
        await pilot.pause(0.3)
        layouts = []
        refresh_layout = screen._refresh_layout

        def counted(*args, **kwargs):
            layouts.append(view.lines[-1].seq)
            return refresh_layout(*args, **kwargs)

        screen._refresh_layout = counted
        status = screen.query_one("#tail-status")
        with Store(seeded.home.store_file) as store:
            ingestor = Ingestor(config.load(seeded.home), store)
            for batch in range(5):
                newest = store.tail_last_seq()
                ingestor.ingest("marketing", DemoGenerator(seed=100 + batch).batch(10), source="test")
                await wait_until(pilot, lambda newest=newest: view.lines[-1].seq > newest)
                await pilot.pause(0.15)  # a frame after the poll
        # The mode bar's periodic redraw (every 2 s) changes words only, too.
        screen.query_one(ModeBar).refresh_mode()
        await pilot.pause(0.15)
        assert "100 lines" in str(status.render()) and view.following
        assert layouts == []
