"""How far the alert webhook got through the store's `alerts` table, kept in the same file so that a
restart neither loses nor repeats a post (see `tui_currents.webhook`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tui_currents.store.alert_log import ANOTHER_INSTANCE
from tui_currents.store.side_connection import connect

ALERT_COLUMNS = "id, at, connector, kind, phase, since, subject, body"
_DOING = "read the alerts for the webhook"


def next_alerts(path: Path, *, enabled: bool, started_at: float, limit: int) -> list[tuple]:
    """Up to `limit` alert rows after the cursor, oldest first (as ALERT_COLUMNS). While the webhook is
    off none are returned and the cursor follows the newest alert; at the very first look, alerts from
    before `started_at` are passed over as old news. A cluster's alert another instance claimed is that
    instance's to post."""
    db = connect(path, _DOING)
    try:
        row = db.execute("SELECT last FROM webhook_cursor WHERE id = 1").fetchone()
        if not enabled:
            _save(db, db.execute("SELECT coalesce(max(id), 0) FROM alerts").fetchone()[0])
            return []
        if row is None:
            before = "SELECT coalesce(max(id), 0) FROM alerts WHERE at < ?"
            row = (db.execute(before, (started_at,)).fetchone()[0],)
            _save(db, row[0])
        return db.execute(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id > ? AND email != ? ORDER BY id LIMIT ?",
            (row[0], ANOTHER_INSTANCE, limit),
        ).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []  # the alert monitor has not made its tables yet
        raise
    finally:
        db.close()


def advance(path: Path, alert_id: int) -> None:
    """Move the cursor past `alert_id` (never back)."""
    db = connect(path, "record the webhook's progress")
    try:
        _save(db, alert_id)
    finally:
        db.close()


def _save(db: sqlite3.Connection, last: int) -> None:
    db.execute(
        "INSERT INTO webhook_cursor (id, last) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET last = "
        "max(last, excluded.last)",
        (last,),
    )
