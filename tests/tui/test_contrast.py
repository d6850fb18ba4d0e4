"""Every text on every screen, in every shipped theme that sets its own colours, meets WCAG AA: a contrast
ratio of at least 4.5:1 between the text's colour and what it is drawn on.

The check walks the segments of the rendered screen (what the terminal is sent), not the theme file's main
colours, so derived colours, component styles and the cursor row are covered too. Line-drawing glyphs
(borders, guides, sparkline bars) are graphics, not text, and the faded screen behind a dialog is not
readable content: only the dialog is checked there. The terminal-colours theme draws with the terminal's
own palette, which no test can know; it has its own test (only the 16 colours).
"""

from __future__ import annotations

import pytest
from rich.color import Color as RichColor
from textual.screen import ModalScreen

from .helpers import make_app, ready

pytestmark = pytest.mark.timeout(120)

THEMES = ("currents-dark", "currents-light")
# From the connectors screen: itself, the tail, health, dead letters, a new and an edited connector (form,
# toggles, event tree), help, and a confirmation dialog.
SCREENS = {
    "connectors": [],
    "tail": ["t"],
    "health": ["h"],
    "dead letters": ["x"],
    "new connector": ["n"],
    "edit connector": ["e"],
    "help": ["f1"],
    "delete dialog": ["d"],
}
AA = 4.5


def _luminance(color: RichColor) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = color.get_truecolor()
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(fg: RichColor, bg: RichColor) -> float:
    """The WCAG 2 contrast ratio of two colours."""
    light, dark = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def _is_graphic(text: str) -> bool:
    # Box drawing, block elements and the sparkline's bars; spaces carry no text.
    return all(ch.isspace() or 0x2500 <= ord(ch) <= 0x259F for ch in text)


def low_contrast_texts(screen) -> list[str]:
    """Every text span of the rendered screen under AA, described (ratio, colours, the text)."""
    area = screen.query_one("#dialog").region if isinstance(screen, ModalScreen) else screen.region
    found = []
    for y, strip in enumerate(screen._compositor.render_strips()):
        x = 0
        for segment in strip:
            start, x = x, x + segment.cell_length
            if not (area.y <= y < area.bottom and area.x <= start < area.right):
                continue
            if _is_graphic(segment.text) or segment.style is None:
                continue
            fg, bg = segment.style.color, segment.style.bgcolor
            if segment.style.reverse:
                fg, bg = bg, fg
            if fg is None or bg is None:
                found.append(f"no explicit colour for {segment.text.strip()!r}")
                continue
            ratio = contrast(fg, bg)
            if ratio < AA:
                found.append(
                    f"{ratio:.2f}:1 {fg.get_truecolor().hex} on {bg.get_truecolor().hex}: "
                    f"{segment.text.strip()[:30]!r}"
                )
    return found


@pytest.mark.parametrize("theme", THEMES)
async def test_every_text_on_every_screen_meets_wcag_aa(seeded, theme):
    app = make_app(seeded.home)
    failures: dict[str, list[str]] = {}
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        app.set_theme(theme, remember=False)
        for name, keys in SCREENS.items():
            app.show_home()
            await pilot.pause(0.1)
            await pilot.press(*keys)
            await pilot.pause(0.3)
            await app.workers.wait_for_complete()
            await pilot.pause(0.1)
            if found := low_contrast_texts(app.screen):
                failures[name] = sorted(set(found))
            if isinstance(app.screen, ModalScreen):
                await pilot.press("escape")
                await pilot.pause(0.1)
    assert not failures, f"texts under {AA}:1 in {theme}:\n" + "\n".join(
        f"  {screen}: {line}" for screen, lines in failures.items() for line in lines[:12]
    )
