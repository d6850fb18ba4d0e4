"""Warn-once lines: bounded per kind, so a flood of one kind never silences another."""

from __future__ import annotations

import logging

import pytest

from tui_currents.logs import WarnOnce


def test_each_kind_remembers_a_bounded_number_of_recent_keys(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="test.warn_once")
    warnings = WarnOnce(logging.getLogger("test.warn_once"), keys_per_kind=4, lines_per_minute=1_000)
    assert warnings.warn("unknown", "a", "unknown %s", "a")
    assert not warnings.warn("unknown", "a", "unknown %s", "a")  # said once
    for key in "bcde":
        assert warnings.warn("unknown", key, "unknown %s", key)
    assert warnings.warn("unknown", "a", "unknown %s", "a")  # forgotten (least recently seen): said again
    assert not warnings.warn("unknown", "e", "unknown %s", "e")  # still remembered
    assert warnings.warn("version", "a", "version %s", "a")  # another kind keeps its own memory
    assert [r.getMessage() for r in caplog.records].count("unknown a") == 2


def test_a_flood_of_one_kind_is_capped_per_minute_and_other_kinds_still_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="test.warn_once")
    warnings = WarnOnce(logging.getLogger("test.warn_once"), keys_per_kind=128, lines_per_minute=10)
    logged = sum(warnings.warn("unknown", f"probe-{n}", "unknown %s", f"probe-{n}") for n in range(1_000))
    assert logged == 10
    assert warnings.warn("no token", "prod", "workspace %s has no token", "prod")
    assert warnings.warn("version", "2", "version %s", "2")
    messages = [r.getMessage() for r in caplog.records]
    assert "workspace prod has no token" in messages and "version 2" in messages
    assert len(messages) == 12
