"""esc in the editor: with no change it closes at once; with a change the discard dialog is drawn and has
the focus (keys never go to a dialog that is not on screen)."""

from __future__ import annotations

import pytest

from tui_currents.tui.screens.connectors import ConnectorsScreen
from tui_currents.tui.screens.modals import ConfirmScreen

from .helpers import make_app, ready, wait_until
from .test_editor import open_editor, type_into

pytestmark = pytest.mark.timeout(60)


def rendered(app) -> str:
    return "\n".join("".join(s.text for s in strip) for strip in app.screen._compositor.render_strips())


@pytest.mark.parametrize("key", ["n", "e"])
async def test_escape_with_no_change_closes_at_once(seeded, key):
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await open_editor(pilot, key)
        await pilot.pause(0.3)  # the live check has run
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, ConnectorsScreen))


async def test_typing_a_change_back_is_no_change(seeded):
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        screen = await open_editor(pilot, "e")
        await type_into(pilot, screen, "contact_email", "")
        screen.query_one("#contact_email").value = "ops@example.com"  # as it was
        await pilot.press("end", "x")
        assert screen.changed
        await pilot.press("backspace")
        await pilot.pause(0.1)
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, ConnectorsScreen))


async def test_the_discard_dialog_is_drawn_and_focused(seeded):
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        screen = await open_editor(pilot, "e")
        await type_into(pilot, screen, "contact_email", "x")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.1)
        dialog = app.screen.query_one("#dialog")
        assert dialog.display and dialog.region.area > 0
        assert "Discard your changes?" in rendered(app)
        assert app.focused is not None and app.focused in dialog.query("Button")
