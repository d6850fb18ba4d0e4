"""Counters of a big commit, written as one row and added to the counters table a few commits later.

A batch of a workspace with many connectors changes thousands of counters (each connector counts each
event type it does not select), and one upsert per counter cost more than the rest of the commit. Such a
commit writes its changes as ONE packed row of `counter_log`, in the same transaction (so they are just as
durable); every few logged commits, a commit adds the whole log to `counters` and empties it. Readers add
the rows still in the log, in the same read transaction, so the figures are always exact.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator

import orjson

from tui_currents.store.schema import BUMP_COUNTER

LOG_OVER = 256  # counter changes a commit upserts directly; more are logged as one row
FOLD_EVERY = 32  # logged commits between two folds into `counters`

Counts = dict[tuple[str, str, str], int]  # (connector, event type, counter name) -> change


def pack(counts: Counts) -> bytes:
    """Counter changes as compact JSON: the connectors once, then [event type, name, n, [connector
    index...]] per change shared by several connectors (the usual case: every connector that does not
    select a type counts the same events)."""
    connectors: dict[str, int] = {}
    groups: dict[tuple[str, str, int], list[int]] = {}
    for (connector, event_type, name), n in counts.items():
        if n:
            index = connectors.setdefault(connector, len(connectors))
            groups.setdefault((event_type, name, n), []).append(index)
    return orjson.dumps([list(connectors), [[*key, indexes] for key, indexes in groups.items()]])


def unpack(blob: bytes) -> Iterator[tuple[str, str, str, int]]:
    """The (connector, event type, name, n) changes of a packed row."""
    connectors, groups = orjson.loads(blob)
    for event_type, name, n, indexes in groups:
        for index in indexes:
            yield connectors[index], event_type, name, n


def log(db: sqlite3.Connection, counts: Counts) -> None:
    """Add the changes to the log (inside the caller's write transaction)."""
    db.execute("INSERT INTO counter_log (counts) VALUES (?)", (pack(counts),))


def logged(db: sqlite3.Connection) -> int:
    """Rows in the log."""
    count: int = db.execute("SELECT count(*) FROM counter_log").fetchone()[0]
    return count


def fold(db: sqlite3.Connection) -> None:
    """Add every logged change to `counters` and empty the log (inside the caller's write transaction)."""
    totals: Counts = {}
    for (blob,) in db.execute("SELECT counts FROM counter_log"):
        for connector, event_type, name, n in unpack(blob):
            key = (connector, event_type, name)
            totals[key] = totals.get(key, 0) + n
    db.executemany(BUMP_COUNTER, [(*key, n) for key, n in totals.items() if n])
    db.execute("DELETE FROM counter_log")


def pending(db: sqlite3.Connection, connector: str | None = None) -> Iterable[tuple[str, str, str, int]]:
    """The changes still in the log (none in a file from before the log existed)."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'counter_log'").fetchone():
        return []
    changes = (change for (blob,) in db.execute("SELECT counts FROM counter_log") for change in unpack(blob))
    return [change for change in changes if connector is None or change[0] == connector]
