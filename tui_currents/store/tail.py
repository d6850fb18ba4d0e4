"""The tail feed: what happened to each event, a stored row per commit and connector, read by line number."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import orjson

from tui_currents.outbox import TailRow
from tui_currents.received import SIZE
from tui_currents.store.base import StoreBase
from tui_currents.store.schema import (
    CHUNK,
    INSERT_TAIL,
    SEGMENT_BODIES,
    TAIL_COLUMNS,
    has_outbox_bodies,
    has_tail_segments,
)


def _tail_lines(row: tuple, bodies: dict[int, bytes | None]) -> Iterator[TailRow]:
    """The lines of one stored tail row; `bodies`: those of the outbox segments it names, by seq."""
    seq, _, at, connector, source, fate, reason, entries, messages, in_segments = row
    if fate is None:  # received events, each with its own fate and, when queued, its message
        lines = orjson.loads(entries)
        found = iter(_messages([line[SIZE] for line in lines if line[SIZE]], messages, in_segments, bodies))
        for i, (event_type, segment_event, user, line_fate, line_reason, message_id, size) in enumerate(
            lines
        ):
            message = next(found) if size else None
            yield TailRow(seq + i, at, connector, event_type, segment_event, user, line_fate, line_reason,
                          message_id, source, False, message)  # fmt: skip
    else:
        for i, (event_type, message_id) in enumerate(orjson.loads(entries)):
            yield TailRow(
                seq + i, at, connector, event_type, None, None, fate, reason, message_id, None, True, None
            )


def _messages(
    sizes: list[int], messages: bytes | None, in_segments: str | None, bodies: dict[int, bytes | None]
) -> list[bytes | None]:
    """The messages of a row's queued lines, in order (None: no longer in the store). A row names the
    outbox segments holding them, as [seq, messages] pairs (a segment keeps its bodies while it waits, or
    while a kept tail row names it); a row from before schema 4 holds a copy in `messages`."""
    pieces: list[tuple[bytes | None, int]] = []  # (blob, messages of the row in it)
    if in_segments is None:
        pieces.append((messages, len(sizes)))
    else:
        pieces.extend((bodies.get(segment), count) for segment, count in orjson.loads(in_segments))
    out: list[bytes | None] = []
    next_size = iter(sizes).__next__
    for blob, count in pieces:
        offset = 0
        for _ in range(count):
            size = next_size()
            out.append(None if blob is None else blob[offset : offset + size])
            offset += size
    out.extend([None] * (len(sizes) - len(out)))
    return out


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
        segments: list[tuple[int, int]] | None = None,
    ) -> None:
        """One stored tail row for many lines: received events (`fate` None; each entry has its own fate
        and the size of its message, which is in the outbox `segments`, (seq, messages) each, in order) or
        a later fate of messages (each entry: event type, messageId). Its seq is the id of its first line:
        line ids count up by one with no gaps."""
        if not entries:
            return
        row = db.execute("SELECT seq + lines FROM tail ORDER BY seq DESC LIMIT 1").fetchone()
        first = row[0] if row else 1
        in_segments = orjson.dumps(segments).decode() if segments else None
        db.execute(
            INSERT_TAIL,
            (first, len(entries), now, connector, source, fate, reason, orjson.dumps(entries), in_segments),
        )
        self._tail_since_prune += len(entries)
        if self._tail_since_prune >= max(100, self.tail_keep // 10):
            self._tail_since_prune = 0
            db.execute("DELETE FROM tail WHERE seq + lines <= ?", (first + len(entries) - self.tail_keep,))
            self._drop_unshown_bodies(db)

    def _drop_unshown_bodies(self, db: sqlite3.Connection) -> None:
        """Drop the bodies of the done segments the tail no longer names. Tail rows name segments in the
        order they were written, so every segment before the oldest one a kept row names is unshown."""
        row = db.execute(
            "SELECT segments FROM tail WHERE segments IS NOT NULL ORDER BY seq LIMIT 1"
        ).fetchone()
        if row is not None:
            floor = min(seq for seq, _ in orjson.loads(row[0]))
        else:
            floor = db.execute("SELECT coalesce(max(seq), 0) + 1 FROM outbox").fetchone()[0]
        # Walks the bodies still kept below the floor (the backlog's, and the few done ones), looking each
        # segment up, rather than every segment remembered for the duplicate window.
        db.execute(
            "DELETE FROM outbox_bodies WHERE seq < ?"
            " AND (SELECT finished_at FROM outbox WHERE outbox.seq = outbox_bodies.seq) IS NOT NULL",
            (floor,),
        )
        if self._bodies_in_outbox is None:
            self._bodies_in_outbox = (
                db.execute("SELECT 1 FROM outbox WHERE bodies IS NOT NULL LIMIT 1").fetchone() is not None
            )
        if self._bodies_in_outbox:  # segments written before schema 6 keep their bodies in their row
            db.execute(
                "UPDATE outbox SET bodies = NULL"
                " WHERE seq < ? AND finished_at IS NOT NULL AND bodies IS NOT NULL",
                (floor,),
            )
            self._bodies_in_outbox = None  # looked at again next time, until none is left

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
        shows one on demand reads far less. A message is read from its outbox segment, which keeps its
        bodies while a kept tail row names it, delivered or not."""
        sql = "SELECT {columns} FROM tail WHERE seq + lines > ?"
        params: list = [after + 1]
        if connector is not None:
            sql += " AND connector = ?"
            params.append(connector)
        out: list[TailRow] = []
        with self._reading() as db:
            columns = TAIL_COLUMNS
            if not messages:
                columns = columns.replace("messages", "NULL").replace("segments", "NULL")
            elif not has_tail_segments(db):  # a console reading a file from before schema 4
                columns = columns.replace("segments", "NULL")
            # The row holding line `after + 1` starts at or before it: seek there by the primary key.
            start = db.execute(
                "SELECT coalesce(max(seq), 0) FROM tail WHERE seq <= ?", (after + 1,)
            ).fetchone()[0]
            cursor = db.execute(sql.format(columns=columns) + " AND seq >= ? ORDER BY seq", (*params, start))
            rows, lines = [], 0
            for row in cursor:
                rows.append(row)
                lines += min(row[1], row[0] + row[1] - 1 - after)  # its lines after `after`
                if lines >= limit:
                    break
            cursor.close()
            bodies = self._segment_bodies(db, rows) if messages else {}
        for row in rows:
            out.extend(line for line in _tail_lines(row, bodies) if line.seq > after)
        return out

    @staticmethod
    def _segment_bodies(db: sqlite3.Connection, rows: list[tuple]) -> dict[int, bytes | None]:
        """The bodies of the outbox segments these tail rows name, by seq (None once dropped)."""
        seqs = sorted({seq for row in rows if row[-1] for seq, _ in orjson.loads(row[-1])})
        bodies: dict[int, bytes | None] = {}
        column = SEGMENT_BODIES if seqs and has_outbox_bodies(db) else "bodies"  # a file before schema 6
        for start in range(0, len(seqs), CHUNK):
            chunk = seqs[start : start + CHUNK]
            marks = ", ".join("?" * len(chunk))
            bodies.update(db.execute(f"SELECT seq, {column} FROM outbox WHERE seq IN ({marks})", chunk))
        return bodies

    def tail_last_seq(self) -> int:
        """The newest tail line's id (0 when empty): a reader that wants only what comes next starts here."""
        newest: int = self._read("SELECT coalesce(max(seq + lines) - 1, 0) FROM tail")[0][0]
        return newest
