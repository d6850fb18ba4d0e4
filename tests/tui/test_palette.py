"""The command palette has every action: the editor's own when opened over it; help texts read as
written (no text swallowed as markup)."""

from __future__ import annotations

import pytest

from tui_currents.tui.commands import app_commands
from tui_currents.tui.screens.editor import EditorScreen

from .helpers import editor_open, make_app, ready, wait_until

pytestmark = pytest.mark.timeout(60)


async def test_the_palette_over_the_editor_has_its_actions(seeded):
    app = make_app(seeded.home)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("e")
        await editor_open(pilot)
        editor = app.screen
        names = {c.name: c for c in app_commands(app, editor)}
        for wanted in ("editor: update", "editor: cancel", "editor: select every event type"):
            assert wanted in names
        names["editor: select no event type"].run()
        await pilot.pause(0.1)
        assert "0/51 of" in str(editor.query_one("#event-summary").render())
        # Through the palette itself, as a person does it.
        await pilot.press("ctrl+p")
        await pilot.press(*"editor: cancel")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, EditorScreen) or len(app.screen_stack) > 2)


async def test_theme_help_text_keeps_its_brackets(home):
    from textual.content import Content

    app = make_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        theme = next(c for c in app_commands(app) if c.name.startswith("theme: "))
        assert Content.from_markup(theme.help).plain == "Switch theme (saved in [ui] theme)"
