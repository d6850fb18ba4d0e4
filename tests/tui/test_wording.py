"""Words as a person reads them: no literal backticks, a hint that matches its switch, plurals that agree,
no "100%" delivered with a backlog waiting, and a last error with its time, marked once resolved."""

from __future__ import annotations

import os
import time

import pytest
from textual.widgets import Checkbox

from tui_currents.control import Control
from tui_currents.store import ConnectorState, Store
from tui_currents.tui.screens.health import HealthScreen

from ..test_cli import cli
from .helpers import FIXED_NOW, editor_open, make_app, ready, wait_until

pytestmark = pytest.mark.timeout(60)


def rendered(app) -> str:
    return "\n".join("".join(s.text for s in strip) for strip in app.screen._compositor.render_strips())


async def test_editor_labels_and_the_anonymous_hint(seeded):
    app = make_app(seeded.home)
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(pilot)
        await pilot.press("n")
        await editor_open(pilot)
        editor = app.screen
        editor.query_one("#advanced").collapsed = False
        await pilot.pause(0.2)
        labels = " ".join(str(label.render()) for label in editor.query(".field-hint"))
        assert "`" not in labels
        hint = editor.query_one("#anonymous-hint")
        assert str(hint.render()).startswith("Off:")
        editor.query_one("#include_anonymous", Checkbox).value = True
        await pilot.pause(0.1)
        assert str(hint.render()).startswith("On:")


def live_service(home) -> Control:
    service = Control(home.store_file)
    service.beat(pid=os.getpid(), started_at=time.time(), receiver=None, demo=False)
    return service


async def test_health_words(seeded):
    home = seeded.home
    with Store(home.store_file) as store:
        store.set_state("Production", ConnectorState(state="credentials rejected", since=FIXED_NOW))
    service = live_service(home)
    try:
        app = make_app(home)
        async with app.run_test(size=(100, 30)) as pilot:
            await ready(pilot)
            await pilot.press("h")
            await wait_until(pilot, lambda: isinstance(app.screen, HealthScreen))
            await pilot.pause(0.5)
            text = rendered(app)
            assert "1 connector needs attention" in text
            assert "%)" not in text  # no share of delivered while events wait
    finally:
        service.close()


def test_status_shows_when_the_last_error_was_and_that_it_is_resolved(seeded):
    home = seeded.home
    with Store(home.store_file) as store:
        store.set_state(
            "SMS to EU",
            ConnectorState(
                state="running",
                since=FIXED_NOW,
                last_error="Segment answered 401: invalid write key",
                last_error_at=FIXED_NOW - 60,
            ),
        )
    service = live_service(home)
    try:
        out = cli(home.root, "status").stdout
    finally:
        service.close()
    line = next(x for x in out.splitlines() if x.startswith("SMS to EU"))
    assert "(2025-12-31 23:59 UTC, resolved)" in line
