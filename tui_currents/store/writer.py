"""Committing received batches: outbox segments, dead letters for rejected events, counters, tail lines."""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from tui_currents import segments
from tui_currents.outbox import (
    DEAD_LETTERS_DROPPED,
    DUPLICATE,
    DUPLICATE_REASON,
    FATE_COUNTER,
    NOT_SELECTED,
    QUEUED,
    RECEIVED,
    TAIL_DUPLICATE,
    CommitResult,
)
from tui_currents.received import FATE, MESSAGE_ID, TYPE, Received
from tui_currents.segments import KnownIds, Segment, key_of
from tui_currents.store import counter_log, forgotten_log
from tui_currents.store.dead_letter_caps import (
    bounded_event,
    trim_dead_letters,
    warn_dropped,
    warn_over_request_cap,
)
from tui_currents.store.schema import (
    BUMP_BACKLOG,
    INSERT_BODIES,
    INSERT_DEAD,
    INSERT_OUTBOX,
    SEGMENTS_CACHED,
    BacklogChange,
)
from tui_currents.store.tail import TailLog

if TYPE_CHECKING:
    from tui_currents.mapping import Outcome


class Writer(TailLog):
    """Commits: the only way events enter the outbox."""

    _logged: int | None = None  # rows in the counter log, as last known (None: not looked yet)

    def _known_ids(self, db: sqlite3.Connection) -> KnownIds:
        """The duplicate check, built from the store on first use and brought up to date with what other
        processes did since: the segments they committed (an import, a requeue) and the ids they logged
        as leaving the window (dead-lettered, or dropped with their segment: see forgotten_log), in the
        order they happened. Reads only what is newer than the last catch-up. Call inside a write
        transaction."""
        known = self._known
        forgotten = None if known is None else forgotten_log.since(db, known.forgotten_upto)
        if known is None or forgotten is None:  # first use, or log rows pruned before this writer read them
            self._known = known = self._build_known(db)
            return known
        pending = iter(forgotten)
        row = next(pending, None)
        for seq, connector, ids in db.execute(
            "SELECT seq, connector, ids FROM outbox WHERE seq > ? ORDER BY seq", (known.upto,)
        ):
            while row is not None and row[1] < seq:  # logged before this segment was committed
                known.forget(row[2], segments.index_ids(row[3]))
                known.forgotten_upto = row[0]
                row = next(pending, None)
            known.add_index(connector, ids)
            known.upto = seq
        while row is not None:
            known.forget(row[2], segments.index_ids(row[3]))
            known.forgotten_upto = row[0]
            row = next(pending, None)
        return known

    @staticmethod
    def _build_known(db: sqlite3.Connection) -> KnownIds:
        """The duplicate check from the whole store: every segment's ids, less the dead-lettered ones."""
        known = KnownIds()
        known.forgotten_upto = forgotten_log.last(db)
        for seq, connector, ids in db.execute("SELECT seq, connector, ids FROM outbox ORDER BY seq"):
            known.add_index(connector, ids)
            known.upto = seq
        # Dead-lettered messages are not remembered: the same event sent again is queued again.
        for connector, message_id in db.execute(
            "SELECT connector, message_id FROM dead_letters WHERE message IS NOT NULL"
        ):
            known.forget(connector, (message_id,))
        return known

    def _add_segment(
        self, db: sqlite3.Connection, connector: str, now: float, entries: list[tuple[str, str, int]],
        bodies: list[bytes],
    ) -> list[tuple[int, int]]:  # fmt: skip
        """Append queued messages as outbox segments (several when there are very many): their (seq,
        messages), in order. Once the transaction commits, they stay parsed in memory while there is
        room: the next lease, in this process, then reads them from there instead of from the disk."""
        sizes = [size for _, _, size in entries]
        added: list[tuple[int, int]] = []
        for start, end in segments.cut(entries, sizes):
            part, blob = entries[start:end], b"".join(bodies[start:end])
            index = segments.pack_index(part)
            seq = db.execute(INSERT_OUTBOX, (connector, now, end - start, index)).lastrowid
            assert seq is not None  # an INSERT into a rowid table always gives one
            db.execute(INSERT_BODIES, (seq, blob))
            added.append((seq, end - start))
            if len(self._segments) < SEGMENTS_CACHED:
                parsed = Segment.of(seq, connector, now, part, blob)
                self._after_commit.append(partial(self._keep_segment, parsed))
        return added

    def commit(
        self,
        batch: Sequence[tuple[str, Outcome]] | Received,
        *,
        source: str,
        now: float | None = None,
    ) -> CommitResult:
        """Store one received batch in ONE transaction: outbox segments for queued events (a messageId
        already queued or recently delivered for that connector collapses into a duplicate), dead letters
        for rejected ones, counters and tail lines for all. The batch is (connector, outcome) items or
        the same already in the store's form (`Received`, e.g. built by a mapping worker). Raises
        StoreUnavailable (nothing kept) when the disk is full or failing; the caller must then not
        acknowledge the batch."""
        now = time.time() if now is None else now
        received = batch if isinstance(batch, Received) else Received.of(batch)
        tails = received.tails
        caps = self.dead_letter_caps
        dead = [
            (connector, event_id, event_type, reason, now, 0, bounded_event(record, caps.event_bytes), None)
            for connector, event_id, event_type, reason, record in received.dead[: caps.per_request]
        ]
        over_cap = received.dead[caps.per_request :]  # rejected events beyond the cap: counted, not kept
        kept = (
            "Nothing from this batch was saved, so it was not acknowledged and its sender can send it again."
        )
        size = sum(len(body) for _, bodies in tails.values() for body in bodies)
        with self._write("save received events", kept, size=size) as db:
            known = self._known_ids(db)
            added: dict[str, set[int]] = {}  # keys remembered once the transaction commits
            counts: dict[tuple[str, str, str], int] = defaultdict(int)
            backlog: dict[str, BacklogChange] = defaultdict(BacklogChange)
            queued = duplicates = 0
            duplicate_types: dict[str, int] = {}
            for connector, (entries, bodies) in tails.items():
                at = [index for index, entry in enumerate(entries) if entry[FATE] == "queued"]
                message_keys = [
                    key_of(entries[index][MESSAGE_ID]) for index in at
                ]  # in the order of `bodies`
                seen = known.of(connector).among(message_keys)
                new_keys = set(message_keys)
                if not seen and len(new_keys) == len(message_keys):  # the usual batch: no duplicate
                    segment = [
                        (entries[i][MESSAGE_ID], entries[i][TYPE], len(body))
                        for i, body in zip(at, bodies, strict=True)
                    ]
                    segment_bodies = bodies
                    lines = entries
                else:
                    new_keys = set()
                    segment, segment_bodies = [], []
                    lines = list(entries)  # a copy is marked: a failed commit may be retried with `entries`
                    for index, key, body in zip(at, message_keys, bodies, strict=True):
                        entry = entries[index]
                        if key in seen or key in new_keys:
                            lines[index] = [
                                *entry[:FATE],
                                TAIL_DUPLICATE,
                                DUPLICATE_REASON,
                                entry[MESSAGE_ID],
                                0,
                            ]
                            counts[(connector, entry[TYPE], QUEUED)] -= 1
                            counts[(connector, entry[TYPE], DUPLICATE)] += 1
                            duplicates += 1
                            duplicate_types[entry[TYPE]] = duplicate_types.get(entry[TYPE], 0) + 1
                            continue
                        new_keys.add(key)
                        segment.append((entry[MESSAGE_ID], entry[TYPE], len(body)))
                        segment_bodies.append(body)
                stored: list[tuple[int, int]] = []
                if segment:
                    stored = self._add_segment(db, connector, now, segment, segment_bodies)
                    queued += len(segment)
                    change = backlog[connector]
                    change.messages += len(segment)
                    change.bytes += sum(size for _, _, size in segment)
                    added[connector] = new_keys
                # The tail names the segments: each body is written once, there.
                self._append_tail(db, now, connector, lines, source=source, segments=stored)
            last = db.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
            self._after_commit.append(lambda: known.remember(added, last))
            if dead:
                db.executemany(INSERT_DEAD, dead)
                for row in dead:
                    backlog[row[0]].dead_letters += 1
            if backlog:
                db.executemany(BUMP_BACKLOG, [change.row(c) for c, change in backlog.items()])
            fates = received.fates
            many = len(fates) > counter_log.LOG_OVER  # then logged as they are, see _count
            if not many:
                for (connector, event_type, fate), n in fates.items():
                    counts[(connector, event_type, RECEIVED)] += n
                    counts[(connector, event_type, FATE_COUNTER.get(fate, NOT_SELECTED))] += n
            if over_cap:
                for connector, _, event_type, _, _ in over_cap:
                    counts[(connector, event_type, DEAD_LETTERS_DROPPED)] += 1
                self._after_commit.append(partial(warn_over_request_cap, len(over_cap), caps.per_request))
            if dead:
                self._trim_dead_letters(db, counts)
            self._count(db, counts, fates if many else None)
        return CommitResult(
            received=received.items,
            queued=queued,
            duplicates=duplicates,
            filtered=received.items - queued - duplicates - len(received.dead),
            dead_lettered=len(received.dead),
            duplicates_by_type=duplicate_types or None,
        )

    def _count(
        self, db: sqlite3.Connection, counts: dict[tuple[str, str, str], int], fates: dict | None
    ) -> None:
        """Add a commit's counter changes (and its events per mapping fate, when there are many): upserted,
        or when there are very many (a workspace with many connectors), logged as one row and folded into
        the counters every few such commits."""
        if fates is None and len(counts) <= counter_log.LOG_OVER:
            self._bump(db, counts)
            return
        counter_log.log(db, counts, fates)
        self._logged = counter_log.logged(db) if self._logged is None else self._logged + 1
        if self._logged >= counter_log.FOLD_EVERY:
            counter_log.fold(db)
            self._logged = 0

    def _trim_dead_letters(self, db: sqlite3.Connection, counts: dict[tuple[str, str, str], int]) -> None:
        """Drop the oldest dead letters beyond the total cap, counted in `counts`; logged after the commit."""
        cap = self.dead_letter_caps.total
        dropped = trim_dead_letters(db, cap, counts)
        if dropped:
            self._after_commit.append(partial(warn_dropped, dropped, cap))
