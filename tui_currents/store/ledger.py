"""What became of leased messages: delivered, retry later, released, dead-lettered, expired."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from functools import partial

from tui_currents import segments
from tui_currents.outbox import (
    DAY,
    DEAD_LETTERED,
    DELIVERED,
    EXPIRED,
    RETRIED,
    TAIL_DEAD_LETTER,
    TAIL_DELIVERED,
)
from tui_currents.segments import Segment
from tui_currents.store import forgotten_log
from tui_currents.store.reader import Reader
from tui_currents.store.schema import BUMP_BACKLOG, CHUNK, INSERT_DEAD, INSERT_RETRY, BacklogChange
from tui_currents.store.writer import Writer


class Ledger(Writer, Reader):
    """Marks on leased messages, and the bookkeeping that follows them."""

    def release(self, connector: str, seqs: Sequence[int], *, retry_at: float = 0.0) -> None:
        """Give leased messages back unsent, due again at `retry_at`, without counting an attempt."""
        if retry_at <= 0:
            with self._lease_lock:
                self._unlease(connector, seqs)
            return
        kept = "The messages stay queued and are sent again."
        with self._write("give back unsent messages", kept, durable=False) as db:
            db.executemany(
                "INSERT INTO outbox_retries (seq, item, retry_at) VALUES (?, ?, ?)"
                " ON CONFLICT (seq, item) DO UPDATE SET retry_at = excluded.retry_at",
                [(*segments.split_address(addr), retry_at) for addr in seqs],
            )
            self._after_commit.append(lambda: self._unlease(connector, seqs))

    def _still_waiting(
        self, db: sqlite3.Connection, connector: str, seqs: Sequence[int]
    ) -> Iterator[tuple[Segment, int, int, Sequence[int]]]:
        """Per segment, those of these messages still waiting (not done): (segment, messages it still has
        waiting, its done marks with these added, their positions). Segments with none are left out."""
        for seq, items in segments.by_segment(seqs).items():
            segment = self._segment(db, seq, connector)
            if segment is None:
                continue
            waiting, marks = self._progress(db, seq)
            marks, new = segments.mark(marks, items, len(segment))
            if new:
                yield segment, len(segment) if waiting is None else waiting, marks, new

    def _finish_items(
        self, db: sqlite3.Connection, connector: str, seqs: Sequence[int], now: float
    ) -> list[tuple[Segment, Sequence[int]]]:
        """Mark these waiting messages done (delivered or dead-lettered): per segment, the positions of
        those that were waiting. A segment whose every message is done stays as the memory of its ids for
        the duplicate window; its bodies go once the tail no longer shows them."""
        finished_now: list[tuple[Segment, Sequence[int]]] = []
        finished = 0
        for segment, waiting, marks, new in self._still_waiting(db, connector, seqs):
            seq = segment.seq
            finished_now.append((segment, new))
            waiting -= len(new)
            if waiting <= 0:
                # Its bodies stay while the tail shows them (each is stored once, there): see TailLog.
                db.execute("UPDATE outbox SET finished_at = ? WHERE seq = ?", (now, seq))
                db.execute("DELETE FROM outbox_progress WHERE seq = ?", (seq,))
                db.execute("DELETE FROM outbox_retries WHERE seq = ?", (seq,))
                self._after_commit.append(partial(self._drop_segment, seq))
                finished += len(segment)
            else:
                db.execute(
                    "INSERT INTO outbox_progress (seq, waiting, done) VALUES (?, ?, ?) ON CONFLICT (seq)"
                    " DO UPDATE SET waiting = excluded.waiting, done = excluded.done",
                    (seq, waiting, segments.marks_blob(marks)),
                )
        if finished:
            db.execute(BUMP_BACKLOG, BacklogChange(remembered=finished).row(connector))
        self._after_commit.append(lambda: self._unlease_done(connector, finished_now))
        return finished_now

    def _unlease_done(self, connector: str, done: list[tuple[Segment, Sequence[int]]]) -> None:
        by_seq = self._leases.get(connector)
        if by_seq:
            for segment, items in done:
                self._unlease_items(by_seq, segment.seq, items)

    @staticmethod
    def _done_columns(done: list[tuple[Segment, Sequence[int]]]) -> tuple[list[str], list[str], int]:
        """(messageIds, event types, total bytes) of the messages `_finish_items` marked done."""
        ids: list[str] = []
        types: list[str] = []
        size = 0
        for segment, items in done:
            if isinstance(items, range):  # a run: slices, not a lookup per message
                ids += segment.ids[items.start : items.stop]
                types += segment.types[items.start : items.stop]
                size += segment.offsets[items.stop] - segment.offsets[items.start]
            else:
                ids += (segment.ids[i] for i in items)
                types += (segment.types[i] for i in items)
                size += sum(segment.sizes[i] for i in items)
        return ids, types, size

    def delivered(self, connector: str, seqs: Sequence[int], *, now: float | None = None) -> int:
        """Segment accepted these messages: they leave the backlog (their messageIds are remembered for the
        duplicate window), are counted and their fate is noted in the tail. Returns how many."""
        now = time.time() if now is None else now
        kept = "The messages stay queued and will be sent again; Segment drops the repeats by messageId."
        with self._write("record delivered messages", kept, durable=False) as db:
            done = self._finish_items(db, connector, seqs, now)
            if not done:
                return 0
            ids, types, size = self._done_columns(done)
            self._bump(db, {(connector, t, DELIVERED): n for t, n in Counter(types).items()})
            db.execute(BUMP_BACKLOG, BacklogChange(messages=-len(ids), bytes=-size).row(connector))
            self._append_tail(db, now, connector, list(zip(types, ids, strict=True)), fate=TAIL_DELIVERED)
            self._forget_delivered(db, now)
        return len(ids)

    def _forget_delivered(self, db: sqlite3.Connection, now: float) -> None:
        """Drop the oldest remembered deliveries beyond the window's bounds: finished segments, oldest
        first, while over the count bound or older than the time bound (a bounded number per call, so the
        window catches up over the next deliveries without long transactions)."""
        excess = db.execute("SELECT coalesce(sum(remembered), 0) FROM backlog").fetchone()[0]
        excess -= self.delivered_window_max
        cutoff = now - self.delivered_window_days * DAY
        forgotten: dict[str, int] = defaultdict(int)
        forgotten_ids: list[tuple[str, bytes]] = []
        for _ in range(64):
            row = db.execute(
                "SELECT seq, finished_at FROM outbox INDEXED BY outbox_finished"
                " WHERE finished_at IS NOT NULL ORDER BY finished_at LIMIT 1"
            ).fetchone()
            if row is None or (excess <= 0 and row[1] >= cutoff):
                break
            connector, messages, ids = db.execute(
                "DELETE FROM outbox WHERE seq = ? RETURNING connector, messages, ids", (row[0],)
            ).fetchone()
            db.execute("DELETE FROM outbox_bodies WHERE seq = ?", (row[0],))  # if the tail still named it
            forgotten[connector] += messages
            excess -= messages
            forgotten_ids.append((connector, ids))
        if forgotten:
            db.executemany(BUMP_BACKLOG, [BacklogChange(remembered=-n).row(c) for c, n in forgotten.items()])
            # Every duplicate check (this process's or another's) forgets them at its next commit.
            forgotten_log.log(db, forgotten_ids)

    def retry_later(
        self,
        connector: str,
        seqs: Sequence[int],
        *,
        retry_at: float,
        error: str,
        count_attempt: bool = True,
    ) -> None:
        """A send failed in a way worth retrying: the messages are due again at `retry_at`.
        `count_attempt=False` for a wait Segment asked for (Retry-After), which is not held against them."""
        add = 1 if count_attempt else 0
        kept = "The messages stay queued and are sent again."
        with self._write("schedule a retry", kept, durable=False) as db:
            counts: dict[tuple[str, str, str], int] = defaultdict(int)
            rows = []
            for segment, _, _, new in self._still_waiting(db, connector, seqs):
                for item in new:
                    rows.append((segment.seq, item, add, retry_at, error))
                    counts[(connector, segment.types[item], RETRIED)] += 1
            db.executemany(
                INSERT_RETRY
                + " ON CONFLICT (seq, item) DO UPDATE SET attempts = attempts + excluded.attempts,"
                " retry_at = excluded.retry_at, last_error = excluded.last_error",
                rows,
            )
            self._bump(db, counts)
            self._after_commit.append(lambda: self._unlease(connector, seqs))

    def dead_letter(
        self, connector: str, seqs: Sequence[int], *, reason: str, now: float | None = None
    ) -> int:
        """Move these outbox messages to the dead letters with `reason`; returns how many were moved."""
        now = time.time() if now is None else now
        with self._write("move messages to the dead letters", "The messages stay queued.") as db:
            return self._bury(db, connector, list(seqs), reason, now, expired=False)

    def _bury(
        self,
        db: sqlite3.Connection,
        connector: str,
        seqs: list[int],
        reason: str,
        now: float,
        *,
        expired: bool,
    ) -> int:
        attempts = {
            (seq, item): n
            for seq in segments.by_segment(seqs)
            for item, n in db.execute("SELECT item, attempts FROM outbox_retries WHERE seq = ?", (seq,))
        }
        removed = self._finish_items(db, connector, seqs, now)
        if not removed:
            return 0
        letters = [
            (connector, segment.ids[item], segment.types[item], reason, now,
             attempts.get((segment.seq, item), 0), None, segment.body(item))
            for segment, items in removed
            for item in items
        ]  # fmt: skip
        db.executemany(INSERT_DEAD, letters)
        ids, types, size = self._done_columns(removed)
        counts = {(connector, t, DEAD_LETTERED): n for t, n in Counter(types).items()}
        if expired:
            counts.update({(connector, t, EXPIRED): n for t, n in Counter(types).items()})
        db.execute(
            BUMP_BACKLOG, BacklogChange(messages=-len(ids), bytes=-size, dead_letters=len(ids)).row(connector)
        )
        self._trim_dead_letters(db, counts)
        self._bump(db, counts)
        lines = list(zip(types, ids, strict=True))
        self._append_tail(db, now, connector, lines, fate=TAIL_DEAD_LETTER, reason=reason)
        # Not remembered any more, by any process's duplicate check: the same event sent again is queued.
        forgotten_log.log(db, [(connector, forgotten_log.ids_index(ids))])
        return len(ids)

    def expire(
        self, connector: str, *, older_than: float, now: float | None = None, limit: int | None = None
    ) -> int:
        """Move the connector's messages queued before `older_than` (and not in flight) to the dead letters
        with reason "expired: undeliverable for N days"; never more than `limit` in one call, if given.
        Walks the outbox from its oldest segment and stops at the first younger one, a few hundred messages
        per transaction. Returns how many were moved."""
        now = time.time() if now is None else now
        reason = f"expired: undeliverable for {max(0.0, (now - older_than) / DAY):g} days"
        return self._bury_waiting(connector, older_than, reason, now, limit, expired=True)

    def dead_letter_queued(self, connector: str, *, reason: str, now: float | None = None) -> int:
        """Move every message waiting in the connector's outbox (and not leased by this Store) to the dead
        letters with `reason`, e.g. when the connector is removed: nothing is left behind unseen. A few
        hundred messages per transaction. Returns how many were moved."""
        now = time.time() if now is None else now
        return self._bury_waiting(connector, float("inf"), reason, now, None, expired=False)

    def _bury_waiting(
        self, connector: str, older_than: float, reason: str, now: float, limit: int | None, *, expired: bool
    ) -> int:
        """`expire` and `dead_letter_queued`: bury the waiting messages queued before `older_than`."""
        moved = 0
        if expired:
            kept = "The messages stay queued; expiry is tried again later."
            doing = "move expired messages to the dead letters"
        else:
            kept = "The messages not yet moved stay queued."
            doing = "move queued messages to the dead letters"
        no_leases: dict[int, float] = {}
        after = 0
        while limit is None or moved < limit:
            room = CHUNK if limit is None else min(CHUNK, limit - moved)
            # No lease may take a message while it is being found expired (locks in their usual order).
            with self._lock, self._lease_lock, self._write(doing, kept) as db:
                leased = self._leases.get(connector, {})
                row = db.execute(
                    "SELECT seq, enqueued_at FROM outbox INDEXED BY outbox_waiting"
                    " WHERE connector = ? AND finished_at IS NULL AND seq > ? ORDER BY seq LIMIT 1",
                    (connector, after),
                ).fetchone()
                if row is None or row[1] >= older_than:
                    break  # segments are queued in time order: the rest are younger
                seq = row[0]
                segment = self._segment(db, seq, connector)
                _, marks = self._progress(db, seq)
                due = []
                held_here = leased.get(seq, no_leases)
                for item in range(len(segment) if segment else 0):
                    addr = seq << segments.ITEM_BITS | item
                    held = held_here.get(item)
                    if marks >> item & 1 or (held is not None and held > now):
                        continue
                    due.append(addr)
                    if len(due) >= room:
                        break
                if len(due) < room:
                    after = seq  # nothing more to take from this one
                if due:
                    moved += self._bury(db, connector, due, reason, now, expired=expired)
        return moved
