"""Leasing: the next due messages of a connector, read from a snapshot without waiting for commits."""

from __future__ import annotations

import sqlite3
import time
from bisect import bisect_right
from collections.abc import Iterator
from contextlib import contextmanager

from tui_currents import segments
from tui_currents.outbox import OutboxRow
from tui_currents.segments import Segment
from tui_currents.store.base import StoreBase
from tui_currents.store.schema import LEASE_KEPT


def _free_from(done: int, leased: dict[int, float], now: float) -> int | None:
    """The position from which every message of a segment is free to lease, when all those before it are
    done or leased, in that order (the usual state: a segment is leased front to back); else None."""
    start = done.bit_length()
    if done != (1 << start) - 1:
        return None
    if leased:
        if min(leased) != start or max(leased) != start + len(leased) - 1 or min(leased.values()) <= now:
            return None
        start += len(leased)
    return start


class Reader(StoreBase):
    """Leases, held in memory by the one engine of a home."""

    def lease(
        self,
        connector: str,
        *,
        max_messages: int,
        max_bytes: int,
        lease_seconds: float,
        now: float | None = None,
    ) -> list[OutboxRow]:
        """Take the connector's next due messages, in queue order, for `lease_seconds`: at most
        `max_messages` and, together, at most `max_bytes` of message bodies. The first message is returned
        even when it alone is larger than `max_bytes`, so that the caller can dead-letter it.

        Leases are kept by this Store object (one engine per home leases; its death ends them all)."""
        now = time.time() if now is None else now
        rows: list[OutboxRow] = []
        budget = [max(1, max_messages), max_bytes]  # what is left to take: messages, bytes
        # A console's store could not record what becomes of the messages.
        self._refuse_if_readonly("take messages to send", LEASE_KEPT)
        # A lease only reads, on its own connection, so it never waits for a commit (and its fsync) to end.
        # It sees a snapshot: leases and done marks change in memory only once their transaction has
        # committed, under `_lease_lock`, which a lease holds from before its snapshot to its end.
        with self._lease_lock, self._leasing() as db:
            # Walked, not fetched: a long backlog has many segments and a lease usually needs one or two.
            waiting = db.execute(
                "SELECT seq FROM outbox INDEXED BY outbox_waiting"
                " WHERE connector = ? AND finished_at IS NULL ORDER BY seq",
                (connector,),
            )
            for (seq,) in waiting:
                if not self._take(db, connector, seq, now, now + lease_seconds, budget, rows):
                    break
            waiting.close()
        return rows

    @contextmanager
    def _leasing(self) -> Iterator[sqlite3.Connection]:
        """The lease connection in one read transaction; SQLite's failures as StoreUnavailable."""
        with self._failures_as_unavailable("take messages to send", LEASE_KEPT):
            if self._reader is None:
                self._reader = sqlite3.connect(
                    self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
                )
                self._reader.execute("PRAGMA query_only = ON")
            db = self._reader
            db.execute("BEGIN")
            try:
                yield db
            finally:
                db.execute("COMMIT")

    def _take(
        self, db: sqlite3.Connection, connector: str, seq: int, now: float, until: float, budget: list[int],
        rows: list[OutboxRow],
    ) -> bool:  # fmt: skip
        """Lease the due messages of one segment into `rows` within `budget`; False once it is spent."""
        segment = self._segment(db, seq, connector)
        if segment is None:
            return True
        _, done = self._progress(db, seq)
        retries = {
            item: (attempts, retry_at)
            for item, attempts, retry_at in db.execute(
                "SELECT item, attempts, retry_at FROM outbox_retries WHERE seq = ?", (seq,)
            )
        }
        by_seq = self._leases.setdefault(connector, {})
        leased = by_seq.setdefault(seq, {})
        try:
            start = None if retries else _free_from(done, leased, now)
            if start is not None:
                return self._take_run(segment, start, until, budget, rows, leased)
            return self._take_each(segment, done, retries, now, until, budget, rows, leased)
        finally:
            if not leased:
                del by_seq[seq]

    @staticmethod
    def _take_each(
        segment: Segment, done: int, retries: dict[int, tuple[int, float]], now: float, until: float,
        budget: list[int], rows: list[OutboxRow], leased: dict[int, float],
    ) -> bool:  # fmt: skip
        """`_take` message by message, skipping those done, leased or not due yet."""
        base = segment.seq << segments.ITEM_BITS
        for item in range(len(segment)):
            if done >> item & 1:
                continue
            held = leased.get(item)
            if held is not None and held > now:
                continue
            attempts, retry_at = retries.get(item, (0, 0.0))
            if retry_at > now:
                continue
            size = segment.sizes[item]
            if rows and size > budget[1]:
                return False
            rows.append(
                OutboxRow(
                    base | item, segment.ids[item], segment.types[item], segment.body(item), size, attempts,
                    segment.enqueued_at,
                )
            )  # fmt: skip
            leased[item] = until
            budget[0] -= 1
            budget[1] -= size
            if budget[0] <= 0 or budget[1] <= 0:
                return False
        return True

    @staticmethod
    def _take_run(
        segment: Segment, start: int, until: float, budget: list[int], rows: list[OutboxRow],
        leased: dict[int, float],
    ) -> bool:  # fmt: skip
        """`_take` for the usual segment, whose messages from `start` on are all free (see `_free_from`):
        as many of them as the budget allows, in one go. The same messages `_take_each` would pick."""
        starts = segment.offsets
        # Messages [start, end) fit while their bodies end within the byte budget; the first always goes.
        end = min(len(segment), start + budget[0], bisect_right(starts, starts[start] + budget[1]) - 1)
        if end == start and not rows and start < len(segment):
            end = start + 1
        if end == start:
            return start == len(segment)
        base = segment.seq << segments.ITEM_BITS
        bodies, enqueued_at = segment.bodies, segment.enqueued_at
        columns = zip(
            range(start, end), segment.ids[start:end], segment.types[start:end], segment.sizes[start:end],
            strict=True,
        )  # fmt: skip
        rows.extend(
            OutboxRow(base | i, message_id, type_, bodies[starts[i] : starts[i + 1]], size, 0, enqueued_at)
            for i, message_id, type_, size in columns
        )
        leased.update(dict.fromkeys(range(start, end), until))
        budget[0] -= end - start
        budget[1] -= starts[end] - starts[start]
        return end == len(segment) and budget[0] > 0 and budget[1] > 0

    def release_leases(self, connector: str | None = None) -> int:
        """Make every leased message due again (at engine start, or when its delivery is gone)."""
        with self._lease_lock:
            if connector is None:
                gone = list(self._leases.values())
                self._leases.clear()
            else:
                gone = [self._leases.pop(connector, {})]
        return sum(len(held) for by_seq in gone for held in by_seq.values())
