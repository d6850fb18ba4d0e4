"""The app running the engine itself: a connector created in the editor forwards to a Segment stand-in on
loopback, test events arrive, and an update of the selection does not stop it."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from tui_currents import catalog, config
from tui_currents.engine import EngineOptions
from tui_currents.sandbox import SegmentSandbox
from tui_currents.secrets import Secrets
from tui_currents.tui.screens.connectors import ConnectorsScreen
from tui_currents.tui.widgets.event_tree import Branch, EventTree

from .helpers import editor_open, ready, wait_until

pytestmark = pytest.mark.timeout(90)

WRITE_KEY = "wk_engine_test_0123456789"
EMAIL = {e.event_type for e in catalog.CATALOG if e.group == "Email" and e.supported}
PUSH = {e.event_type for e in catalog.CATALOG if e.group == "Push notification" and e.supported}


async def toggle_group(pilot, key: str) -> None:
    tree = pilot.app.screen.query_one(EventTree)
    tree.focus()
    tree.move_cursor(next(n for n in tree._walk_nodes() if isinstance(n.data, Branch) and n.data.key == key))
    await pilot.pause()
    await pilot.press("space")


async def test_a_connector_made_in_the_editor_forwards_and_keeps_running_through_an_update(home):
    from tui_currents.tui.app import CurrentsApp
    from tui_currents.tui.backend import Backend

    sandbox = SegmentSandbox(write_keys={WRITE_KEY}, reject_unknown_keys=True)
    await sandbox.start()
    try:
        backend = Backend(home, Secrets(home), engine_options=EngineOptions(start_receiver=False))
        app = CurrentsApp(backend, poll_interval=0.05, refresh_interval=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(pilot)
            assert backend.mode == "in-process"
            assert "engine in this app" in str(app.screen.query_one("#mode-line").render())

            await pilot.press("n")
            await editor_open(pilot)
            editor = app.screen
            for field, value in (("name", "Sandbox"), ("contact_email", "ops@example.com"),
                                 ("workspace", "marketing"), ("write_key", WRITE_KEY)):  # fmt: skip
                editor.query_one(f"#{field}", Input).value = value
            editor.query_one("#region").focus()
            await pilot.press("down", "down", "enter")  # custom endpoint
            editor.query_one("#endpoint", Input).value = sandbox.url
            await toggle_group(pilot, "Messages/Email")
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: isinstance(app.screen, ConnectorsScreen), timeout=20)
            # The list is read in a worker: on a busy machine the new row comes a moment after the screen.
            await wait_until(pilot, lambda: app.screen.selected_name == "Sandbox", timeout=20)

            await pilot.press("s")  # one test event of each selected type, once confirmed
            await wait_until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
            await pilot.press("y")
            await wait_until(pilot, lambda: sandbox.accepted_for(WRITE_KEY) == len(EMAIL), timeout=20)
            assert {m["event"] for m in sandbox.recent(100)} == {catalog.find(e).segment_event for e in EMAIL}
            detail = app.screen.query_one("#connector-detail")  # at 80 columns "Delivered" is in the detail
            await wait_until(pilot, lambda: f"Delivered {len(EMAIL)} " in str(detail.render()))

            # Update the selection: the delivery loop is not restarted and the new selection applies.
            starts = backend.engine.delivery_starts("Sandbox")
            assert starts == 1
            await pilot.press("e")
            await editor_open(pilot)
            await toggle_group(pilot, "Messages/Push notification")
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: isinstance(app.screen, ConnectorsScreen), timeout=20)
            assert set(config.load(home).connector("Sandbox").events) == EMAIL | PUSH
            assert backend.engine.delivery_starts("Sandbox") == starts
            await pilot.press("s")
            await wait_until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
            await pilot.press("y")
            expected = 2 * len(EMAIL) + len(PUSH)
            await wait_until(pilot, lambda: sandbox.accepted_for(WRITE_KEY) == expected, timeout=20)
        assert backend.engine is None  # stopped with the app; queued events stay in the store
    finally:
        await sandbox.stop()
