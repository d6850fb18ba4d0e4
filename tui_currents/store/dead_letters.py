"""Dead letters: listing, export as JSON lines, and putting them back into the outbox."""

from __future__ import annotations

import os
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import orjson

from tui_currents import segments
from tui_currents.outbox import QUEUED, REQUEUED, REQUEUED_REASON, DeadLetter
from tui_currents.paths import PRIVATE_FILE_MODE
from tui_currents.store.schema import BUMP_BACKLOG, CHUNK, DEAD_COLUMNS, BacklogChange
from tui_currents.store.writer import Writer


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _marks(n: int) -> str:
    return ",".join("?" * n)


def export_lines(path: Path | str, letters: Iterable[DeadLetter]) -> int:
    """Write dead letters as JSON lines (id, connector, message_id, event_type, reason, at
    (ISO-8601), attempts, event, message) to a private file, fsynced."""
    fd = os.open(Path(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    os.fchmod(fd, PRIVATE_FILE_MODE)  # a file that existed keeps its old mode otherwise
    written = 0
    with os.fdopen(fd, "wb") as out:
        for d in letters:
            record = {
                "id": d.id,
                "connector": d.connector,
                "message_id": d.message_id,
                "event_type": d.event_type,
                "reason": d.reason,
                "at": _iso(d.at),
                "attempts": d.attempts,
                "event": None if d.event is None else orjson.Fragment(d.event),
                "message": None if d.message is None else orjson.Fragment(d.message),
            }
            out.write(orjson.dumps(record) + b"\n")
            written += 1
        out.flush()
        os.fsync(out.fileno())
    return written


class DeadLetterBox(Writer):
    """The dead letters of every connector."""

    def dead_letters(
        self, connector: str | None = None, *, limit: int = 100, before: int | None = None
    ) -> list[DeadLetter]:
        """Dead letters, newest first, at most `limit`; page with `before` = the last id seen."""
        sql = f"SELECT {DEAD_COLUMNS} FROM dead_letters WHERE id < ?"
        params: list = [before if before is not None else 2**63 - 1]
        if connector is not None:
            sql += " AND connector = ?"
            params.append(connector)
        rows = self._read(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [DeadLetter(*r) for r in rows]

    def _dead_letter_pages(self, connector: str | None, ids: Iterable[int] | None) -> Iterator[list[tuple]]:
        """Dead letter rows in id order, a few hundred at a time (never the whole table in memory)."""
        wanted = sorted(set(ids)) if ids is not None else None
        after = 0
        while True:
            if wanted is not None:
                chunk, wanted = wanted[:CHUNK], wanted[CHUNK:]
                if not chunk:
                    return
                sql = f"SELECT {DEAD_COLUMNS} FROM dead_letters WHERE id IN ({_marks(len(chunk))})"
                params: list = list(chunk)
            else:
                sql = f"SELECT {DEAD_COLUMNS} FROM dead_letters WHERE id > ?"
                params = [after]
            if connector is not None:
                sql += " AND connector = ?"
                params.append(connector)
            rows = self._read(sql + " ORDER BY id LIMIT ?", (*params, CHUNK))
            if wanted is None:
                if not rows:
                    return
                after = rows[-1][0]
            yield rows

    def requeue(
        self, connector: str | None = None, ids: Sequence[int] | None = None, *, now: float | None = None
    ) -> int:
        """Put dead letters back into the outbox (attempts reset, queued now): those with these `ids`, or
        else those of `connector`, or else all. Dead letters without a Segment message (rejected while
        mapping) cannot be sent and stay. Returns how many were requeued."""
        now = time.time() if now is None else now
        moved = 0
        for rows in self._dead_letter_pages(connector, ids):
            letters = [DeadLetter(*r) for r in rows if r[8] is not None and r[2] is not None]
            if letters:
                with self._write("requeue dead letters", "The dead letters stay where they were.") as db:
                    moved += self._unbury(db, letters, now)
        return moved

    def _waiting_ids(self, db: sqlite3.Connection, connector: str) -> set[str]:
        """The messageIds waiting in a connector's outbox (a walk of its whole backlog: for requeues)."""
        waiting: set[str] = set()
        for seq, blob in db.execute(
            "SELECT seq, ids FROM outbox INDEXED BY outbox_waiting"
            " WHERE connector = ? AND finished_at IS NULL",
            (connector,),
        ):
            _, marks = self._progress(db, seq)
            waiting.update(m for i, m in enumerate(segments.index_ids(blob)) if not marks >> i & 1)
        return waiting

    def _unbury(self, db: sqlite3.Connection, letters: list[DeadLetter], now: float) -> int:
        backlog: dict[str, BacklogChange] = defaultdict(BacklogChange)
        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        done: dict[str, list[tuple]] = defaultdict(list)
        fresh: dict[str, tuple[list, list[bytes]]] = defaultdict(lambda: ([], []))
        waiting: dict[str, set[str]] = {}
        for d in letters:
            # requeue() passes only letters with both (a rejected event has no Segment message)
            assert d.message_id is not None and d.message is not None
            if db.execute("DELETE FROM dead_letters WHERE id = ?", (d.id,)).rowcount == 0:
                continue  # requeued meanwhile by someone else
            change = backlog[d.connector]
            change.dead_letters -= 1
            counts[(d.connector, d.event_type, REQUEUED)] += 1
            done[d.connector].append((d.message_id, d.event_type))
            if d.connector not in waiting:
                waiting[d.connector] = self._waiting_ids(db, d.connector)
            if d.message_id in waiting[d.connector]:
                continue  # the same message is queued already (a later duplicate): it is sent once
            waiting[d.connector].add(d.message_id)
            # Remembered as delivered or not: it is sent again all the same, as asked.
            entries, bodies = fresh[d.connector]
            entries.append((d.message_id, d.event_type, len(d.message)))
            bodies.append(d.message)
            change.messages += 1
            change.bytes += len(d.message)
        for name, (entries, bodies) in fresh.items():
            self._add_segment(db, name, now, entries, bodies)
        if backlog:
            db.executemany(BUMP_BACKLOG, [change.row(c) for c, change in backlog.items()])
        self._bump(db, counts)
        for name, rows in done.items():
            self._append_updates(db, now, name, QUEUED, REQUEUED_REASON, rows)
        return sum(len(rows) for rows in done.values())

    def export_dead_letters(
        self, path: Path | str, connector: str | None = None, ids: Iterable[int] | None = None
    ) -> int:
        """Write dead letters as JSON lines (one object each: id, connector, message_id, event_type, reason,
        at (ISO-8601), attempts, event, message) to `path`, mode 0600; returns how many were written."""
        return export_lines(
            path, (DeadLetter(*r) for rows in self._dead_letter_pages(connector, ids) for r in rows)
        )
