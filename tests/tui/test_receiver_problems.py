"""A running service whose keyring cannot be read: the console shows it on the workspace's connectors."""

from __future__ import annotations

import pytest
from textual.widgets import Static

from tui_currents.control import Control

from .helpers import WORKSPACE, make_app, ready, wait_until

pytestmark = pytest.mark.timeout(60)


async def test_an_unreadable_receiver_token_shows_on_the_workspaces_connectors(seeded):
    service = Control(seeded.home.store_file)  # the service's side of the control table
    service.beat(pid=4242, started_at=0.0, receiver="http://127.0.0.1:8750", demo=False)
    problem = "the encrypted keyring file is missing. Put it back (from a backup)."
    service.set_receiver_problems({WORKSPACE: problem})
    try:
        app = make_app(seeded.home)
        async with app.run_test(size=(100, 30)) as pilot:
            await ready(pilot)
            service.beat(pid=4242, started_at=0.0, receiver="http://127.0.0.1:8750", demo=False)
            rows = {row.name: row for row in app.backend.connector_rows()}
            shown = f"receiver token unreadable: {problem}"
            assert rows["Production"].warning == shown and rows["SMS to EU"].warning == shown
            assert "receiver token" not in (rows["Brand archive"].warning or "")  # another workspace
            detail = app.screen.query_one("#connector-detail", Static)
            await wait_until(pilot, lambda: "receiver token unreadable" in str(detail.render()))

            service.set_receiver_problems({})  # readable again: the warning goes
            rows = {row.name: row for row in app.backend.connector_rows()}
            assert all("receiver token" not in (row.warning or "") for row in rows.values())
    finally:
        service.close()
