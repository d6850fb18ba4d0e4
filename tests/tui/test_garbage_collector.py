"""The app's garbage collector settings: start-up objects frozen out of collections, young collections
less often once started (so objects in flight under load are not promoted into the generation whose
collections walk everything), and Python's own settings back when the app ends."""

from __future__ import annotations

import gc
import weakref

from tui_currents.tui.app import YOUNG_COLLECTION_THRESHOLD

from .helpers import make_app, ready


class _Node:
    me: _Node


def _cycle() -> _Node:
    node = _Node()
    node.me = node
    return node


async def test_the_app_collects_young_objects_less_often_once_started_and_restores_pythons_setting(home):
    before = gc.get_threshold()
    assert before[0] != YOUNG_COLLECTION_THRESHOLD
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, before[1], before[2])
        assert gc.get_freeze_count() > 0  # what start-up loaded is out of the collector's walks
        # Cycles made meanwhile are still collected without being asked: memory stays bounded.
        first = weakref.ref(_cycle())
        for _ in range(3 * YOUNG_COLLECTION_THRESHOLD):
            _cycle()
        assert first() is None
    assert gc.get_threshold() == before
