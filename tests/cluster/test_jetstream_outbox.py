"""JetStreamOutbox against a real 3-node JetStream cluster on loopback: the outbox contract's round trip,
publish de-duplication, retries, dead letters, work shared by two instances, a node SIGKILLed during
commits, and a lost quorum reported in bounded time."""

from __future__ import annotations

import stat
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from tests.cluster.conftest import NatsCluster, OpenOutbox, free_ports  # and the open_outbox fixture
from tests.test_store import queued
from tui_currents.cluster import JetStreamOutbox
from tui_currents.outbox import (
    DEAD_LETTERED,
    DELIVERED,
    EXPIRED,
    QUEUED,
    RETRIED,
    ConnectorState,
    StoreUnavailable,
)
from tui_currents.received import Received

C1 = "Production"
C2 = "Staging eu.west"  # a dot and a space: not allowed in a subject token as such


def batch(n: int, connector: str = C1) -> tuple[Received, list[str]]:
    ids = [f"{connector}-{i}-{uuid.uuid4()}" for i in range(n)]
    return Received.of([(connector, queued(i)) for i in ids]), ids


def message_ids(received: Received, connector: str = C1) -> list[str]:
    return [orjson.loads(body)["messageId"] for body in received.tails[connector][1]]


def lease_all(outbox: JetStreamOutbox, connector: str = C1, **bounds) -> list:
    return outbox.lease(
        connector,
        max_messages=bounds.get("max_messages", 10_000),
        max_bytes=bounds.get("max_bytes", 10**8),
        lease_seconds=60,
    )


def drain(outbox: JetStreamOutbox, connector: str = C1, rounds: int = 200) -> list[str]:
    """Lease and mark delivered until a lease comes back empty; the message ids in delivery order."""
    out: list[str] = []
    for _ in range(rounds):
        rows = lease_all(outbox, connector)
        if not rows:
            return out
        outbox.delivered(connector, [r.seq for r in rows])
        out.extend(r.message_id for r in rows)
    raise AssertionError("drain did not finish")


def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# ------------------------------------------------------------------------------------------ round trip


def test_commit_then_lease_then_delivered_round_trip(open_outbox: OpenOutbox):
    outbox = open_outbox("a")
    first, first_ids = batch(30)
    second, _ = batch(20, C2)
    assert outbox.commit(first, source="test").queued == 30
    assert outbox.commit(second, source="test").queued == 20

    rows = lease_all(outbox)
    assert [r.message_id for r in rows] == message_ids(first)
    assert [r.body for r in rows] == first.tails[C1][1]  # the exact Segment messages
    assert all(r.attempts == 0 for r in rows)
    assert len({r.seq for r in rows}) == 30
    assert lease_all(outbox) == []  # leased: not handed out twice
    assert outbox.backlog(C1).messages == 30
    assert outbox.delivered(C1, [r.seq for r in rows]) == 30
    assert outbox.delivered(C1, [r.seq for r in rows]) == 0  # already settled
    assert lease_all(outbox) == []
    assert outbox.backlog(C1).messages == 0
    assert len(drain(outbox, C2)) == 20  # each connector has its own queue

    totals = outbox.counter_totals(C1)
    assert totals[QUEUED] == 30 and totals[DELIVERED] == 30
    other = open_outbox("b")  # counters and states are the cluster's, not one instance's
    outbox.set_state(C1, ConnectorState(state="running", detail="sending"))
    assert eventually(lambda: other.counter_totals(C1).get(DELIVERED) == 30)
    assert eventually(lambda: C1 in other.states() and other.states()[C1].detail == "sending")
    # the tail (best effort) has each received event with its Segment message, then its delivery
    assert eventually(lambda: sum(row.fate == "delivered" for row in outbox.tail(connector=C1)) == 30)
    received_rows = [row for row in outbox.tail(connector=C1) if not row.update]
    assert [row.message for row in received_rows] == first.tails[C1][1]
    assert outbox.tail_last_seq() == max(row.seq for row in outbox.tail(limit=10_000))


