"""The dead letters screen on a real store: reasons listed, retry one, retry all after a confirmation,
export as JSON lines into the home."""

from __future__ import annotations

import json
import stat

import pytest
from textual.widgets import DataTable

from tui_currents.store import Store
from tui_currents.tui.screens.dead_letters import DeadLettersScreen
from tui_currents.tui.screens.modals import ConfirmScreen, MessageScreen

from .helpers import make_app, ready, wait_until

pytestmark = pytest.mark.timeout(60)


def dead_ids(home) -> list[int]:
    with Store(home.store_file, readonly=True) as store:
        return [d.id for d in store.dead_letters(limit=1000)]


async def open_dead_letters(pilot) -> DataTable:
    await pilot.press("x")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, DeadLettersScreen))
    table = pilot.app.screen.query_one(DataTable)
    await wait_until(pilot, lambda: table.row_count > 0)
    return table


async def test_the_list_shows_each_dead_letter_with_its_reason(seeded):
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        table = await open_dead_letters(pilot)
        assert [int(k.value) for k in table.rows] == seeded.dead_letter_ids
        detail = str(app.screen.query_one("#dead-detail").render())
        assert "Reason: Segment answered 400: invalid timestamp" in detail
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MessageScreen))
        assert app.screen.message["type"] == "track"


async def test_retry_one_then_all_requeues_them_in_the_store(seeded):
    first, *rest = seeded.dead_letter_ids
    with Store(seeded.home.store_file, readonly=True) as store:
        backlog = store.backlog("Production").messages
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        table = await open_dead_letters(pilot)
        await pilot.press("r")  # the highlighted (newest) one, no question asked
        await wait_until(pilot, lambda: dead_ids(seeded.home) == rest)
        await wait_until(pilot, lambda: table.row_count == len(rest))
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: dead_ids(seeded.home) == [])
    with Store(seeded.home.store_file, readonly=True) as store:
        assert store.backlog("Production").messages == backlog + 1 + len(rest)
    assert first not in dead_ids(seeded.home)


async def test_export_writes_json_lines_into_the_home_and_shows_the_path(seeded):
    app = make_app(seeded.home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await open_dead_letters(pilot)
        await pilot.press("e")
        await wait_until(pilot, lambda: app.last_export is not None)
        path = app.last_export
        assert path.is_relative_to(seeded.home.data)
        await wait_until(pilot, lambda: str(path) in str(app.screen.query_one("#dead-summary").render()))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted(d["id"] for d in lines) == sorted(seeded.dead_letter_ids)
    assert {d["reason"] for d in lines} == {"Segment answered 400: invalid timestamp"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
