"""How states and numbers look: a glyph and a theme colour per kind, so a problem shows before it is read."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.app import App
from textual.color import Color, ColorParseError

# A glyph per kind, so the state also reads without colour (16-colour terminals, NO_COLOR, colour blindness).
GLYPHS = {"good": "●", "warning": "▲", "bad": "✖", "muted": "○"}
_THEME_VARIABLE = {"good": "success", "warning": "warning", "bad": "error"}


def kind_style(app: App, kind: str) -> Style:
    """The Rich style of a kind in the current theme."""
    # "muted" is the theme's text-muted colour, not Rich's dim: dim halves the contrast of whatever colour
    # the text has, below what can be read.
    name = "text-muted" if kind == "muted" else _THEME_VARIABLE.get(kind, "warning")
    value = app.theme_variables.get(name) if getattr(app, "theme_variables", None) else None
    if kind == "muted" and (not value or value.startswith("ansi_default")):
        return Style(dim=True)  # the terminal's own colours: dim is all there is
    try:
        color = Color.parse(value) if value else None
    except ColorParseError:
        color = None
    style = Style(color=color.rich_color) if color is not None else Style()
    return style + Style(bold=True) if kind == "bad" else style


def state_text(app: App, state: str, kind: str) -> Text:
    """ "● running", "▲ backing off", "✖ credentials rejected"... in the kind's colour."""
    return Text(
        f"{GLYPHS.get(kind, '•')} {state}", style=kind_style(app, kind), no_wrap=True, overflow="ellipsis"
    )


def count(n: int) -> str:
    """A count in at most six characters: 999, 12.3k, 4.56M."""
    if n < 10_000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.2f}M"


def rate(per_second: float) -> str:
    """events/s for a narrow column."""
    if per_second <= 0:
        return "0"
    if per_second < 10:
        return f"{per_second:.1f}"
    return count(round(per_second))
