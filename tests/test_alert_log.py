"""The store's alert log: its tables are part of the store file's schema, opened with the store's busy
timeout and error mapping. Real SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tui_currents.alerts import open_alerts, recent_alerts
from tui_currents.store import SCHEMA_VERSION, Store, StoreUnavailable
from tui_currents.store.alert_log import PENDING, SENT, NewAlert

T0 = 1_717_200_000.0


def draft(connector: str = "Marketing", *, at: float = T0, email: str = PENDING) -> NewAlert:
    return NewAlert(
        at, connector, "credentials rejected", "alert", at, "ops@example.com", "subject", "body", email
    )


def make_schema_2_store(path: Path) -> None:
    """A store file as the version before the alert tables were part of the schema left it."""
    Store(path).close()
    db = sqlite3.connect(path)
    try:
        db.executescript("DROP TABLE alerts; DROP TABLE alert_state; PRAGMA user_version = 2;")
    finally:
        db.close()


def tables(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()


def test_a_store_of_the_previous_schema_gains_the_alert_tables_on_opening(tmp_path: Path) -> None:
    path = tmp_path / "currents.db"
    make_schema_2_store(path)
    assert "alerts" not in tables(path)
    assert recent_alerts(path) == [] and open_alerts(path) == []  # read-only: no upgrade, no error

    with Store(path) as store:
        [recorded] = store.record_alerts(
            [draft()], {("Marketing", "credentials rejected"): '{"alerted": true}'}
        )
        assert store.recent_alerts() == [recorded] and store.open_alerts() == [recorded]
    assert {"alerts", "alert_state", "outbox", "dead_letters"} <= tables(path)
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    finally:
        db.close()
    [alert] = recent_alerts(path)
    assert alert.id == recorded.id and alert.subject == "subject"


def test_alert_log_writes_fail_as_store_unavailable_with_what_was_kept(tmp_path: Path) -> None:
    path = tmp_path / "currents.db"
    Store(path).close()
    with Store(path, readonly=True) as store:
        with pytest.raises(StoreUnavailable, match="Could not record alerts in .*read-only") as failed:
            store.record_alerts([draft()], {})
        assert failed.value.cause == "read-only"


def test_a_locked_store_fails_alert_writes_after_the_stores_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "currents.db"
    with Store(path, busy_timeout=0.2) as store:
        [recorded] = store.record_alerts([draft()], {})
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
            with pytest.raises(StoreUnavailable, match="more than 0.2 s") as failed:
                store.alert_sent(recorded.id, T0 + 1)
            assert failed.value.cause == "locked"
            other.execute("ROLLBACK")
        finally:
            other.close()
        store.alert_sent(recorded.id, T0 + 2)  # works again once the lock is gone
        [sent] = store.recent_alerts()
        assert (sent.email, sent.sent_at, sent.attempts) == (SENT, T0 + 2, 1)


def test_pending_failed_given_up_and_pruned(tmp_path: Path) -> None:
    with Store(tmp_path / "currents.db") as store:
        first, second = store.record_alerts([draft(at=T0), draft(at=T0 + 10)], {})
        assert [a.id for a in store.pending_alerts()] == [first.id, second.id]
        assert [a.id for a in store.pending_alerts(before=T0 + 5)] == [first.id]
        store.alert_send_failed(first.id, "the server did not answer")
        store.alert_given_up(second.id)
        [still] = store.pending_alerts()
        assert (still.id, still.attempts, still.last_error) == (first.id, 1, "the server did not answer")
        assert store.recent_alerts(1)[0].email == "gave up"
        assert store.recent_alerts(connector="Other") == []
        # Kept: the newest 1,000 that are not pending, and every pending one.
        store.record_alerts([draft(at=T0 + 20 + i, email="not emailed") for i in range(1005)], {})
        kept = store.recent_alerts(5000)
        assert len(kept) == 1001 and first.id in {a.id for a in kept}


def test_forgotten_memories_close_their_alerts(tmp_path: Path) -> None:
    with Store(tmp_path / "currents.db") as store:
        key = ("Marketing", "credentials rejected")
        store.record_alerts([draft()], {key: '{"alerted": true}'})
        assert store.alert_memories() == {key: '{"alerted": true}'}
        assert len(store.open_alerts()) == 1
        assert store.record_alerts([], {}, forget=[key]) == []
        assert store.alert_memories() == {} and store.open_alerts() == []


def test_alerts_recorded_before_the_tables_were_in_the_schema_are_kept(tmp_path: Path) -> None:
    # Earlier versions created the alert tables beside a schema-2 store: the upgrade keeps their rows.
    path = tmp_path / "currents.db"
    with Store(path) as store:
        [old] = store.record_alerts([draft()], {("Marketing", "credentials rejected"): '{"alerted": true}'})
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA user_version = 2")
        db.commit()
    finally:
        db.close()
    with Store(path) as store:
        assert store.recent_alerts() == [old] and store.open_alerts() == [old]
        assert store.alert_memories() == {("Marketing", "credentials rejected"): '{"alerted": true}'}
