"""`--help` lists every subcommand, each with a line saying what it does."""

from __future__ import annotations

import re

from tui_currents.paths import Home

from .test_cli import cli


def listed(help_text: str) -> dict[str, str]:
    """Subcommand -> its help line, from argparse's listing."""
    return dict(re.findall(r"^    (\S+)\s+(\S.*)$", help_text, flags=re.M))


def test_connector_help_lists_every_subcommand(home: Home) -> None:
    shown = listed(cli(home.root, "connector", "--help").stdout)
    assert set(shown) == {"add", "edit", "list", "show", "remove", "pause", "resume", "test"}
    assert all(shown.values())


def test_workspace_help_lists_every_subcommand(home: Home) -> None:
    shown = listed(cli(home.root, "workspace", "--help").stdout)
    assert set(shown) == {"add", "list", "token", "remove"}
