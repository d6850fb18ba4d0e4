"""In the demo the screens say where things go: the top bar names the demo home, and the editor says that
a connector delivers only to the local sandbox whatever region is chosen."""

from __future__ import annotations

import pytest

from .helpers import editor_open, make_app, ready

pytestmark = pytest.mark.timeout(60)


async def test_the_demo_names_its_home_and_the_editor_its_only_destination(home):
    app = make_app(home, demo=True)
    async with app.run_test(size=(160, 40)) as pilot:
        await ready(pilot)
        line = str(app.screen.query_one("#demo-line").render())
        assert "DEMO: nothing leaves this machine" in line and str(home.root.name) in line
        await pilot.press("n")
        await editor_open(pilot)
        await pilot.pause(0.1)
        note = str(app.screen.query_one("#demo-destination").render())
        assert "only to the local sandbox" in note and "keyring" in note


async def test_outside_the_demo_the_editor_has_no_demo_note(home):
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("n")
        await editor_open(pilot)
        await pilot.pause(0.1)
        assert not app.screen.query("#demo-destination")
