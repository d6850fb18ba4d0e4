"""The connectors screen by keyboard: empty home, rows from the real store, pause, delete, help, keymap,
palette, and the views it opens."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable

from tui_currents import config
from tui_currents.store import Store
from tui_currents.tui.screens.connectors import ConnectorsScreen
from tui_currents.tui.screens.dead_letters import DeadLettersScreen
from tui_currents.tui.screens.health import HealthScreen
from tui_currents.tui.screens.modals import ConfirmScreen, HelpScreen
from tui_currents.tui.screens.tail import TailScreen

from .helpers import make_app, ready, wait_until

pytestmark = pytest.mark.timeout(60)


def table_rows(app) -> dict[str, dict[str, str]]:
    """Each row's cells by column key (which columns show depends on the width)."""
    table = app.screen.query_one(DataTable)
    columns = [c.key.value for c in table.ordered_columns]
    return {
        key.value: dict(zip(columns, (str(c) for c in table.get_row(key)), strict=True)) for key in table.rows
    }


async def test_an_empty_home_explains_the_first_step(home):
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        empty = app.screen.query_one("#empty")
        assert empty.display
        text = str(empty.render())
        assert "No connectors yet" in text and "Press n" in text
        assert not app.screen.query_one(DataTable).display
        # The mode is said at the top: this app runs no engine here.
        assert "engine not running" in str(app.screen.query_one("#mode-line").render())


async def test_every_connector_shows_its_figures_from_the_store(seeded):
    with Store(seeded.home.store_file, readonly=True) as store:
        backlog = {n: store.backlog(n) for n in ("Production", "SMS to EU")}
        delivered = {n: store.counter_totals(n).get("delivered", 0) for n in ("Production", "SMS to EU")}
    app = make_app(seeded.home)
    async with app.run_test(size=(120, 24)) as pilot:
        await ready(pilot)
        rows = table_rows(app)
        assert list(rows) == ["Production", "SMS to EU", "Brand archive"]
        production = rows["Production"]
        assert (production["workspace"], production["destination"]) == ("marketing", "US")
        assert production["backlog"] == str(backlog["Production"].messages)
        assert production["delivered"] == str(delivered["Production"])
        assert production["dead"] == str(backlog["Production"].dead_letters) == "3"
        assert "HTTP 503" in production["error"]
        assert rows["SMS to EU"]["destination"] == "EU"
        assert rows["Brand archive"]["destination"] == "custom" and "paused" in rows["Brand archive"]["state"]
        # No engine runs: the stored "backing off" is not passed off as current.
        assert "not running" in production["state"]
        detail = str(app.screen.query_one("#connector-detail").render())
        assert "last known: backing off" in detail and "Last error: HTTP 503" in detail


async def test_pause_and_resume_change_the_config_file(seeded):
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert not config.load(seeded.home).connector("Production").paused
        await pilot.press("p")
        await wait_until(pilot, lambda: config.load(seeded.home).connector("Production").paused)
        await wait_until(pilot, lambda: "paused" in table_rows(app)["Production"]["state"])
        await pilot.press("p")
        await wait_until(pilot, lambda: not config.load(seeded.home).connector("Production").paused)


async def test_delete_asks_first_and_no_keeps_the_connector(seeded):
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("down", "d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "SMS to EU" in str(app.screen.query_one("#question").render())
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, ConnectorsScreen))
        assert [c.name for c in config.load(seeded.home).connectors] == [
            "Production",
            "SMS to EU",
            "Brand archive",
        ]
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: len(config.load(seeded.home).connectors) == 2)
        assert [c.name for c in config.load(seeded.home).connectors] == ["Production", "Brand archive"]
        await wait_until(pilot, lambda: list(table_rows(app)) == ["Production", "Brand archive"])


async def test_help_lists_the_keys_of_the_screen_with_their_ids(seeded):
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("f1")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        keys = {k.binding_id: k.key for k in app.screen.keys}
        assert keys["connectors.new"] == "n"
        assert keys["connectors.pause"] == "p"
        assert keys["app.help"].startswith("f1")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, ConnectorsScreen))
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))


async def test_keys_can_be_remapped_from_the_config_file(seeded):
    cfg = config.load(seeded.home)
    cfg.ui.keymap = {"connectors.tail": "ctrl+t", "tail_screen.pause": "z", "no.such.binding": "z"}
    config.save(seeded.home, cfg)
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        keys_notes = [n.message for n in app._notifications if n.title == "Keys"]
        assert len(keys_notes) == 1
        assert "no.such.binding" in keys_notes[0] and "tail_screen.pause" not in keys_notes[0]
        await pilot.press("t")  # no longer bound
        await pilot.pause(0.1)
        assert isinstance(app.screen, ConnectorsScreen)
        await pilot.press("ctrl+t")
        await wait_until(pilot, lambda: isinstance(app.screen, TailScreen))
        assert app.screen.connector == "Production"
        await pilot.press("z")  # a key of a screen opened later, remapped too
        assert app.screen.paused


async def test_the_help_names_the_view_it_was_opened_on(seeded):
    from tui_currents.tui.app import help_sections

    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, TailScreen))
        await pilot.press("f1")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert app.screen.title_text == "Tail of Production"
        assert app.screen.intro == help_sections()["tail"]


async def test_views_open_by_key_and_close_with_escape(seeded):
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        for key, screen_type in (("h", HealthScreen), ("x", DeadLettersScreen), ("T", TailScreen)):
            await pilot.press(key)
            await wait_until(pilot, lambda screen_type=screen_type: isinstance(app.screen, screen_type))
            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, ConnectorsScreen))


async def test_the_command_palette_names_actions_by_area(seeded):
    from tui_currents.tui.commands import app_commands

    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        names = {c.name for c in app_commands(app)}
        assert {"connector: new", "view: health", "view: dead letters", "dead letters: export"} <= names
        assert {
            "connector: pause Production",
            "connector: resume Brand archive",
            "view: tail SMS to EU",
        } <= names
        assert {"theme: currents-dark", "theme: currents-light", "theme: currents-terminal"} <= names
        await pilot.press("ctrl+p")
        await pilot.pause(0.1)
        await pilot.press(*"health")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, HealthScreen))


async def test_test_events_without_an_engine_say_how_to_get_one(seeded):
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("s")
        await wait_until(pilot, lambda: any(n.title == "Test events" for n in app._notifications))
        note = next(n for n in app._notifications if n.title == "Test events")
        assert "No engine is running" in note.message and "tui-currents run" in note.message


async def test_q_quits_and_stops_cleanly(seeded):
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("q")
        await wait_until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 0


async def test_delete_names_the_queued_events_and_moves_them_to_the_dead_letters(seeded):
    with Store(seeded.home.store_file, readonly=True) as store:
        queued = store.backlog("SMS to EU").messages
    assert queued > 0
    app = make_app(seeded.home)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("down", "d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        detail = str(app.screen.query_one("#detail").render())
        assert f"{queued:,} events are still queued" in detail and "connector removed" in detail
        assert app.screen.yes_label == f"Delete, dead-letter {queued:,}"
        await pilot.press("y")
        await wait_until(
            pilot, lambda: "SMS to EU" not in [c.name for c in config.load(seeded.home).connectors]
        )
    with Store(seeded.home.store_file, readonly=True) as store:
        assert store.backlog("SMS to EU").messages == 0
        letters = store.dead_letters("SMS to EU", limit=10_000)
    assert len(letters) == queued and {d.reason for d in letters} == {"connector removed"}