def test_an_instance_restarted_keeps_counting_from_its_figures(open_outbox: OpenOutbox):
    outbox = open_outbox("a")
    outbox.commit(batch(12)[0], source="test")
    outbox.close()  # writes its counters
    again = open_outbox("a")
    again.commit(batch(3)[0], source="test")
    assert again.counter_totals(C1)[QUEUED] == 15
    assert again.backlog(C1).messages == 15


def test_a_retried_identical_commit_is_stored_once(open_outbox: OpenOutbox):
    outbox = open_outbox()
    received, _ = batch(25)
    assert outbox.commit(received, source="test", now=1000.0).queued == 25
    again = outbox.commit(received, source="test", now=1001.0)  # e.g. the first publish ack was lost
    assert (again.queued, again.duplicates) == (0, 25)
    assert sorted(drain(outbox)) == sorted(message_ids(received))


def test_a_batch_larger_than_one_nats_message_is_split_and_still_stored_once(open_outbox: OpenOutbox):
    outbox = open_outbox()
    ids = [f"big-{i}-{uuid.uuid4()}" for i in range(60)]
    received = Received.of([(C1, queued(i, padding=20_000)) for i in ids])  # ~1.2 MB: over 1 MB max_payload
    assert outbox.commit(received, source="test").queued == 60
    again = outbox.commit(received, source="test")
    assert (again.queued, again.duplicates) == (0, 60)
    assert drain(outbox) == message_ids(received)  # in order, each once


def test_a_lease_hands_out_whole_batch_messages_within_bounds(open_outbox: OpenOutbox):
    outbox = open_outbox()
    for _ in range(3):
        outbox.commit(batch(10)[0], source="test")
    assert len(lease_all(outbox, max_messages=25)) == 20
    assert len(lease_all(outbox, max_messages=5)) == 10  # the first batch comes even when too large


# ------------------------------------------------------------------------------------------- retries


def test_retry_later_redelivers_after_the_delay(open_outbox: OpenOutbox):
    outbox = open_outbox()
    received, _ = batch(6)
    outbox.commit(received, source="test")
    rows = lease_all(outbox)
    sent, failed = rows[:2], rows[2:]
    outbox.delivered(C1, [r.seq for r in sent])
    asked = time.monotonic()
    outbox.retry_later(C1, [r.seq for r in failed], retry_at=time.time() + 1.5, error="503 from Segment")
    assert lease_all(outbox) == []
    again: list = []
    assert eventually(lambda: bool(again.extend(lease_all(outbox)) or again), timeout=10)
    assert time.monotonic() - asked >= 1.4
    assert [r.message_id for r in again] == [r.message_id for r in failed]  # the delivered ones stay done
    assert all(r.attempts == 1 for r in again)
    assert outbox.counter_totals(C1)[RETRIED] == 4


def test_release_gives_messages_back_at_once(open_outbox: OpenOutbox):
    outbox = open_outbox()
    outbox.commit(batch(4)[0], source="test")
    assert len(lease_all(outbox)) == 4
    assert outbox.release_leases(C1) == 4
    assert eventually(lambda: len(lease_all(outbox)) == 4, timeout=5)


# ------------------------------------------------------------------------------------------ dead letters


def test_dead_letter_lands_in_the_dead_letter_stream_with_its_reason(open_outbox: OpenOutbox, tmp_path: Path):
    outbox = open_outbox()
    received, _ = batch(5)
    outbox.commit(received, source="test")
    rows = lease_all(outbox)
    reason = "Segment answered 400: message too large"
    assert outbox.dead_letter(C1, [r.seq for r in rows[:2]], reason=reason) == 2
    outbox.delivered(C1, [r.seq for r in rows[2:]])

    letters = outbox.dead_letters(C1)
    assert [d.message_id for d in letters] == [r.message_id for r in reversed(rows[:2])]  # newest first
    assert {d.reason for d in letters} == {reason}
    assert {d.message for d in letters} == {r.body for r in rows[:2]}
    assert outbox.backlog(C1).dead_letters == 2
    assert outbox.counter_totals(C1)[DEAD_LETTERED] == 2
    assert lease_all(outbox) == []  # terminated or acked: never sent again by itself

    path = tmp_path / "dead.jsonl"
    assert outbox.export_dead_letters(path, C1) == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert {orjson.loads(line)["reason"] for line in path.read_bytes().splitlines()} == {reason}

    assert outbox.requeue(C1) == 2
    assert outbox.dead_letters(C1) == []
    assert sorted(drain(outbox)) == sorted(r.message_id for r in rows[:2])


