"""`s` on the connectors screen: says when nothing runs, else asks first, naming connector, destination and
how many events; only a yes leaves the command for the running service."""

from __future__ import annotations

import os
import time

import pytest

from tui_currents.control import SEND_TEST_EVENTS, Control
from tui_currents.tui.screens.modals import ConfirmScreen

from .helpers import make_app, ready, wait_until, write_connectors

pytestmark = pytest.mark.timeout(60)


def notices(app) -> str:
    return " ".join(str(n.message) for n in app._notifications)


async def test_with_no_engine_it_says_nothing_runs_and_asks_nothing(home, monkeypatch):
    write_connectors(home, monkeypatch)
    app = make_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("s")
        await wait_until(pilot, lambda: "No engine is running" in notices(app))
        assert not isinstance(app.screen, ConfirmScreen)


async def test_it_asks_naming_connector_destination_and_count(seeded):
    home = seeded.home
    service = Control(home.store_file)  # a live service's heartbeat, as `tui-currents run` leaves it
    service.beat(pid=os.getpid(), started_at=time.time(), receiver=None, demo=False)
    try:
        app = make_app(home)
        async with app.run_test(size=(100, 30)) as pilot:
            await ready(pilot)
            await pilot.press("down")  # SMS to EU
            await pilot.press("s")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            question = str(app.screen.query_one("#question").render())
            assert "'SMS to EU'" in question and "Segment EU" in question
            assert "test events" in question and any(ch.isdigit() for ch in question)
            assert "test_event" in str(app.screen.query_one("#detail").render())
            await pilot.press("n")
            await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
            assert service.take() == []
            await pilot.press("s")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
            taken = service.take()
            assert [(c.kind, c.args) for c in taken] == [(SEND_TEST_EVENTS, {"connector": "SMS to EU"})]
    finally:
        service.close()
