"""Themes as data: TOML files (bundled ones and a user's own) read into Textual `Theme` objects.

A theme file has `name`, optional `dark` / `ansi` / `luminosity_spread` / `text_alpha`, a `[colors]`
table (primary is required; the rest fall back to values derived by Textual) and an optional
`[variables]` table of Textual design variables. A broken file never stops the app: it is reported
and skipped.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from textual.color import Color, ColorParseError
from textual.theme import Theme

# The repository's themes/ folder; an installed package carries a copy beside this module.
_CANDIDATE_DIRS = (
    Path(__file__).resolve().parents[2] / "themes",
    Path(__file__).resolve().parent.parent / "themes",
)
DEFAULT_THEME = "currents-dark"
COLOR_KEYS = (
    "primary",
    "secondary",
    "warning",
    "error",
    "success",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
)


class ThemeFileError(ValueError):
    """A theme file that cannot be used, with the reason in words."""


@dataclass(frozen=True, slots=True)
class ThemeProblem:
    """A theme file that was skipped, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path.name}: {self.reason}"


def bundled_themes_dir() -> Path | None:
    """The folder of themes shipped with the app, or None if it is missing."""
    for folder in _CANDIDATE_DIRS:
        if folder.is_dir():
            return folder
    return None


def _check_color(where: str, value: object) -> str:
    if not isinstance(value, str):
        raise ThemeFileError(f"{where} must be a colour in quotes, not {value!r}")
    # Variables may carry a percentage ("#81a1c1 35%") or a text style; only plain colours are checked.
    head = value.split()[0] if value.split() else value
    try:
        Color.parse(head)
    except ColorParseError:
        raise ThemeFileError(f"{where} = {value!r} is not a colour Textual understands") from None
    return value


def theme_from_toml(path: Path) -> Theme:
    """Read one theme file; raise ThemeFileError saying what is wrong."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ThemeFileError(f"cannot be read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ThemeFileError(f"is not valid TOML ({exc})") from None
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ThemeFileError('needs a name, e.g. name = "my-theme"')
    colors = data.get("colors", {})
    if not isinstance(colors, dict) or "primary" not in colors:
        raise ThemeFileError('needs a [colors] table with at least primary = "#rrggbb"')
    unknown = sorted(set(colors) - set(COLOR_KEYS))
    if unknown:
        raise ThemeFileError(f"unknown colour names in [colors]: {', '.join(unknown)}")
    checked = {key: _check_color(f"colors.{key}", value) for key, value in colors.items()}
    variables = data.get("variables", {})
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        raise ThemeFileError("[variables] must map names to strings")
    for key, value in data.items():
        if key in ("dark", "ansi") and not isinstance(value, bool):
            raise ThemeFileError(f"{key} must be true or false")
    variables = dict(variables)
    if data.get("ansi", False):
        # Textual's own widgets refer to these in terminal-colour themes; give them if the file does not.
        variables.setdefault("ansi-background", "ansi_black")
        variables.setdefault("ansi-foreground", "ansi_white")
    theme = Theme(
        name=name.strip(),
        dark=data.get("dark", True),
        ansi=data.get("ansi", False),
        luminosity_spread=float(data.get("luminosity_spread", 0.15)),
        text_alpha=float(data.get("text_alpha", 0.95)),
        variables=variables,
        **checked,
    )
    try:
        theme.to_color_system().generate()
    except Exception as exc:  # Textual's own check of the finished palette
        raise ThemeFileError(f"cannot be turned into a palette ({exc})") from None
    return theme


def load_themes(folders: Iterable[Path | None]) -> tuple[dict[str, Theme], list[ThemeProblem]]:
    """Every usable theme in these folders (later folders win on equal names) and the files skipped."""
    themes: dict[str, Theme] = {}
    problems: list[ThemeProblem] = []
    for folder in folders:
        if folder is None or not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                theme = theme_from_toml(path)
            except ThemeFileError as exc:
                problems.append(ThemeProblem(path, str(exc)))
                continue
            themes[theme.name] = theme
    return themes, problems
