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

from tui_currents.outbox import FATE_COUNTER, NOT_SELECTED, RECEIVED
from tui_currents.store.schema import BUMP_COUNTER

LOG_OVER = 256  # counter changes (or mapping fates) a commit upserts directly; more are logged as one row
FOLD_EVERY = 32  # logged commits between two folds into `counters`

Counts = dict[tuple[str, str, str], int]  # (connector, event type, counter name) -> change


def _groups(changes: Counts, connectors: dict[str, int]) -> list[list]:
    """[event type, name, n, [connector index...]] per change that several connectors share."""
    groups: dict[tuple[str, str, int], list[int]] = {}
    for (connector, event_type, name), n in changes.items():
        if not n:
            continue
        index = connectors.get(connector)
        if index is None:
            index = connectors[connector] = len(connectors)
        key = (event_type, name, n)
        group = groups.get(key)
        if group is None:
            groups[key] = [index]
        else:
            group.append(index)
    return [[*key, indexes] for key, indexes in groups.items()]


def pack(counts: Counts, fates: Counts | None = None) -> bytes:
    """Counter changes as compact JSON: the connectors once, then the changes grouped by what several
    connectors share (the usual case: every connector that does not select a type counts the same events).
    `fates` are events per (connector, event type, mapping fate): each counts as received and under its
    fate's counter (outbox.FATE_COUNTER)."""
    connectors: dict[str, int] = {}
    by_counter = _groups(counts, connectors)
    by_fate = _groups(fates or {}, connectors)
    return orjson.dumps([list(connectors), by_counter, by_fate])


def unpack(blob: bytes) -> Iterator[tuple[str, str, str, int]]:
    """The (connector, event type, counter name, n) changes of a packed row."""
    connectors, by_counter, by_fate = orjson.loads(blob)
    for event_type, name, n, indexes in by_counter:
        for index in indexes:
            yield connectors[index], event_type, name, n
    for event_type, fate, n, indexes in by_fate:
        counter = FATE_COUNTER.get(fate, NOT_SELECTED)
        for index in indexes:
            yield connectors[index], event_type, RECEIVED, n
            yield connectors[index], event_type, counter, n


def log(db: sqlite3.Connection, counts: Counts, fates: Counts | None = None) -> None:
    """Add the changes to the log (inside the caller's write transaction)."""
    db.execute("INSERT INTO counter_log (counts) VALUES (?)", (pack(counts, fates),))


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
