"""The tail feed: what happened to each event, a stored row per commit and connector, read by line number."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import orjson

from tui_currents.outbox import TailRow
from tui_currents.store.base import StoreBase
from tui_currents.store.schema import INSERT_TAIL, TAIL_COLUMNS


def _tail_lines(row: tuple) -> Iterator[TailRow]:
    """The lines of one stored tail row."""
    seq, _, at, connector, source, fate, reason, entries, messages = row
    if fate is None:  # received events, each with its own fate and, when queued, its message
        offset = 0
        for i, (event_type, segment_event, user, line_fate, line_reason, message_id, size) in enumerate(
            orjson.loads(entries)
        ):
            message = None
            if size:
                if messages is not None:
                    message = messages[offset : offset + size]
                offset += size
            yield TailRow(seq + i, at, connector, event_type, segment_event, user, line_fate, line_reason,
                          message_id, source, False, message)  # fmt: skip
    else:
        for i, (event_type, message_id) in enumerate(orjson.loads(entries)):
            yield TailRow(
                seq + i, at, connector, event_type, None, None, fate, reason, message_id, None, True, None
            )


class TailLog(StoreBase):
    """Appending to the tail (inside a write transaction) and reading it."""

    def _append_tail(
        self,
        db: sqlite3.Connection,
        now: float,
        connector: str,
        entries: list,
        *,
        source: str | None = None,
        fate: str | None = None,
        reason: str | None = None,
        messages: bytes | None = None,
    ) -> None:
        """One stored tail row for many lines: received events (`fate` None; each entry has its own fate
        and the size of its message in `messages`) or a later fate of messages (each entry: event type,
        messageId). Its seq is the id of its first line: line ids count up by one with no gaps."""
        if not entries:
            return
        row = db.execute("SELECT seq + lines FROM tail ORDER BY seq DESC LIMIT 1").fetchone()
        first = row[0] if row else 1
        db.execute(
            INSERT_TAIL,
            (first, len(entries), now, connector, source, fate, reason, orjson.dumps(entries), messages),
        )
        self._tail_since_prune += len(entries)
        if self._tail_since_prune >= max(100, self.tail_keep // 10):
            self._tail_since_prune = 0
            db.execute("DELETE FROM tail WHERE seq + lines <= ?", (first + len(entries) - self.tail_keep,))

    def _append_updates(
        self, db: sqlite3.Connection, now: float, connector: str, fate: str, reason: str | None, rows: list
    ) -> None:
        """Tail lines for a later fate of messages, from (message_id, event_type) pairs."""
        self._append_tail(
            db, now, connector, [(event_type, message_id) for message_id, event_type in rows], fate=fate,
            reason=reason,
        )  # fmt: skip

    def tail(
        self, *, after: int = 0, limit: int = 1000, connector: str | None = None, messages: bool = True
    ) -> list[TailRow]:
        """Tail lines with an id (`seq`) greater than `after`, oldest first: about `limit` of them (lines
        stored together come together). Poll with the last seq seen; only about the last `tail_keep` lines
        are kept. `messages=False` leaves the Segment messages out (`message` None): a live view that
        shows one on demand reads far less."""
        columns = TAIL_COLUMNS if messages else TAIL_COLUMNS.replace("messages", "NULL")
        sql = f"SELECT {columns} FROM tail WHERE seq + lines > ?"
        params: list = [after + 1]
        if connector is not None:
            sql += " AND connector = ?"
            params.append(connector)
        out: list[TailRow] = []
        with self._reading() as db:
            # The row holding line `after + 1` starts at or before it: seek there by the primary key.
            start = db.execute(
                "SELECT coalesce(max(seq), 0) FROM tail WHERE seq <= ?", (after + 1,)
            ).fetchone()[0]
            cursor = db.execute(sql + " AND seq >= ? ORDER BY seq", (*params, start))
            for row in cursor:
                out.extend(line for line in _tail_lines(row) if line.seq > after)
                if len(out) >= limit:
                    break
            cursor.close()
        return out

    def tail_last_seq(self) -> int:
        """The newest tail line's id (0 when empty): a reader that wants only what comes next starts here."""
        newest: int = self._read("SELECT coalesce(max(seq + lines) - 1, 0) FROM tail")[0][0]
        return newest
