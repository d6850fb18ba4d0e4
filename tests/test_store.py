"""The store against real SQLite files: commit, duplicates, leases, retries, dead letters, expiry, the tail,
readers in another process, and the failures a disk can throw at it (a real full filesystem)."""

from __future__ import annotations

import os
import random
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest

from tui_currents.mapping import ConnectorRules, Fate, Outcome, map_event, normalise
from tui_currents.store import (
    TAIL_DEAD_LETTER,
    TAIL_DELIVERED,
    TAIL_DUPLICATE,
    ConnectorState,
    ConnectorStatus,
    Store,
    StoreUnavailable,
)

EMAIL_SEND = "users.messages.email.Send"
SMS_SEND = "users.messages.sms.Send"
RULES = ConnectorRules(selected=frozenset({EMAIL_SEND}))
C1 = "Production"
C2 = "Staging"


def record(event_id: str | None = None, *, event_type: str = EMAIL_SEND, padding: int = 0, **changes) -> dict:
    """A Currents email send event in Braze's HTTP shape."""
    rec = {
        "event_type": event_type,
        "id": event_id or str(uuid.uuid4()),
        "time": 1_700_000_000,
        "user": {"user_id": "5f1e0000aaaa", "external_user_id": "user-1", "timezone": "Europe/Paris"},
        "properties": {"campaign_name": "Winter sale", "email_address": "someone@example.com"},
    }
    if padding:
        rec["properties"]["notes"] = "x" * padding
    rec.update(changes)
    return rec


def queued(event_id: str | None = None, **kwargs) -> Outcome:
    outcome = map_event(normalise(record(event_id, **kwargs)), RULES)
    assert outcome.fate == Fate.QUEUED, outcome.reason
    return outcome


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "currents.db", synchronous="NORMAL")
    yield s
    s.close()


def enqueue(store: Store, n: int, connector: str = C1, **kwargs) -> list[str]:
    ids = [f"{connector}-{i}-{uuid.uuid4()}" for i in range(n)]
    store.commit([(connector, queued(i, **kwargs)) for i in ids], source="test")
    return ids


def drain(store: Store, connector: str = C1) -> list[str]:
    """Lease and mark delivered until nothing is due; the message ids in delivery order."""
    out: list[str] = []
    for _ in range(1000):
        rows = store.lease(connector, max_messages=100, max_bytes=10**6, lease_seconds=60)
        if not rows:
            return out
        store.delivered(connector, [r.seq for r in rows])
        out.extend(r.message_id for r in rows)
    raise AssertionError("drain did not finish")


# ------------------------------------------------------------------------------------------ commit


def test_commit_records_every_fate_in_one_go(store: Store):
    good = queued("evt-good")
    items = [
        (C1, good),
        (C1, map_event(normalise(record("evt-sms", event_type=SMS_SEND)), RULES)),
        (C1, map_event(normalise(record("evt-anon", user={"user_id": "braze-9"})), RULES)),
        (C1, map_event(normalise(record("evt-new", event_type="users.messages.pigeon.Send")), RULES)),
        (C1, map_event(normalise(record("evt-bad", time=None)), RULES)),
    ]
    result = store.commit(items, source="receiver")

    assert (result.received, result.queued, result.filtered, result.dead_lettered) == (5, 1, 3, 1)
    backlog = store.backlog(C1)
    assert backlog.messages == 1
    assert backlog.bytes == len(good.encoded)
    assert backlog.dead_letters == 1
    totals = store.counter_totals(C1)
    assert totals == {
        "received": 5,
        "queued": 1,
        "not_selected": 1,
        "anonymous": 1,
        "unsupported": 1,
        "dead_lettered": 1,
    }
    assert store.counters(C1)[C1][SMS_SEND] == {"received": 1, "not_selected": 1}

    [letter] = store.dead_letters(C1)
    assert letter.message_id == "evt-bad"
    assert "time" in letter.reason
    assert orjson.loads(letter.event)["id"] == "evt-bad"  # the record as received, for the user to fix
    assert letter.message is None

    tail = store.tail()
    assert [(r.message_id, r.fate, r.update) for r in tail] == [
        ("evt-good", "queued", False),
        ("evt-sms", "not selected", False),
        ("evt-anon", "anonymous", False),
        ("evt-new", "unsupported", False),
        ("evt-bad", "rejected", False),
    ]
    assert tail[0].message == good.encoded  # the exact Segment message, for the TUI
    assert tail[0].segment_event == "Email Sent"
    assert tail[0].user == "user-1"
    assert tail[0].source == "receiver"
    assert tail[2].user == "braze-9"  # the Braze id when there is no external id
    assert all(r.message is None for r in tail[1:])