def test_a_whole_batch_dead_lettered_is_not_sent_again(open_outbox: OpenOutbox):
    outbox = open_outbox()
    outbox.commit(batch(3)[0], source="test")
    rows = lease_all(outbox)
    assert outbox.dead_letter(C1, [r.seq for r in rows], reason="rejected") == 3
    assert lease_all(outbox) == []
    assert len(outbox.dead_letters(C1)) == 3


def test_expire_moves_old_unleased_messages_to_dead_letters(open_outbox: OpenOutbox):
    outbox, other = open_outbox("a"), open_outbox("b")
    day = 86_400.0
    now = time.time()
    old_leased, _ = batch(3)
    old, _ = batch(4)
    young, _ = batch(5)
    outbox.commit(old_leased, source="test", now=now - 8 * day)
    outbox.commit(old, source="test", now=now - 8 * day)
    outbox.commit(young, source="test", now=now - day)
    leased = lease_all(other, max_messages=3)  # another instance holds the oldest batch
    assert [r.message_id for r in leased] == message_ids(old_leased)

    assert outbox.expire(C1, older_than=now - 7 * day, now=now, limit=3) == 3  # the limit cuts a batch
    assert outbox.expire(C1, older_than=now - 7 * day, now=now) == 1
    assert outbox.expire(C1, older_than=now - 7 * day, now=now) == 0
    letters = outbox.dead_letters(C1)
    assert sorted(d.message_id for d in letters) == sorted(message_ids(old))
    assert {d.reason for d in letters} == {"expired: undeliverable for 7 days"}
    totals = outbox.counter_totals(C1)
    assert (totals[EXPIRED], totals[DEAD_LETTERED]) == (4, 4)
    assert sorted(drain(outbox)) == sorted(message_ids(young))  # younger ones are still sent
    other.delivered(C1, [r.seq for r in leased])


def test_dead_letter_queued_empties_the_queue_of_a_removed_connector(open_outbox: OpenOutbox):
    outbox = open_outbox()
    first, _ = batch(3)
    second, _ = batch(4)
    outbox.commit(first, source="test")
    outbox.commit(second, source="test")
    assert outbox.dead_letter_queued(C1, reason="connector removed") == 7
    assert lease_all(outbox) == []
    letters = outbox.dead_letters(C1)
    assert sorted(d.message_id for d in letters) == sorted(message_ids(first) + message_ids(second))
    assert {d.reason for d in letters} == {"connector removed"}
    assert EXPIRED not in outbox.counter_totals(C1)


# ---------------------------------------------------------------------------------------- two instances


