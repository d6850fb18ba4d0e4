"""Console mode: another process runs the engine (it holds the lock and beats in the control table); the TUI
says so and sends its requests through `control` instead of doing them itself."""

from __future__ import annotations

import threading

import pytest

from tui_currents import control
from tui_currents.control import Control
from tui_currents.tui.screens.connectors import ConnectorsScreen
from tui_currents.tui.screens.dead_letters import DeadLettersScreen
from tui_currents.tui.screens.modals import ConfirmScreen

from .helpers import make_app, ready, wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def service(seeded):
    """A service's side of the control table: a heartbeat every 0.2 s, and the commands it was sent."""
    ctl = Control(seeded.home.store_file)
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            ctl.beat(pid=4242, started_at=0.0, receiver="http://127.0.0.1:8750", demo=False)
            stop.wait(0.2)

    ctl.beat(pid=4242, started_at=0.0, receiver="http://127.0.0.1:8750", demo=False)
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    yield ctl
    stop.set()
    thread.join(timeout=5)
    ctl.close()


async def test_the_console_names_the_service_and_forwards_requests(seeded, service):
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert app.backend.mode == "console"
        assert "console of the service (pid 4242)" in str(app.screen.query_one("#mode-line").render())
        # With the service alive, the stored states are current.
        table = app.screen.query_one("DataTable")
        await wait_until(pilot, lambda: "backing off" in str(table.get_cell("Production", "state")))

        taken: list[control.Command] = []
        await pilot.press("s")  # send test events through the highlighted connector, once confirmed
        await wait_until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
        await pilot.press("y")
        await wait_until(pilot, lambda: bool(taken.extend(service.take()) or taken))
        assert [(c.kind, c.args) for c in taken] == [(control.SEND_TEST_EVENTS, {"connector": "Production"})]

        taken.clear()
        await pilot.press("p")  # a config change: the service is asked to reload at once
        await wait_until(pilot, lambda: bool(taken.extend(service.take()) or taken))
        assert [c.kind for c in taken] == [control.RELOAD]

        taken.clear()
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, DeadLettersScreen))
        await pilot.pause(0.2)
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: bool(taken.extend(service.take()) or taken))
        assert [(c.kind, c.args) for c in taken] == [
            (control.RETRY_DEAD_LETTERS, {"connector": None, "ids": None})
        ]
        # The console does not requeue by itself: the service does, on its side.
        assert len(app.backend.dead_letters()) == len(seeded.dead_letter_ids)
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, ConnectorsScreen))
