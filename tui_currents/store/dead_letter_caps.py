"""Bounds on the dead letters, so that a flood of bad events cannot fill the disk: per request, in total
(the oldest dropped first) and per raw event. Every drop is counted (DEAD_LETTERS_DROPPED) and logged."""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter

import orjson

from tui_currents.outbox import (  # the caps are part of the contract: both queues apply them
    DEAD_LETTERS_DROPPED,
)
from tui_currents.store.schema import BUMP_BACKLOG, BacklogChange

log = logging.getLogger("tui_currents.store")

TRIM_PER_WRITE = 5_000  # dead letters dropped in one transaction at most (a lowered cap catches up)


def bounded_event(record: bytes | None, limit: int) -> bytes | None:
    """A raw event's JSON as stored with its dead letter: as received up to `limit` bytes; beyond, a JSON
    object marking the cut, {"truncated": true, "original_bytes": N, "head": "<its first bytes>"}, itself
    at most `limit` bytes (still valid JSON, so exports stay readable)."""
    if record is None or len(record) <= limit:
        return record
    head = max(0, limit - 100)
    while True:
        text = record[:head].decode("utf-8", errors="ignore")
        cut = orjson.dumps({"truncated": True, "original_bytes": len(record), "head": text})
        if len(cut) <= limit or head == 0:
            return cut
        head = head * limit // len(cut) if head * limit // len(cut) < head else head - 1


def trim_dead_letters(db: sqlite3.Connection, cap: int, counts: dict[tuple[str, str, str], int]) -> int:
    """Drop the oldest dead letters beyond `cap` kept in all (a bounded number per call, inside the
    caller's write transaction), counting each in `counts`. Returns how many were dropped."""
    kept = db.execute("SELECT coalesce(sum(dead_letters), 0) FROM backlog").fetchone()[0]
    excess = min(kept - cap, TRIM_PER_WRITE)
    if excess <= 0:
        return 0
    dropped = db.execute(
        "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters ORDER BY id LIMIT ?)"
        " RETURNING connector, event_type",
        (excess,),
    ).fetchall()
    per_connector: Counter[str] = Counter()
    for connector, event_type in dropped:
        key = (connector, event_type, DEAD_LETTERS_DROPPED)
        counts[key] = counts.get(key, 0) + 1
        per_connector[connector] += 1
    db.executemany(BUMP_BACKLOG, [BacklogChange(dead_letters=-n).row(c) for c, n in per_connector.items()])
    return len(dropped)


def warn_dropped(dropped: int, cap: int) -> None:
    """The log line for dead letters dropped over the total cap (called once the transaction committed)."""
    log.warning(
        "%d oldest dead letters dropped: over the cap of %d kept in all ([dead_letters] max_total in "
        "config.toml); export or retry them sooner to keep them",
        dropped,
        cap,
    )


def warn_over_request_cap(over: int, cap: int) -> None:
    """The log line for rejected events of one batch not kept as dead letters (over the per-request cap)."""
    log.warning(
        "%d rejected events of one batch were not kept as dead letters: over the cap of %d per request "
        "([dead_letters] max_per_request in config.toml); they are counted",
        over,
        cap,
    )