def test_duplicates_collapse_within_a_batch_across_batches_and_after_delivery(store: Store):
    first = store.commit([(C1, queued("a")), (C1, queued("b")), (C1, queued("a"))], source="test")
    assert (first.queued, first.duplicates) == (2, 1)
    again = store.commit([(C1, queued("b")), (C1, queued("c"))], source="test")
    assert (again.queued, again.duplicates) == (1, 1)
    # The same message for another connector is not a duplicate: connectors deliver independently.
    other = store.commit([(C2, queued("a"))], source="test")
    assert (other.queued, other.duplicates) == (1, 0)

    assert sorted(drain(store)) == ["a", "b", "c"]
    late = store.commit([(C1, queued("a")), (C1, queued("d"))], source="test")
    assert (late.queued, late.duplicates) == (1, 1)  # "a" was delivered: not sent again
    assert drain(store) == ["d"]

    totals = store.counter_totals(C1)
    assert totals["queued"] == 4
    assert totals["duplicate"] == 3
    assert totals["delivered"] == 4
    assert store.backlog(C1).messages == 0
    dup_rows = [r for r in store.tail(connector=C1) if r.fate == TAIL_DUPLICATE]
    assert [r.message_id for r in dup_rows] == ["a", "b", "a"]
    assert all(r.message is None and "already" in r.reason for r in dup_rows)


def test_delivered_ids_are_forgotten_past_the_count_bound(tmp_path: Path):
    with Store(tmp_path / "s.db", delivered_window_max=3) as store:
        for batch in range(4):
            store.commit([(C1, queued(f"m{batch}-{i}")) for i in range(3)], source="test")
            drain(store)
        # Only the last 3 delivered ids are remembered: an older one is queued again, a recent one is not.
        result = store.commit([(C1, queued("m0-0")), (C1, queued("m3-2"))], source="test")
        assert (result.queued, result.duplicates) == (1, 1)
        assert drain(store) == ["m0-0"]


def test_delivered_ids_are_forgotten_past_the_time_bound(tmp_path: Path):
    day = 86_400.0
    with Store(tmp_path / "s.db", delivered_window_days=7) as store:
        start = time.time()
        store.commit([(C1, queued("old"))], source="test", now=start)
        [row] = store.lease(C1, max_messages=10, max_bytes=10**6, lease_seconds=60, now=start)
        store.delivered(C1, [row.seq], now=start)
        # Eight days later another delivery prunes what is older than the window.
        store.commit([(C1, queued("new"))], source="test", now=start + 8 * day)
        [row] = store.lease(C1, max_messages=10, max_bytes=10**6, lease_seconds=60, now=start + 8 * day)
        store.delivered(C1, [row.seq], now=start + 8 * day)
        result = store.commit([(C1, queued("old")), (C1, queued("new"))], source="test", now=start + 8 * day)
        assert (result.queued, result.duplicates) == (1, 1)


def test_a_failing_commit_leaves_nothing_behind(store: Store):
    enqueue(store, 3)
    before = (store.backlog(C1), store.counter_totals(), store.tail_last_seq())
    broken = map_event(normalise(record("will-break", time=None)), RULES)
    broken.reason = ("not", "bindable")  # its dead letter fails inside the transaction, after other rows
    items = [(C1, queued("fine-1")), (C1, queued("fine-2")), (C1, broken)]
    with pytest.raises(sqlite3.Error):
        store.commit(items, source="test")
    assert (store.backlog(C1), store.counter_totals(), store.tail_last_seq()) == before
    store.commit([(C1, queued("fine-1"))], source="test")  # still usable, and fine-1 was not kept
    assert store.backlog(C1).messages == 4


# ------------------------------------------------------------------------------------------ leases


