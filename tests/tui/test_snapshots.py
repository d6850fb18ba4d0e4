"""The look of each screen, pinned as SVG snapshots (pytest-textual-snapshot) with seeded data and a fixed
clock. After an intended change of look: pytest tests/tui/test_snapshots.py --snapshot-update, then review
the SVGs."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from tui_currents import catalog, config
from tui_currents.tui.widgets.event_tree import Branch, EventTree

from .helpers import make_app, ready, write_connectors

pytestmark = pytest.mark.timeout(60)


def settle(*keys: str):
    async def run_before(pilot) -> None:
        await ready(pilot)
        for key in keys:
            await pilot.press(key)
            await pilot.pause(0.05)
            await pilot.app.workers.wait_for_complete()
        await pilot.pause(0.3)
        await pilot.app.workers.wait_for_complete()
        await pilot.wait_for_scheduled_animations()
        pilot.app.clear_notifications()
        # A focused input's cursor blinks on a timer: hold it on, so the picture does not depend on when
        # the screenshot falls (a busy machine caught it off).
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False
        await pilot.pause(0.05)

    return run_before


def test_connectors(snap_compare, seeded):
    assert snap_compare(make_app(seeded.home), terminal_size=(80, 24), run_before=settle())


def test_connectors_empty_home(snap_compare, home):
    assert snap_compare(make_app(home), terminal_size=(80, 24), run_before=settle())


def test_editor_refusing_overlap(snap_compare, seeded):
    # "SMS to EU" asks for Email too, which Production already forwards from the same workspace.
    async def run_before(pilot) -> None:
        await settle("down", "e")(pilot)
        tree = pilot.app.screen.query_one(EventTree)
        tree.focus()
        tree.move_cursor(
            next(
                n for n in tree._walk_nodes() if isinstance(n.data, Branch) and n.data.key == "Messages/Email"
            )
        )
        await pilot.press("space", "ctrl+s")
        await pilot.pause(0.3)

    assert snap_compare(make_app(seeded.home), terminal_size=(80, 24), run_before=run_before)


def test_tail(snap_compare, seeded):
    assert snap_compare(make_app(seeded.home), terminal_size=(100, 32), run_before=settle("t"))


def test_tail_at_80x24(snap_compare, seeded):
    assert snap_compare(make_app(seeded.home), terminal_size=(80, 24), run_before=settle("t"))


def test_new_connector_at_80x24(snap_compare, seeded):
    assert snap_compare(make_app(seeded.home), terminal_size=(80, 24), run_before=settle("n"))


def test_health(snap_compare, seeded):
    assert snap_compare(make_app(seeded.home), terminal_size=(80, 24), run_before=settle("h"))


def test_dead_letters(snap_compare, seeded):
    assert snap_compare(make_app(seeded.home), terminal_size=(80, 24), run_before=settle("x"))


def test_help(snap_compare, seeded):
    assert snap_compare(make_app(seeded.home), terminal_size=(80, 24), run_before=settle("f1"))


def test_terminal_colours_theme(snap_compare, home, monkeypatch):
    write_connectors(home, monkeypatch)
    cfg = config.load(home)
    cfg.ui.theme = "currents-terminal"
    config.save(home, cfg)
    assert snap_compare(make_app(home), terminal_size=(80, 24), run_before=settle())


def test_editor_types_beyond_braze_connector(snap_compare, seeded):
    # The extended branch open under its own label, off by default.
    async def run_before(pilot) -> None:
        await settle("down", "e")(pilot)
        tree = pilot.app.screen.query_one(EventTree)
        tree.focus()
        beyond = next(
            n for n in tree._walk_nodes() if isinstance(n.data, Branch) and n.data.key == catalog.EXTENDED
        )
        tree.move_cursor(beyond)
        await pilot.press("enter")
        await pilot.pause(0.2)
        tree.scroll_to(y=beyond.line, animate=False)  # the branch's label at the top, its groups below
        await pilot.pause(0.3)

    assert snap_compare(make_app(seeded.home), terminal_size=(100, 32), run_before=run_before)


def test_editor_type_never_sent_shows_why(snap_compare, seeded):
    # Filtered to the user-deletion request: n/a, and what to do instead.
    async def run_before(pilot) -> None:
        await settle("down", "e")(pilot)
        tree = pilot.app.screen.query_one(EventTree)
        tree.focus()
        await pilot.press("slash", *"Delete", "enter")
        await pilot.pause(0.3)

    assert snap_compare(make_app(seeded.home), terminal_size=(160, 32), run_before=run_before)