def test_two_instances_sharing_a_consumer_never_hold_the_same_message(open_outbox: OpenOutbox):
    a, b = open_outbox("a"), open_outbox("b")
    committed: list[str] = []
    for i in range(40):
        received, _ = batch(10)
        (a if i % 2 else b).commit(received, source="test")
        committed += message_ids(received)
    held: dict[str, str] = {}
    lock = threading.Lock()
    clashes: list[str] = []
    taken: dict[str, list[str]] = {"a": [], "b": []}

    def work(name: str, outbox: JetStreamOutbox) -> None:
        empty = 0
        while empty < 3:
            rows = outbox.lease(C1, max_messages=30, max_bytes=10**7, lease_seconds=60)
            if not rows:
                empty += 1
                continue
            with lock:
                for r in rows:
                    if r.message_id in held:
                        clashes.append(r.message_id)
                    held[r.message_id] = name
            time.sleep(0.01)  # the rows are "being sent"
            with lock:
                for r in rows:
                    del held[r.message_id]
            outbox.delivered(C1, [r.seq for r in rows])
            taken[name] += [r.message_id for r in rows]

    threads = [threading.Thread(target=work, args=item) for item in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert clashes == []
    assert sorted(taken["a"] + taken["b"]) == sorted(committed)  # each exactly once
    assert taken["a"] and taken["b"]  # the work was shared


# -------------------------------------------------------------------------------------------- failures


def test_a_node_sigkilled_during_commits_loses_no_acknowledged_event(
    open_outbox: OpenOutbox, nats_cluster: NatsCluster
):
    outbox = open_outbox(timeout=3.0)
    acknowledged: list[str] = []
    failures = 0
    stop = threading.Event()

    def source() -> None:
        nonlocal failures
        while not stop.is_set():
            received, _ = batch(20)
            while not stop.is_set():  # like Braze: a batch not acknowledged is sent again
                try:
                    outbox.commit(received, source="test")
                except StoreUnavailable:
                    failures += 1
                    continue
                acknowledged.extend(message_ids(received))
                break

    thread = threading.Thread(target=source)
    thread.start()
    try:
        assert eventually(lambda: len(acknowledged) >= 400, timeout=20)
        leader = nats_cluster.leader_of(outbox.stream)  # the node every publish goes through
        nats_cluster.kill(leader)
        mark = len(acknowledged)
        assert eventually(lambda: len(acknowledged) >= mark + 400, timeout=30)  # goes on with two nodes
        nats_cluster.restart(leader)
        mark = len(acknowledged)
        assert eventually(lambda: len(acknowledged) >= mark + 200, timeout=30)
    finally:
        stop.set()
        thread.join(30)
    nats_cluster.wait_healthy()
    missing = set(acknowledged)
    deadline = time.monotonic() + 30  # a lease may come back empty while a restarted replica catches up
    while missing and time.monotonic() < deadline:
        missing -= set(drain(outbox, rounds=2000))
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged events never came"


def test_two_nodes_down_commit_fails_in_bounded_time_and_recovers(
    open_outbox: OpenOutbox, nats_cluster: NatsCluster
):
    outbox = open_outbox(timeout=2.0)
    outbox.commit(batch(5)[0], source="test")
    nats_cluster.kill(1)
    nats_cluster.kill(2)
    received, _ = batch(5)
    began = time.monotonic()
    with pytest.raises(StoreUnavailable) as failure:
        outbox.commit(received, source="test")
    assert time.monotonic() - began < 6.0  # twice the timeout, plus slack: never a hang
    assert failure.value.cause == "no quorum", str(failure.value)
    assert "acknowledged" in str(failure.value) and "\n" not in str(failure.value)

    nats_cluster.restart(1, wait=False)
    nats_cluster.restart(2, wait=False)
    deadline = time.monotonic() + 30
    while True:
        try:
            assert outbox.commit(received, source="test").received == 5
            break
        except StoreUnavailable:
            assert time.monotonic() < deadline, "the queue did not work again once the nodes were back"
    nats_cluster.wait_healthy()  # delivery resumes once the consumer's replicas have caught up
    assert len(drain(outbox)) == 10


def test_nats_unreachable_at_start_is_a_clear_error_in_bounded_time():
    urls = [f"nats://127.0.0.1:{port}" for port in free_ports(2)]  # nothing listens there
    began = time.monotonic()
    with pytest.raises(StoreUnavailable) as failure:
        JetStreamOutbox(urls, instance="a", name="nothing", timeout=1.0)
    assert time.monotonic() - began < 4.0
    assert failure.value.cause == "no quorum", str(failure.value)
    assert all(url in str(failure.value) for url in urls)
    assert "Nothing was read or written." in str(failure.value)
