"""The engine's duplicate check hears of what another process does to the queue: a message the delivery
process dead-letters is forgotten (the same event sent again is queued again), and the ids of segments it
drops past the duplicate window leave the engine's memory too, so that memory stays bounded by the window."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.support import wait_for
from tests.test_delivery_process import engine, sandbox  # noqa: F401 (fixtures)
from tests.test_engine import post
from tests.test_store import C1, drain, queued
from tui_currents.engine import Engine
from tui_currents.sandbox import SegmentSandbox
from tui_currents.sources.demo import DemoGenerator
from tui_currents.store import Store

__all__ = ["engine", "sandbox"]


def test_an_event_dead_lettered_by_another_process_and_sent_again_is_queued_again(tmp_path: Path):
    # Two Stores on one file, as the engine (commits) and the delivery process (leases and marks) hold.
    with Store(tmp_path / "s.db") as committing, Store(tmp_path / "s.db") as delivering:
        committing.commit([(C1, queued("x")), (C1, queued("y"))], source="test")
        rows = delivering.lease(C1, max_messages=10, max_bytes=10**6, lease_seconds=60)
        [x] = [r.seq for r in rows if r.message_id == "x"]
        assert delivering.dead_letter(C1, [x], reason="400 bad message") == 1
        result = committing.commit([(C1, queued("x")), (C1, queued("y"))], source="test")
        assert (result.queued, result.duplicates) == (1, 1)  # x again, y still waiting
        assert drain(delivering) == ["x"]  # sent again (y is still leased from before)


def test_requeued_after_its_dead_letter_an_event_is_remembered_again(tmp_path: Path):
    # The order of what happened is kept: dead-lettered, then queued again, so a later copy is a duplicate.
    with Store(tmp_path / "s.db") as committing, Store(tmp_path / "s.db") as delivering:
        committing.commit([(C1, queued("x"))], source="test")
        [row] = delivering.lease(C1, max_messages=10, max_bytes=10**6, lease_seconds=60)
        delivering.dead_letter(C1, [row.seq], reason="400 bad message")
        with Store(tmp_path / "s.db") as console:  # a requeue made by another process
            assert console.requeue(C1) == 1
        result = committing.commit([(C1, queued("x"))], source="test")
        assert (result.queued, result.duplicates) == (0, 1)


def test_known_ids_stay_within_the_window_when_another_process_drops_segments(tmp_path: Path):
    window, batches, per_batch = 20, 30, 10
    path = tmp_path / "s.db"
    with (
        Store(path, delivered_window_max=window) as committing,
        Store(path, delivered_window_max=window) as delivering,
    ):
        for batch in range(batches):
            committing.commit([(C1, queued(f"m{batch}-{i}")) for i in range(per_batch)], source="test")
            drain(delivering)
        result = committing.commit([(C1, queued("m0-0")), (C1, queued(f"m{batches - 1}-0"))], source="test")
        # The oldest id is past the window (queued again); the newest is remembered (a duplicate).
        assert (result.queued, result.duplicates) == (1, 1)
        assert committing._known is not None
        assert len(committing._known) <= window + 2 * per_batch  # not the 300 ids ever queued


async def test_the_delivery_process_dead_letters_and_the_engine_queues_the_event_sent_again(
    engine: Engine,  # noqa: F811 (the fixture)
    sandbox: SegmentSandbox,  # noqa: F811
):
    # Two real processes: the engine commits, its delivery process sends and dead-letters.
    assert engine.delivery_pids and engine.store is not None
    store = engine.store
    demo = DemoGenerator(seed=21)
    bad, good = demo.event("users.messages.email.Send"), demo.event("users.messages.email.Send")
    sandbox.faults.update(reject_message_ids=[bad["id"]])
    assert (await post(engine, [bad, good])).status_code == 200
    assert await wait_for(lambda: store.backlog("Marketing").dead_letters == 1, timeout=20)
    sandbox.faults.update(reject_message_ids=[])
    assert (await post(engine, [bad])).status_code == 200
    totals = store.counter_totals("Marketing")
    assert (totals.get("queued"), totals.get("duplicate", 0)) == (3, 0)
    assert await wait_for(lambda: bad["id"] in {m["messageId"] for m in sandbox.accepted}, timeout=20)


def test_a_store_of_the_previous_schema_gains_the_log_and_catches_up(tmp_path: Path):
    path = tmp_path / "s.db"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.executescript("DROP TABLE forgotten_ids; PRAGMA user_version = 4;")
    with Store(path) as committing, Store(path) as delivering:
        committing.commit([(C1, queued("x"))], source="test")
        [row] = delivering.lease(C1, max_messages=10, max_bytes=10**6, lease_seconds=60)
        delivering.dead_letter(C1, [row.seq], reason="400 bad message")
        assert committing.commit([(C1, queued("x"))], source="test").queued == 1