def test_lease_takes_due_messages_in_order_within_count_and_byte_bounds(store: Store):
    ids = enqueue(store, 10)
    size = store.backlog(C1).bytes // 10
    rows = store.lease(C1, max_messages=4, max_bytes=10**6, lease_seconds=60)
    assert [r.message_id for r in rows] == ids[:4]
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    # Bytes: stop before the message that would go over, never split or exceed.
    rows = store.lease(C1, max_messages=100, max_bytes=size * 3 + size // 2, lease_seconds=60)
    assert [r.message_id for r in rows] == ids[4:7]
    assert sum(r.bytes for r in rows) <= size * 3 + size // 2
    # Leased messages are not leased twice; the rest are.
    rows = store.lease(C1, max_messages=100, max_bytes=10**6, lease_seconds=60)
    assert [r.message_id for r in rows] == ids[7:]
    assert store.lease(C1, max_messages=100, max_bytes=10**6, lease_seconds=60) == []


def test_a_message_larger_than_the_byte_bound_comes_alone(store: Store):
    store.commit([(C1, queued("small")), (C1, queued("big", padding=5000))], source="test")
    [first] = store.lease(C1, max_messages=10, max_bytes=1000, lease_seconds=60)
    assert first.message_id == "small"
    [big] = store.lease(C1, max_messages=10, max_bytes=1000, lease_seconds=60)
    assert big.message_id == "big" and big.bytes > 5000


def test_leases_run_out_and_are_released_at_start(store: Store):
    ids = enqueue(store, 3)
    now = time.time()
    assert len(store.lease(C1, max_messages=10, max_bytes=10**6, lease_seconds=30, now=now)) == 3
    assert store.lease(C1, max_messages=10, max_bytes=10**6, lease_seconds=30, now=now + 29) == []
    # A lease that ran out (its holder died) makes the messages due again.
    again = store.lease(C1, max_messages=10, max_bytes=10**6, lease_seconds=30, now=now + 31)
    assert [r.message_id for r in again] == ids
    assert store.release_leases() == 3
    assert len(store.lease(C1, max_messages=10, max_bytes=10**6, lease_seconds=30)) == 3


def test_connectors_have_separate_queues(store: Store):
    enqueue(store, 5, connector=C2)
    mine = enqueue(store, 2, connector=C1)
    rows = store.lease(C1, max_messages=100, max_bytes=10**6, lease_seconds=60)
    assert [r.message_id for r in rows] == mine
    store.delivered(C2, [r.seq for r in rows])  # another connector's seqs: nothing happens
    assert store.backlog(C1).messages == 2
    assert store.backlog(C2).messages == 5


def test_retry_later_counts_attempts_and_waits(store: Store):
    enqueue(store, 2)
    now = time.time()
    rows = store.lease(C1, max_messages=10, max_bytes=10**6, lease_seconds=60, now=now)
    store.retry_later(C1, [r.seq for r in rows], retry_at=now + 10, error="503 Service Unavailable")
    assert store.lease(C1, max_messages=10, max_bytes=10**6, lease_seconds=60, now=now + 9) == []
    rows = store.lease(C1, max_messages=10, max_bytes=10**6, lease_seconds=60, now=now + 10)
    assert [r.attempts for r in rows] == [1, 1]
    # A wait Segment asked for does not count as an attempt.
    store.retry_later(C1, [r.seq for r in rows], retry_at=now + 20, error="429", count_attempt=False)
    rows = store.lease(C1, max_messages=10, max_bytes=10**6, lease_seconds=60, now=now + 20)
    assert [r.attempts for r in rows] == [1, 1]
    store.release(C1, [r.seq for r in rows], retry_at=now + 30)
    assert store.lease(C1, max_messages=10, max_bytes=10**6, lease_seconds=60, now=now + 29) == []
    assert store.counter_totals(C1)["retried"] == 4


# ------------------------------------------------------------------------------------ dead letters


def test_dead_letters_requeue_and_export(store: Store, tmp_path: Path):
    ids = enqueue(store, 4)
    store.commit([(C1, map_event(normalise(record("unmappable", time="soon")), RULES))], source="test")
    rows = store.lease(C1, max_messages=10, max_bytes=10**6, lease_seconds=60)
    reason = "Segment rejected this message: 400 Bad Request"
    assert store.dead_letter(C1, [rows[0].seq, rows[1].seq], reason=reason) == 2
    store.delivered(C1, [r.seq for r in rows[2:]])
    assert store.backlog(C1).messages == 0
    assert store.backlog(C1).dead_letters == 3
    letters = store.dead_letters(C1)
    assert [d.message_id for d in letters] == [ids[1], ids[0], "unmappable"]  # newest first
    assert orjson.loads(letters[0].message)["messageId"] == ids[1]

    out = tmp_path / "dead.jsonl"
    assert store.export_dead_letters(out, C1) == 3
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [line["message_id"] for line in lines] == ["unmappable", ids[0], ids[1]]
    assert lines[1]["reason"] == reason
    assert lines[1]["message"]["messageId"] == ids[0]  # nested JSON, not a string
    assert lines[0]["event"]["time"] == "soon" and lines[0]["message"] is None

    # Requeue: the ones with a Segment message go back (attempts reset); the unmappable one stays.
    assert store.requeue(C1) == 2
    assert [d.message_id for d in store.dead_letters(C1)] == ["unmappable"]
    again = store.lease(C1, max_messages=10, max_bytes=10**6, lease_seconds=60)
    assert sorted(r.message_id for r in again) == sorted(ids[:2])
    assert all(r.attempts == 0 for r in again)
    assert store.backlog(C1).messages == 2
    assert store.backlog(C1).dead_letters == 1
    assert store.counter_totals(C1)["requeued"] == 2


def test_requeue_by_ids_and_paging(store: Store):
    enqueue(store, 6)
    rows = store.lease(C1, max_messages=10, max_bytes=10**6, lease_seconds=60)
    store.dead_letter(C1, [r.seq for r in rows], reason="test")
    page = store.dead_letters(C1, limit=4)
    rest = store.dead_letters(C1, limit=4, before=page[-1].id)
    assert len(page) == 4 and len(rest) == 2
    assert {d.id for d in page}.isdisjoint(d.id for d in rest)
    chosen = [page[0].id, rest[-1].id]
    assert store.requeue(ids=chosen) == 2
    assert store.backlog(C1).messages == 2
    assert {d.id for d in store.dead_letters(C1)} == {d.id for d in page + rest} - set(chosen)
    assert store.requeue(ids=chosen) == 0  # already done


def test_requeue_when_the_same_message_came_again_meanwhile(store: Store):
    store.commit([(C1, queued("twice")), (C1, queued("thrice"))], source="test")
    rows = store.lease(C1, max_messages=10, max_bytes=10**6, lease_seconds=60)
    store.dead_letter(C1, [r.seq for r in rows], reason="Segment rejected this message: 400")
    # Braze sends both again: "twice" gets delivered, "thrice" is waiting when the requeue comes.
    store.commit([(C1, queued("twice")), (C1, queued("thrice"))], source="test")
    [row] = store.lease(C1, max_messages=1, max_bytes=10**6, lease_seconds=60)
    store.delivered(C1, [row.seq])
    assert store.requeue(C1) == 2
    # Each message waits exactly once: "thrice" was waiting already, "twice" is sent again as asked.
    assert store.backlog(C1).messages == 2
    assert store.backlog(C1).dead_letters == 0
    assert sorted(drain(store)) == ["thrice", "twice"]
    assert store.backlog(C1).messages == 0


def test_expire_moves_old_messages_to_dead_letters_and_spares_leased_ones(store: Store):
    day = 86_400.0
    now = time.time()
    old = [f"old-{i}" for i in range(5)]
    store.commit([(C1, queued(i)) for i in old], source="test", now=now - 8 * day)
    young = enqueue(store, 3)
    [in_flight] = store.lease(C1, max_messages=1, max_bytes=10**6, lease_seconds=600, now=now)
    assert in_flight.message_id == "old-0"

    moved = store.expire(C1, older_than=now - 7 * day, now=now)
    assert moved == 4
    letters = store.dead_letters(C1)
    assert sorted(d.message_id for d in letters) == old[1:]
    assert {d.reason for d in letters} == {"expired: undeliverable for 7 days"}
    assert all(orjson.loads(d.message)["messageId"] == d.message_id for d in letters)
    # Nothing vanished: every message is waiting, in flight, or a dead letter.
    assert store.backlog(C1).messages == 1 + len(young)
    totals = store.counter_totals(C1)
    assert totals["expired"] == 4 and totals["dead_lettered"] == 4


def test_expire_walks_a_long_backlog_in_chunks(store: Store):
    now = time.time()
    store.commit([(C1, queued(f"o{i}")) for i in range(1200)], source="test", now=now - 10_000)
    enqueue(store, 10)
    assert store.expire(C1, older_than=now - 5_000, now=now, limit=700) == 700
    assert store.expire(C1, older_than=now - 5_000, now=now) == 500
    assert store.expire(C1, older_than=now - 5_000, now=now) == 0
    assert store.backlog(C1).messages == 10
    assert store.backlog(C1).dead_letters == 1200


# ------------------------------------------------------------------------------------------- tail


def test_tail_reports_later_fates_as_update_rows(store: Store):
    ids = enqueue(store, 4)
    last = store.tail_last_seq()
    rows = store.lease(C1, max_messages=10, max_bytes=10**6, lease_seconds=60)
    store.delivered(C1, [r.seq for r in rows[:3]])
    store.dead_letter(C1, [rows[3].seq], reason="Segment rejected this message: 400")
    news = store.tail(after=last)
    assert all(r.update for r in news)
    assert [(r.message_id, r.fate) for r in news] == [
        (ids[0], TAIL_DELIVERED),
        (ids[1], TAIL_DELIVERED),
        (ids[2], TAIL_DELIVERED),
        (ids[3], TAIL_DEAD_LETTER),
    ]
    assert news[3].reason == "Segment rejected this message: 400"
    assert all(r.connector == C1 and r.event_type == EMAIL_SEND for r in news)
    # Polling from the last seq seen returns nothing new.
    assert store.tail(after=news[-1].seq) == []
    # The connector filter.
    enqueue(store, 2, connector=C2)
    assert {r.connector for r in store.tail(after=news[-1].seq, connector=C2)} == {C2}
    assert store.tail(after=news[-1].seq, connector=C1) == []


def test_tail_keeps_only_the_last_rows(tmp_path: Path):
    with Store(tmp_path / "s.db", tail_keep=300) as store:
        for _ in range(10):
            enqueue(store, 100)
        rows = store.tail(limit=10_000)
        assert 300 <= len(rows) <= 300 + 100 + max(100, 300 // 10)
        assert rows[-1].seq == store.tail_last_seq() == 1000
        assert [r.seq for r in rows] == list(range(rows[0].seq, 1001))


# ------------------------------------------------------------------------------- states, readers


def test_connector_state_round_trip_and_unknown_keys():
    state = ConnectorState(
        state=ConnectorStatus.PAUSED,
        detail="Segment asked to wait 30 s (429)",
        since=1.5,
        last_error="429 Too Many Requests",
        last_error_at=2.5,
        paused_until=31.5,
    )
    assert ConnectorState.from_json(state.to_json()) == state
    newer = orjson.loads(state.to_json()) | {"added_later": 1}
    assert ConnectorState.from_json(orjson.dumps(newer)) == state


def test_another_process_reads_while_this_one_writes(store: Store):
    store.set_state(C1, ConnectorState(state="running", detail="Sending", since=1.0))
    script = textwrap.dedent(
        f"""
        import sys, time
        from tui_currents.store import Store
        reader = Store({str(store.path)!r}, readonly=True)
        print(reader.states()[{C1!r}].state, flush=True)
        last, seen, backlog = 0, 0, 0
        deadline = time.time() + 20
        while time.time() < deadline:
            rows = reader.tail(after=last, limit=5000)
            for row in rows:
                assert row.seq > last or row.update, (row.seq, last)
            if rows:
                last = rows[-1].seq
                seen += sum(1 for r in rows if not r.update)
            backlog = max(backlog, reader.backlog({C1!r}).messages)
            if seen >= 2000:
                break
            time.sleep(0.01)
        print(seen, backlog, reader.counter_totals({C1!r}).get("queued", 0), flush=True)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    reader = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert reader.stdout.readline().strip() == "running"
        for _ in range(20):
            enqueue(store, 100)
            time.sleep(0.01)
        out, err = reader.communicate(timeout=30)
    finally:
        reader.kill()
    assert reader.returncode == 0, err
    seen, backlog, queued_count = (int(x) for x in out.split())
    assert seen == 2000
    assert 0 < backlog <= 2000
    assert queued_count >= backlog


def test_readonly_store_refuses_writes_with_a_clear_error(store: Store):
    enqueue(store, 1)
    reader = Store(store.path, readonly=True)
    try:
        assert reader.backlog(C1).messages == 1
        with pytest.raises(StoreUnavailable) as caught:
            reader.commit([(C1, queued())], source="test")
        assert caught.value.cause == "read-only"
        assert "Nothing from this batch was saved" in str(caught.value)
    finally:
        reader.close()
    with pytest.raises(StoreUnavailable) as caught:
        Store(store.path.parent / "missing.db", readonly=True)
    assert "engine creates it" in str(caught.value)


def test_a_lock_held_too_long_is_reported_not_hung(tmp_path: Path):
    path = tmp_path / "s.db"
    with Store(path, busy_timeout=0.2) as store:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as caught:
                store.commit([(C1, queued())], source="test")
            assert time.monotonic() - started < 5
            assert caught.value.cause == "locked"
            assert "0.2 s" in str(caught.value)
        finally:
            other.execute("ROLLBACK")
            other.close()
        store.commit([(C1, queued())], source="test")
        assert store.backlog(C1).messages == 1


def test_freed_pages_are_not_zeroed_twice_over(store: Store):
    # 2 is FAST: deleted content is zeroed in the pages written anyway, freed pages are not rewritten.
    assert store._read("PRAGMA secure_delete") == [(2,)]


def test_files_are_private(store: Store):
    enqueue(store, 1)
    for suffix in ("", "-wal", "-shm"):
        path = Path(str(store.path) + suffix)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


# --------------------------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 2 MB filesystem (tmpfs), so that SQLite meets an honest "disk full"."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount_point)],
            check=True,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        # CI runs as root: a disk-full test that quietly does not run proves nothing, so say so loudly.
        pytest.fail(f"cannot mount a small tmpfs for the disk-full test (needs root and mount): {exc}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False, capture_output=True, timeout=10)


def test_disk_full_rolls_back_the_batch_and_recovers_when_space_returns(small_disk: Path):
    store = Store(small_disk / "currents.db", synchronous="FULL")
    try:
        filler = small_disk / "filler"
        enqueue(store, 20)
        # Take most of the remaining space, then commit until the disk is full.
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        filler.write_bytes(b"\0" * max(0, free - 200_000))
        committed = 20
        error = None
        for _ in range(200):
            before = (store.backlog(C1), store.counter_totals(C1), store.tail_last_seq())
            try:
                enqueue(store, 50, padding=2000)
                committed += 50
            except StoreUnavailable as exc:
                error = exc
                break
        assert error is not None, "the disk never filled up"
        assert error.cause == "disk full"
        assert "is full" in str(error) and "Nothing from this batch was saved" in str(error)
        # All or nothing: the failed batch left no outbox row, counter or tail row behind.
        assert (store.backlog(C1), store.counter_totals(C1), store.tail_last_seq()) == before
        assert store.backlog(C1).messages == committed

        filler.unlink()  # space returns: the same store works again, without reopening
        enqueue(store, 50, padding=2000)
        assert store.backlog(C1).messages == committed + 50
        assert len(drain(store)) == committed + 50
    finally:
        store.close()


def test_a_console_can_read_a_store_no_engine_has_open(tmp_path: Path):
    path = tmp_path / "currents.db"
    with Store(path) as writer:
        enqueue(writer, 3)
        writer.set_state(C1, ConnectorState(state="idle", since=1.0))
    reader = Store(path, readonly=True)
    try:
        assert reader.backlog(C1).messages == 3
        assert reader.states()[C1].state == "idle"
    finally:
        reader.close()


# ------------------------------------------------------------------------------------ throughput


@pytest.mark.soak
@pytest.mark.timeout(300)
def test_throughput_figures(tmp_path: Path):
    """Enqueue 200,000 mapped events in batches of 100 and 1,000 (FULL and NORMAL), then lease and mark
    delivered all of them; prints the rates. The floor asserted is far below what a laptop does: it only
    catches a gross regression (a sort, a scan of the backlog, a transaction per message)."""
    n = 200_000
    outcomes = [queued(str(uuid.uuid4())) for _ in range(n)]
    lines = []
    for sync in ("FULL", "NORMAL"):
        for batch in (100, 1000):
            folder = tmp_path / f"{sync}-{batch}"
            folder.mkdir()
            with Store(folder / "s.db", synchronous=sync) as store:
                started = time.perf_counter()
                for i in range(0, n, batch):
                    store.commit([(C1, o) for o in outcomes[i : i + batch]], source="bench")
                enqueue_rate = n / (time.perf_counter() - started)
                started = time.perf_counter()
                done = 0
                while rows := store.lease(C1, max_messages=2500, max_bytes=470_000, lease_seconds=60):
                    done += store.delivered(C1, [r.seq for r in rows])
                deliver_rate = done / (time.perf_counter() - started)
                assert done == n
            lines.append(
                f"{sync:6} batches of {batch:5,}: enqueue {enqueue_rate:8,.0f}/s,"
                f" lease+delivered {deliver_rate:8,.0f}/s"
            )
            assert enqueue_rate > 3_000 and deliver_rate > 5_000
    print("\n" + "\n".join(lines))


# ---------------------------------------------------------------------------------------- upgrade

# The first schema's outbox (a row per message) and tail, as stores written by version 0.1 hold them.
SCHEMA_V1 = """
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, connector TEXT NOT NULL, message_id TEXT NOT NULL,
    event_type TEXT NOT NULL, body BLOB, bytes INTEGER NOT NULL, enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, retry_at REAL NOT NULL DEFAULT 0,
    leased_until REAL NOT NULL DEFAULT 0, last_error TEXT, delivered_at REAL, UNIQUE (connector, message_id)
);
CREATE INDEX outbox_waiting ON outbox (connector) WHERE delivered_at IS NULL;
CREATE INDEX outbox_delivered ON outbox (delivered_at) WHERE delivered_at IS NOT NULL;
CREATE TABLE backlog (
    connector TEXT PRIMARY KEY, messages INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0,
    dead_letters INTEGER NOT NULL DEFAULT 0, remembered INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE tail (
    seq INTEGER PRIMARY KEY, at REAL NOT NULL, connector TEXT NOT NULL, event_type TEXT NOT NULL,
    segment_event TEXT, user TEXT, fate TEXT NOT NULL, reason TEXT, message_id TEXT, source TEXT,
    message BLOB, message_ids BLOB
);
PRAGMA user_version = 1;
"""


def test_a_store_of_the_first_schema_is_upgraded_without_losing_a_message(tmp_path: Path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA_V1)
    now = time.time()
    waiting = [queued(f"w{i}") for i in range(3)]
    for i, outcome in enumerate(waiting):
        old.execute(
            "INSERT INTO outbox (connector, message_id, event_type, body, bytes, enqueued_at, attempts,"
            " retry_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (C1, f"w{i}", EMAIL_SEND, outcome.encoded, len(outcome.encoded), now, 2 if i == 1 else 0, 0),
        )
    old.execute(
        "INSERT INTO outbox (connector, message_id, event_type, bytes, enqueued_at, delivered_at)"
        " VALUES (?, 'sent', ?, 10, ?, ?)",
        (C1, EMAIL_SEND, now - 60, now - 30),
    )
    size = sum(len(o.encoded) for o in waiting)
    old.execute("INSERT INTO backlog VALUES (?, 3, ?, 0, 1)", (C1, size))
    old.execute(
        "INSERT INTO tail (at, connector, event_type, fate) VALUES (?, ?, ?, 'queued')", (now, C1, EMAIL_SEND)
    )
    old.commit()
    old.close()

    with Store(path) as store:
        assert store.backlog(C1).messages == 3 and store.backlog(C1).bytes == size
        rows = store.lease(C1, max_messages=10, max_bytes=10**6, lease_seconds=60)
        assert [(r.message_id, r.attempts) for r in rows] == [("w0", 0), ("w1", 2), ("w2", 0)]
        assert [r.body for r in rows] == [o.encoded for o in waiting]
        # The delivered id is still remembered: Braze sending it again is a duplicate.
        result = store.commit([(C1, queued("sent")), (C1, queued("w1")), (C1, queued("new"))], source="test")
        assert (result.queued, result.duplicates) == (1, 2)
        assert store.tail() != []  # the tail starts afresh in its new form


def test_duplicates_collapse_across_processes_writing_the_same_store(store: Store):
    # An import in another process and the engine's receiver both queue events: each sees the other's ids.
    store.commit([(C1, queued("live"))], source="receiver")
    with Store(store.path, synchronous="NORMAL") as importer:
        result = importer.commit([(C1, queued("live")), (C1, queued("backfill"))], source="import")
        assert (result.queued, result.duplicates) == (1, 1)
    result = store.commit([(C1, queued("backfill")), (C1, queued("next"))], source="receiver")
    assert (result.queued, result.duplicates) == (1, 1)
    assert sorted(drain(store)) == ["backfill", "live", "next"]


def test_a_big_commit_is_stored_as_several_segments_and_delivered_in_order(store: Store, monkeypatch):
    from tui_currents import segments

    monkeypatch.setattr(segments, "MAX_MESSAGES", 7)
    ids = enqueue(store, 30)
    assert store._read("SELECT count(*) FROM outbox")[0][0] == 5
    assert drain(store) == ids
    assert store.backlog(C1).messages == 0


def test_the_tail_can_leave_the_messages_out(store: Store):
    ids = enqueue(store, 3)
    full, light = store.tail(), store.tail(messages=False)
    assert [r.message_id for r in light] == [r.message_id for r in full] == ids
    assert all(r.message is not None for r in full) and all(r.message is None for r in light)
    assert [r.seq for r in light] == [r.seq for r in full]


def test_a_failed_commit_does_not_hide_what_another_process_commits_next(store: Store):
    # A rolled-back commit's outbox seq is handed out again: the next writer may take it.
    broken = map_event(normalise(record("will-break", time=None)), RULES)
    broken.reason = ("not", "bindable")
    with pytest.raises(sqlite3.Error):
        store.commit([(C1, queued("lost-in-rollback")), (C1, broken)], source="test")
    with Store(store.path, synchronous="NORMAL") as importer:
        importer.commit([(C1, queued("from-the-import"))], source="import")
    result = store.commit([(C1, queued("from-the-import")), (C1, queued("lost-in-rollback"))], source="test")
    assert (result.queued, result.duplicates) == (1, 1)


def test_leasing_a_run_at_once_picks_what_leasing_one_by_one_would(tmp_path: Path, monkeypatch):
    """The usual segment is leased in one go (`_take_run`); random leases, deliveries, retries, releases
    and expired leases on two stores, one of them forced to go message by message, must agree."""
    from tui_currents.store import reader as store_module

    quick = Store(tmp_path / "quick.db", synchronous="NORMAL")
    slow = Store(tmp_path / "slow.db", synchronous="NORMAL")
    real_free_from = store_module._free_from

    def with_run(enabled: bool):
        monkeypatch.setattr(store_module, "_free_from", real_free_from if enabled else lambda *_: None)

    rng = random.Random(11)
    now = 1_800_000_000.0
    for batch in range(6):
        outcomes = [
            (C1, queued(f"m{batch}-{i}", padding=rng.randint(0, 300))) for i in range(rng.randint(1, 40))
        ]
        for s in (quick, slow):
            s.commit(outcomes, source="test", now=now)
    held: list[list[int]] = []
    for step in range(300):
        now += rng.choice((0.0, 1.0, 5.0))
        action = rng.random()
        if action < 0.5 or not held:
            bounds = {
                "max_messages": rng.randint(1, 30),
                "max_bytes": rng.randint(1, 6_000),
                "lease_seconds": rng.choice((3.0, 60.0)),
            }
            leases = []
            for s, enabled in ((quick, True), (slow, False)):
                with_run(enabled)
                rows = s.lease(C1, now=now, **bounds)
                leases.append([(r.seq, r.message_id, r.body, r.attempts) for r in rows])
            assert leases[0] == leases[1], f"step {step}"
            if leases[0]:
                held.append([seq for seq, *_ in leases[0]])
            continue
        addresses = held.pop(rng.randrange(len(held)))
        for s in (quick, slow):
            if action < 0.8:
                s.delivered(C1, addresses, now=now)
            elif action < 0.9:
                s.retry_later(C1, addresses, retry_at=now + 2, error="503")
            else:
                s.release(C1, addresses)
    with_run(True)
    assert drain(quick) == drain(slow)
    quick.close()
    slow.close()


def test_a_lease_does_not_wait_for_another_writer(tmp_path: Path):
    """Leases read on their own connection: a long write by another program (an import committing a big
    chunk) does not hold up sending what is already queued."""
    store = Store(tmp_path / "currents.db", synchronous="NORMAL", busy_timeout=5.0)
    ids = enqueue(store, 20)
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock
    other.execute("UPDATE backlog SET bytes = bytes")
    try:
        started = time.monotonic()
        rows = store.lease(C1, max_messages=100, max_bytes=10**6, lease_seconds=60)
        assert time.monotonic() - started < 1.0
        assert [r.message_id for r in rows] == ids
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.delivered(C1, [r.seq for r in rows]) == 20
    store.close()


def test_concurrent_leases_and_deliveries_send_each_message_once(tmp_path: Path):
    """Threads leasing and marking delivered while another commits: a message is never leased again once
    leased or delivered (leases see a snapshot; in-memory changes wait for their commit)."""
    store = Store(tmp_path / "currents.db", synchronous="NORMAL")
    total = 6_000
    leased: list[str] = []
    errors: list[BaseException] = []
    fed = threading.Event()

    def feed() -> None:
        for start in range(0, total, 500):
            store.commit([(C1, queued(f"m-{i}")) for i in range(start, start + 500)], source="test")
        fed.set()

    def deliver() -> None:
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                rows = store.lease(C1, max_messages=rng_size(), max_bytes=10**6, lease_seconds=60)
                if not rows:
                    if fed.is_set() and store.backlog(C1).messages == 0:
                        return
                    time.sleep(0.001)
                    continue
                leased.extend(r.message_id for r in rows)
                store.delivered(C1, [r.seq for r in rows])
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    sizes = random.Random(2)
    size_lock = threading.Lock()

    def rng_size() -> int:
        with size_lock:
            return sizes.randint(1, 400)

    threads = [threading.Thread(target=feed), *(threading.Thread(target=deliver) for _ in range(4))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert len(leased) == total and len(set(leased)) == total
    assert store.counter_totals(C1)["delivered"] == total
    assert store.backlog(C1).messages == 0
    store.close()
