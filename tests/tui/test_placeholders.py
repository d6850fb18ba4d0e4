"""Placeholders read as hints ("e.g. ...") and stay visible in a 16-colour terminal (TERM=xterm), where a
focused input's placeholder used to fall on the same colour as its background."""

from __future__ import annotations

import pytest
from rich.color import ColorSystem
from textual.widgets import Input

from .helpers import editor_open, make_app, ready

pytestmark = pytest.mark.timeout(60)


def placeholder_colours(app, text: str) -> list[tuple[int, int]]:
    """The 16-colour (fg, bg) numbers of each rendered segment of `text`."""
    found = []
    for strip in app.screen._compositor.render_strips():
        for segment in strip:
            if segment.text.strip() and segment.text.strip() in text and segment.style:
                fg, bg = segment.style.color, segment.style.bgcolor
                if fg is not None and bg is not None:
                    found.append(
                        (fg.downgrade(ColorSystem.STANDARD).number, bg.downgrade(ColorSystem.STANDARD).number)
                    )
    return found


@pytest.mark.parametrize("theme", ["currents-dark", "currents-light"])
async def test_the_focused_inputs_placeholder_shows_in_16_colours(home, theme):
    app = make_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        app.set_theme(theme, remember=False)
        await pilot.press("n")
        await editor_open(pilot)
        email = app.screen.query_one("#contact_email", Input)
        assert email.placeholder == "e.g. ops@example.com"
        email.focus()
        await pilot.pause(0.2)
        colours = placeholder_colours(app, email.placeholder)
        assert colours, "the placeholder was not drawn"
        assert all(fg != bg for fg, bg in colours), colours


async def test_placeholders_that_look_like_values_say_e_g(home):
    app = make_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("n")
        await editor_open(pilot)
        for field in ("name", "contact_email", "endpoint"):
            assert app.screen.query_one(f"#{field}", Input).placeholder.startswith("e.g. ")
