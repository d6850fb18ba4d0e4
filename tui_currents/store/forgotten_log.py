"""The log of messageIds leaving the duplicate window: dead-lettered messages, and the segments dropped once
their ids are older or more than the window keeps.

Whichever process writes the queue (the engine, or its delivery process) logs them in the same transaction;
every writer with a duplicate check (`KnownIds`) reads the rows after the last one it read, at its next
commit, as it reads the segments other processes committed. Each row notes the last outbox seq at its
time, so the two are applied in the order they happened (dead-lettered, then requeued: remembered).

Rows are kept `KEEP_SECONDS`; a writer that has not committed for longer finds a gap in the numbers and
builds its duplicate check again from the store (what it does when it starts)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

import orjson

KEEP_SECONDS = 60.0
_PRUNE_ROWS = 64  # rows looked at per prune: a bounded cost per write, and as many as one write adds

Row = tuple[int, int, str, bytes]  # (seq, the last outbox seq at its time, connector, segment index)


def log(db: sqlite3.Connection, rows: Sequence[tuple[str, bytes]]) -> None:
    """Log (connector, ids) rows, `ids` in a segment index's form ([[messageId, ...], ...], as stored in
    the outbox: a dropped segment's index is logged as it is, unparsed); prune rows past their time."""
    if not rows:
        return
    now = time.time()  # real time, whatever time the caller is told it is: this is about catching up
    after = db.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
    db.executemany(
        "INSERT INTO forgotten_ids (at, after_outbox, connector, ids) VALUES (?, ?, ?, ?)",
        [(now, after, connector, ids) for connector, ids in rows],
    )
    db.execute(
        "DELETE FROM forgotten_ids WHERE seq IN (SELECT seq FROM forgotten_ids ORDER BY seq LIMIT ?)"
        " AND at < ?",
        (_PRUNE_ROWS, now - KEEP_SECONDS),
    )


def ids_index(message_ids: Sequence[str]) -> bytes:
    """Message ids in the form `log` takes."""
    return orjson.dumps([[message_id] for message_id in message_ids])


def last(db: sqlite3.Connection) -> int:
    """The seq of the last row ever logged (0: none)."""
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'forgotten_ids'").fetchone()
    return 0 if row is None else row[0]


def since(db: sqlite3.Connection, upto: int) -> list[Row] | None:
    """The rows after seq `upto`, in order; None when some of them were pruned before being read."""
    rows: list[Row] = db.execute(
        "SELECT seq, after_outbox, connector, ids FROM forgotten_ids WHERE seq > ? ORDER BY seq", (upto,)
    ).fetchall()
    if rows:
        return rows if rows[0][0] == upto + 1 else None
    return rows if last(db) == upto else None
