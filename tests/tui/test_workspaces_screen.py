"""The workspaces view: list, add (a token is generated and shown once), show a token with a copy key,
rotate a token. Tokens live only in the keyring (the real encrypted file here)."""

from __future__ import annotations

import pytest

from tui_currents import config
from tui_currents.secrets import Secrets
from tui_currents.tui.screens.modals import ConfirmScreen
from tui_currents.tui.screens.workspaces import NameScreen, TokenScreen, WorkspacesScreen

from .helpers import make_app, ready, wait_until

pytestmark = pytest.mark.timeout(90)


def table_names(screen) -> list[str]:
    table = screen.query_one("DataTable")
    return [key.value for key in table.rows]


async def test_list_add_show_and_rotate(seeded):
    home = seeded.home
    secrets = Secrets(home)
    app = make_app(home, secrets=secrets)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("w")
        await wait_until(pilot, lambda: isinstance(app.screen, WorkspacesScreen))
        screen = app.screen
        await wait_until(pilot, lambda: table_names(screen) == ["marketing", "eu-brand"])

        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, NameScreen))
        await pilot.press(*"braze-eu", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, TokenScreen), timeout=20)
        shown = str(app.screen.query_one("#token").render())
        assert "braze-eu" in [w.name for w in config.load(home).workspaces]
        assert Secrets(home).get_receiver_token("braze-eu") == shown
        await pilot.press("c")  # copied through the terminal
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is screen)
        await wait_until(pilot, lambda: "braze-eu" in table_names(screen))

        screen.query_one("DataTable").move_cursor(row=table_names(screen).index("braze-eu"))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, TokenScreen), timeout=20)
        assert str(app.screen.query_one("#token").render()) == shown
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is screen)

        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: isinstance(app.screen, TokenScreen), timeout=20)
        rotated = str(app.screen.query_one("#token").render())
        assert rotated != shown and Secrets(home).get_receiver_token("braze-eu") == rotated
