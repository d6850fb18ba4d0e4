"""Saving a connector (a keyring write of a second or two) shows that it is at work until it is done."""

from __future__ import annotations

import pytest

from tui_currents.secrets import Secrets
from tui_currents.tui.screens.connectors import ConnectorsScreen

from .helpers import make_app, ready, wait_until
from .test_editor import WRITE_KEY, open_editor, select_group, type_into

pytestmark = pytest.mark.timeout(60)


async def test_saving_shows_progress_until_done(home):
    app = make_app(home, secrets=Secrets(home))  # the real encrypted keyring file: a slow write
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        screen = await open_editor(pilot)
        await type_into(pilot, screen, "name", "Production", keys=True)
        await type_into(pilot, screen, "contact_email", "ops@example.com")
        await type_into(pilot, screen, "workspace", "marketing")
        await type_into(pilot, screen, "write_key", WRITE_KEY)
        await select_group(pilot, screen, "Messages/Email")
        form, status = screen.query_one("#editor-form"), screen.query_one("#save-status")
        seen: list[tuple[bool, str]] = []
        # What the form showed at each change of its loading state (the save runs within the key press).
        screen.watch(form, "loading", lambda on: seen.append((on, str(status.render()))), init=False)
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, ConnectorsScreen), timeout=20)
        assert seen and seen[0][0] is True and "Saving" in seen[0][1]


async def test_a_refused_save_gives_the_form_back(home):
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        screen = await open_editor(pilot)
        await pilot.press("ctrl+s")  # nothing filled in
        await wait_until(pilot, lambda: "Not saved" in str(screen.query_one("#save-status").render()))
        assert not screen.query_one("#editor-form").loading
        assert app.screen is screen and app.focused is not None
