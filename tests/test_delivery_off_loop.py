"""The delivery loop never waits for the store on the event loop: a store whose writes are slow (an fsync
on a busy disk, a lock held by another process) must not stop the loop from serving its other tasks (the
receiver, and in-process the TUI)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.test_delivery import C1, KEY, delivering, enqueue, until
from tui_currents.sandbox import SegmentSandbox
from tui_currents.store import Store

pytestmark = pytest.mark.timeout(60)

SLOW = 1.0  # seconds each slowed store call takes
MAX_LAG = 0.5  # the ticker must never be late by this much (half of one slow call): room for a busy machine


class SlowStore(Store):
    """A real store whose named calls first wait `SLOW` seconds, as a write waiting on the disk would."""

    def __init__(self, path: Path, slow: set[str]):
        self.slow = slow
        self.slowed: list[str] = []
        super().__init__(path, synchronous="NORMAL")

    def __getattribute__(self, name: str):
        attr = super().__getattribute__(name)
        if name in ("slow", "slowed") or name not in self.slow or not callable(attr):
            return attr

        def slowed(*args, **kwargs):
            self.slowed.append(name)
            time.sleep(SLOW)
            return attr(*args, **kwargs)

        return slowed


@asynccontextmanager
async def loop_lag() -> Iterator[Callable[[], float]]:
    """Tick every 10 ms for the block's duration; yields a function giving the worst lateness so far."""
    worst = [0.0]

    async def tick() -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            worst[0] = max(worst[0], time.monotonic() - before - 0.01)

    task = asyncio.create_task(tick())
    try:
        yield lambda: worst[0]
    finally:
        task.cancel()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "currents.db"


@pytest.mark.parametrize(
    ("slow", "statuses", "options"),
    [
        ("retry_later", [503], {}),
        ("dead_letter", [404], {}),
        ("release", [401], {}),
        ("set_state", [], {}),
        ("expire", [], {"retention_check_seconds": 0.05}),
        ("backlog", [], {"retention_check_seconds": 0.05}),
    ],
)
async def test_slow_store_writes_do_not_stall_the_event_loop(
    store_path: Path, slow: str, statuses: list[int], options: dict
):
    store = SlowStore(store_path, {slow})
    try:
        enqueue(store, 5)
        async with SegmentSandbox({KEY}) as sandbox:
            sandbox.faults.update(next_statuses=statuses)
            async with loop_lag() as worst:
                async with delivering(store, sandbox.url, store_retry_seconds=0.1, **options):
                    await until(lambda: slow in store.slowed, what=f"a slowed {slow}")
                    await asyncio.sleep(2 * SLOW)
                lag = worst()
        assert slow in store.slowed
        assert lag < MAX_LAG, f"the event loop stalled {lag:.2f} s on a slow {slow}"
    finally:
        store.close()


async def test_slow_delivered_marks_still_come_before_the_next_lease(store_path: Path):
    """Marks written off the loop keep their order: nothing accepted is leased (and sent) again."""
    store = SlowStore(store_path, {"delivered", "dead_letter", "retry_later"})
    try:
        ids = enqueue(store, 40)
        async with SegmentSandbox({KEY}) as sandbox:
            sandbox.faults.update(next_statuses=[503])
            async with delivering(store, sandbox.url, max_messages=10, max_in_flight=2):
                await until(lambda: store.backlog(C1).messages == 0, timeout=20, what="delivery")
            assert set(sandbox.message_ids) == set(ids)
            assert set(sandbox.message_ids.values()) == {1}  # each accepted once, none sent again
    finally:
        store.close()
