"""The JetStream outbox keeps the contract where it used to differ from the SQLite store: a messageId
queued recently is a duplicate whatever batch (or instance) brings it again; only real attempts count;
a lease lasts `lease_seconds`; the dead letters are bounded by `DeadLetterCaps`."""

from __future__ import annotations

import time
import uuid

import orjson

from tests.cluster.conftest import OpenOutbox
from tests.cluster.test_jetstream_outbox import C1, batch, eventually, lease_all
from tests.test_dead_letter_caps import rejected
from tests.test_store import queued
from tui_currents.outbox import DEAD_LETTERED, DEAD_LETTERS_DROPPED, DUPLICATE, QUEUED
from tui_currents.received import Received
from tui_currents.store import DeadLetterCaps


def test_a_message_id_queued_in_another_batch_is_a_duplicate(open_outbox: OpenOutbox):
    outbox = open_outbox("a")
    first, ids = batch(5)
    outbox.commit(first, source="test")
    again = Received.of([(C1, queued(ids[2])), (C1, queued(f"new-{uuid.uuid4()}"))])
    result = outbox.commit(again, source="test")
    assert (result.queued, result.duplicates) == (1, 1)
    totals = outbox.counter_totals(C1)
    assert (totals[QUEUED], totals[DUPLICATE]) == (6, 1)
    assert len(lease_all(outbox)) == 6


def test_a_message_id_queued_by_another_instance_is_a_duplicate(open_outbox: OpenOutbox):
    a, b = open_outbox("a"), open_outbox("b")
    first, ids = batch(5)
    a.commit(first, source="test")
    time.sleep(0.5)  # b hears a's queued ids on the tail subjects (core NATS: well under this)
    result = b.commit(Received.of([(C1, queued(ids[0])), (C1, queued(f"n-{uuid.uuid4()}"))]), source="t")
    assert (result.queued, result.duplicates) == (1, 1)


def test_releases_and_waits_asked_by_segment_are_not_attempts(open_outbox: OpenOutbox):
    outbox = open_outbox()
    outbox.commit(batch(3)[0], source="test")
    rows = lease_all(outbox)
    outbox.release(C1, [r.seq for r in rows])  # given back unsent
    rows = []
    assert eventually(lambda: bool(rows.extend(lease_all(outbox)) or rows))
    assert [r.attempts for r in rows] == [0, 0, 0]
    outbox.retry_later(C1, [r.seq for r in rows], retry_at=0.0, error="429", count_attempt=False)
    rows = []
    assert eventually(lambda: bool(rows.extend(lease_all(outbox)) or rows))
    assert [r.attempts for r in rows] == [0, 0, 0]
    outbox.retry_later(C1, [rows[0].seq], retry_at=0.0, error="503")  # a real attempt, for one row
    outbox.release(C1, [r.seq for r in rows[1:]])
    rows = []
    assert eventually(lambda: bool(rows.extend(lease_all(outbox)) or rows))
    assert [r.attempts for r in rows] == [1, 0, 0]
    outbox.release(C1, [r.seq for r in rows])
    other = open_outbox("b")  # another instance sees the same attempts
    rows = []
    assert eventually(lambda: bool(rows.extend(lease_all(other)) or rows))
    assert [r.attempts for r in rows] == [1, 0, 0]


def test_a_lease_lasts_lease_seconds_not_the_consumer_ack_wait(open_outbox: OpenOutbox):
    short_wait = open_outbox("a", ack_wait=1.0)
    other = open_outbox("b", ack_wait=1.0)
    short_wait.commit(batch(4)[0], source="test")
    rows = short_wait.lease(C1, max_messages=100, max_bytes=10**6, lease_seconds=4.0)
    assert len(rows) == 4
    leased_at = time.monotonic()
    time.sleep(2.5)  # well past the ack wait: still this instance's
    assert lease_all(other) == []
    came: list = []
    assert eventually(lambda: bool(came.extend(lease_all(other)) or came), timeout=10)
    assert time.monotonic() - leased_at >= 3.9
    assert sorted(r.message_id for r in came) == sorted(r.message_id for r in rows)


def test_a_short_lease_ends_before_the_consumer_ack_wait(open_outbox: OpenOutbox):
    holder, other = open_outbox("a", ack_wait=30.0), open_outbox("b", ack_wait=30.0)
    holder.commit(batch(2)[0], source="test")
    rows = holder.lease(C1, max_messages=100, max_bytes=10**6, lease_seconds=1.5)
    leased_at = time.monotonic()
    assert len(rows) == 2
    back: list = []
    assert eventually(lambda: bool(back.extend(lease_all(other)) or back), timeout=15)
    assert 1.4 <= time.monotonic() - leased_at < 5  # given back after its lease, not after 30 s
    assert [r.attempts for r in back] == [0, 0]  # a lease that ran out is not an attempt


def test_dead_letter_caps_bound_what_is_kept_and_count_every_drop(open_outbox: OpenOutbox):
    outbox = open_outbox()
    outbox.dead_letter_caps = DeadLetterCaps(per_request=3, total=4, event_bytes=300)
    bad = [(C1, rejected(f"bad-{i}", padding=2_000)) for i in range(5)]
    result = outbox.commit(Received.of(bad), source="test")
    assert result.dead_lettered == 5  # all rejected: only their keeping is bounded
    letters = outbox.dead_letters(C1, limit=100)
    assert len(letters) == 3
    assert all(d.event is not None and len(d.event) <= 300 for d in letters)
    assert all(orjson.loads(d.event or b"")["truncated"] is True for d in letters)
    totals = outbox.counter_totals(C1)
    assert (totals[DEAD_LETTERED], totals[DEAD_LETTERS_DROPPED]) == (5, 2)

    outbox.commit(Received.of([(C1, rejected(f"worse-{i}")) for i in range(2)]), source="test")
    letters = outbox.dead_letters(C1, limit=100)
    assert len(letters) == 4  # the total cap: the oldest dropped first
    assert {d.message_id for d in letters} >= {"worse-0", "worse-1"}
    assert outbox.counter_totals(C1)[DEAD_LETTERS_DROPPED] == 3
    assert outbox.backlog(C1).dead_letters == 4
