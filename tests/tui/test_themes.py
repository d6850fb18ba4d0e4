"""Themes as data files: the bundled three, a user's own, a broken one reported once, [ui] theme."""

from __future__ import annotations

import pytest

from tui_currents import config
from tui_currents.tui import themes
from tui_currents.tui.themes import DEFAULT_THEME, load_themes, theme_from_toml

from .helpers import make_app, ready

pytestmark = pytest.mark.timeout(60)

GOOD = """
name = "my-night"
dark = true
[colors]
primary = "#336699"
background = "#101010"
"""


def test_the_bundled_themes_are_a_dark_default_a_light_one_and_a_terminal_one():
    found, problems = load_themes([themes.bundled_themes_dir()])
    assert problems == []
    assert {"currents-dark", "currents-light", "currents-terminal"} <= set(found)
    assert DEFAULT_THEME == "currents-dark" and found["currents-dark"].dark
    assert not found["currents-light"].dark
    terminal = found["currents-terminal"]
    assert terminal.ansi
    assert terminal.primary.startswith("ansi_") and terminal.background == "ansi_default"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("name = 'x'\n[colors]\nprimary = 'not-a-colour'\n", "not a colour"),
        ("name = 'x'\n[colors]\nsecondary = '#ffffff'\n", "at least primary"),
        ("[colors]\nprimary = '#ffffff'\n", "needs a name"),
        (
            "name = 'x'\n[colors]\nprimary = '#fff'\nshiny = '#000'\n",
            "unknown colour names in [colors]: shiny",
        ),
        ("name = 'x'\ndark = 'yes'\n[colors]\nprimary = '#fff'\n", "dark must be true or false"),
        ("name = 'x\n", "not valid TOML"),
    ],
)
def test_a_broken_theme_file_says_what_is_wrong(tmp_path, text, reason):
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(themes.ThemeFileError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        theme_from_toml(path)


async def test_user_themes_load_and_a_broken_one_is_reported_once(home):
    (home.themes_dir / "night.toml").write_text(GOOD)
    (home.themes_dir / "zz-broken.toml").write_text("name = 'oops'\n[colors]\nprimary = 'nope'\n")
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert "my-night" in app.available_themes
        assert "my-night" in app.our_themes
        assert app.theme == DEFAULT_THEME  # the broken file changes nothing
        about = [n for n in app._notifications if n.title == "Themes"]
        assert len(about) == 1
        assert "zz-broken.toml" in about[0].message and "nope" in about[0].message


async def test_the_theme_named_in_the_config_is_used_and_an_unknown_one_falls_back(home):
    (home.themes_dir / "night.toml").write_text(GOOD)
    cfg = config.load(home)
    cfg.ui.theme = "my-night"
    config.save(home, cfg)
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert app.theme == "my-night"

    cfg.ui.theme = "no-such-theme"
    config.save(home, cfg)
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert app.theme == DEFAULT_THEME
        assert any("no-such-theme" in n.message for n in app._notifications)


async def test_choosing_a_theme_from_the_palette_applies_and_remembers_it(home):
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause(0.1)
        await pilot.press(*"currents-light")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert app.theme == "currents-light"
    assert config.load(home).ui.theme == "currents-light"


# The screens with every kind of widget the app uses: table, tail, sparklines, the editor's form and tree.
SCREEN_KEYS = ([], ["t"], ["escape", "h"], ["escape", "n"])


async def test_every_screen_draws_in_the_dark_and_light_themes(seeded):
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        for theme in ("currents-dark", "currents-light"):  # the terminal one: below
            app.set_theme(theme, remember=False)
            for keys in SCREEN_KEYS:
                await pilot.press(*keys)
                await pilot.pause(0.1)
                await app.workers.wait_for_complete()
                assert app.screen._compositor.render_strips()  # raises on a stylesheet the theme breaks
            app.show_home()
            await pilot.pause(0.1)
            assert app.theme == theme


async def test_the_terminal_theme_uses_only_the_16_terminal_colours(seeded):
    cfg = config.load(seeded.home)
    cfg.ui.theme = "currents-terminal"
    config.save(seeded.home, cfg)
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert app.native_ansi_color
        for keys in SCREEN_KEYS:
            await pilot.press(*keys)
            await pilot.pause(0.2)
            await app.workers.wait_for_complete()
            off_palette = set()
            for strip in app.screen._compositor.render_strips():
                for segment in strip:
                    for color in (segment.style.color, segment.style.bgcolor) if segment.style else ():
                        if color is not None and not (
                            color.is_default or (color.number is not None and color.number < 16)
                        ):
                            off_palette.add(str(color))
            assert not off_palette, (
                f"{type(app.screen).__name__} uses colours outside the terminal's 16: {off_palette}"
            )
