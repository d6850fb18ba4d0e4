"""Fixtures for the TUI tests (the helpers they use are in helpers.py)."""

from __future__ import annotations

import pytest

from tui_currents.paths import Home

from .helpers import Seeded, fill_store, write_connectors


@pytest.fixture
def seeded(home: Home, monkeypatch: pytest.MonkeyPatch) -> Seeded:
    """A home with three connectors and a store of seeded events, deliveries and dead letters."""
    write_connectors(home, monkeypatch)
    return fill_store(home)
