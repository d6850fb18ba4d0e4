"""A type that is never sent shows in the tail as "not forwardable" with the catalog's reason, and counts
among the filtered lines."""

from __future__ import annotations

import pytest

from tui_currents import catalog
from tui_currents.tui.screens.tail import FATE_CYCLE, FATE_CYCLE_NAMES
from tui_currents.tui.widgets.tail_view import FATE_KINDS, TailLine, TailView

from .test_tail_view import START, TailApp, shown_text

pytestmark = pytest.mark.timeout(60)


async def test_a_deletion_request_shows_not_forwardable_and_what_to_do_instead():
    reason = catalog.not_forwardable_reason("users.UserDeleteRequest")
    app = TailApp()
    async with app.run_test(size=(220, 10)) as pilot:
        view = app.query_one(TailView)
        view.append(
            [
                TailLine(
                    seq=1,
                    at=START,
                    connector="Production",
                    event_type="users.UserDeleteRequest",
                    segment_event=None,
                    user="user-1",
                    fate="not forwardable",
                    reason=reason,
                    message_id="m-1",
                )  # fmt: skip
            ]
        )
        await pilot.pause()
        [row] = [text for text in shown_text(view) if "users.UserDeleteRequest" in text]
        assert f"not forwardable: {reason[:60]}" in row
    assert FATE_KINDS["not forwardable"] == "filtered"
    assert "not forwardable" in FATE_CYCLE[FATE_CYCLE_NAMES.index("filtered")]
