"""Dead letters in cluster mode: the dead-letter stream `NAME_DEAD`, one message per dead letter with its
reason (its id is its stream sequence); moving leased or waiting messages there, reading, exporting and
requeueing them, and the caps (`DeadLetterCaps`).

Caps: `per_request` and `event_bytes` apply when a commit writes its rejected events (committing.py);
`total` is applied after each write of dead letters by purging the oldest beyond it. The dropped ones are
counted per connector (from the stream's per-subject counts), under no event type: the purge does not say
which types it dropped. Two instances trimming at the same moment may both count the same drop.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import nats.js.errors

from tui_currents.cluster import codec, dead_letters
from tui_currents.cluster.base import Core
from tui_currents.cluster.leases import AGAIN, DEAD
from tui_currents.outbox import (
    DAY,
    DEAD_LETTERED,
    DEAD_LETTERS_DROPPED,
    EXPIRED,
    QUEUED,
    REQUEUED,
    REQUEUED_REASON,
    TAIL_DEAD_LETTER,
    DeadLetter,
    DeadLetterCaps,
)
from tui_currents.store.dead_letter_caps import warn_dropped
from tui_currents.store.dead_letters import export_lines

log = logging.getLogger("tui_currents.cluster")


class Burying(Core):
    """The dead-letter part of JetStreamOutbox."""

    @property
    def dead_letter_caps(self) -> DeadLetterCaps:
        """Bounds on the dead letters (config.toml's [dead_letters]); replaced on a config reload."""
        return self._caps

    @dead_letter_caps.setter
    def dead_letter_caps(self, caps: DeadLetterCaps) -> None:
        self._caps = caps

    async def _trim_dead_letters(self) -> None:
        """Purge the oldest dead letters beyond the total cap, counting the drops per connector."""
        cap = self._caps.total
        info = await self._js.stream_info(self.dead_stream, subjects_filter=f"{self.name}.dead.*")
        if info.state.messages <= cap:
            return
        before = dict(info.state.subjects or {})
        await self._js.purge_stream(self.dead_stream, keep=cap)
        info = await self._js.stream_info(self.dead_stream, subjects_filter=f"{self.name}.dead.*")
        after = info.state.subjects or {}
        counts = {}
        for subject, n in before.items():
            dropped = n - after.get(subject, 0)
            if dropped > 0:
                counts[(codec.connector_of(subject.rsplit(".", 1)[1]), "", DEAD_LETTERS_DROPPED)] = dropped
        self._tally.bump(counts)
        if counts:
            warn_dropped(sum(counts.values()), cap)

    def dead_letter(
        self, connector: str, seqs: Sequence[int], *, reason: str, now: float | None = None
    ) -> int:
        """Written to the dead-letter stream (publish acked) before their batch message is settled."""
        now = time.time() if now is None else now
        kept = "They stay leased and will be tried again."
        return self._run(self._dead_letter(connector, seqs, reason, now), "dead-letter events", kept)

    async def _dead_letter(
        self, connector: str, seqs: Sequence[int], reason: str, now: float, *, expired: bool = False
    ) -> int:
        held = self._held.get(connector, {})
        wanted = []
        for seq in seqs:
            stream_seq, position = codec.split_seq(seq)
            item = held.get(stream_seq)
            if (
                item is not None
                and item.handed
                and position not in item.settled
                and position not in item.skip
            ):
                wanted.append((seq, item, position))
        for _, item, p in wanted:
            entry = item.batch.entries[p]
            await self._publish_dead(
                connector, entry.message_id, entry.event_type, reason, now, item.attempts.get(p, 0), None,
                item.batch.bodies[p], ("dead", str(item.stream_seq), str(p)),
            )  # fmt: skip
        marked = await self._settle(connector, [seq for seq, _, _ in wanted], DEAD)
        entries = [item.batch.entries[p] for item, p in marked]
        types = Counter(e.event_type for e in entries)
        self._tally.bump({(connector, t, DEAD_LETTERED): n for t, n in types.items()})
        if expired:
            self._tally.bump({(connector, t, EXPIRED): n for t, n in types.items()})
        self._tally.queue(connector, -len(entries), -sum(e.size for e in entries))
        updates = [(e.event_type, e.message_id) for e in entries]
        await self._tail.updates(connector, now, updates, TAIL_DEAD_LETTER, reason=reason)
        if wanted:
            await self._trim_dead_letters()
        return len(marked)

    def expire(
        self, connector: str, *, older_than: float, now: float | None = None, limit: int | None = None
    ) -> int:
        """Batch messages queued before `older_than` and not leased by any instance go to the dead letters
        (reason "expired: undeliverable for N days"), oldest first, at most `limit` events (the rest of a
        batch message cut by the limit is given back). Stops at the first younger message, which this
        instance keeps for its next lease. Returns how many events were moved."""
        now = time.time() if now is None else now
        kept = "The messages stay queued; expiry is tried again later."
        doing = "move expired messages to the dead letters"
        reason = f"expired: undeliverable for {max(0.0, (now - older_than) / DAY):g} days"
        return self._run(
            self._bury_waiting(connector, older_than, reason, now, limit, expired=True), doing, kept
        )

    def dead_letter_queued(self, connector: str, *, reason: str, now: float | None = None) -> int:
        """Every message waiting for the connector and not leased by any instance goes to the dead letters
        with `reason` (e.g. the connector is removed). Returns how many were moved."""
        now = time.time() if now is None else now
        kept = "The messages not yet moved stay queued."
        doing = "move queued messages to the dead letters"
        return self._run(
            self._bury_waiting(connector, float("inf"), reason, now, None, expired=False), doing, kept
        )

    async def _bury_waiting(
        self, connector: str, older_than: float, reason: str, now: float, limit: int | None, *, expired: bool
    ) -> int:
        """`expire` and `dead_letter_queued`: dead-letter the waiting batch messages queued before
        `older_than`, oldest first, fetched one at a time through the shared consumer."""
        sub = await self._subscription(connector)
        moved = 0
        while limit is None or moved < limit:
            waiting = sorted(
                (h for h in self._held[connector].values() if not h.handed), key=lambda h: h.stream_seq
            )
            item = waiting[0] if waiting else None
            while item is None:
                msgs = await self._fetch(sub, 1)
                if not msgs:
                    return moved
                item = await self._take(connector, msgs[0])
            if item.batch.enqueued_at >= older_than:
                break  # batch messages are queued in time order: the rest are younger
            item.handed = True
            item.lease_until = time.time() + self.ack_wait
            positions = [
                codec.row_seq(item.stream_seq, p)
                for p in range(len(item.batch.entries))
                if p not in item.skip
            ]
            room = len(positions) if limit is None else limit - moved
            moved += await self._dead_letter(connector, positions[:room], reason, now, expired=expired)
            await self._settle(connector, positions[room:], AGAIN)
        return moved

    # ---------------------------------------------------------------------------------------- reading

    def dead_letters(
        self, connector: str | None = None, *, limit: int = 100, before: int | None = None
    ) -> list[DeadLetter]:
        """Dead letters, newest first; page with `before` = the last id seen (ids are stream sequences)."""
        return self._run(
            self._letters(connector, None, True, before, limit), "read dead letters", "Nothing was changed."
        )

    async def _letters(
        self,
        connector: str | None,
        ids: Iterable[int] | None,
        newest_first: bool,
        before: int | None,
        limit: int | None,
    ) -> list[DeadLetter]:
        subject = self._dead_subject(connector) if connector is not None else None
        return [
            letter
            async for letter in dead_letters.scan(
                self._js, self.dead_stream, subject=subject, ids=ids, newest_first=newest_first,
                before=before, limit=limit,
            )
        ]  # fmt: skip

    def requeue(
        self, connector: str | None = None, ids: Sequence[int] | None = None, *, now: float | None = None
    ) -> int:
        """Dead letters with a Segment message go back to the queue (published and acked first, then
        removed from the dead-letter stream; a requeue interrupted in between is finished by running it
        again: the publish is de-duplicated). Returns how many were requeued."""
        now = time.time() if now is None else now
        kept = "The dead letters not requeued are still kept; run it again."
        return self._run(self._requeue(connector, ids, now), "requeue dead letters", kept)

    async def _requeue(self, connector: str | None, ids: Sequence[int] | None, now: float) -> int:
        letters = [d for d in await self._letters(connector, ids, False, None, None) if d.message is not None]
        by_connector: dict[str, list[DeadLetter]] = defaultdict(list)
        for letter in letters:
            by_connector[letter.connector].append(letter)
        for name, group in by_connector.items():
            for start in range(0, len(group), 10_000):
                chunk = group[start : start + 10_000]
                bodies = [d.message or b"" for d in chunk]
                data = codec.encode_batch(now, [(d.message_id or "", d.event_type) for d in chunk], bodies)
                msg_id = codec.content_id("requeue", *(str(d.id) for d in chunk))
                await self._js.publish(self._subject(name), data, headers={"Nats-Msg-Id": msg_id})
                self._tally.queue(name, len(chunk), sum(len(b) for b in bodies))
            types = Counter(d.event_type for d in group)
            self._tally.bump({(name, t, REQUEUED): n for t, n in types.items()})
            updates = [(d.event_type, d.message_id or "") for d in group]
            await self._tail.updates(name, now, updates, QUEUED, reason=REQUEUED_REASON)
        for letter in letters:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self._js.delete_msg(self.dead_stream, letter.id)
        return len(letters)

    def export_dead_letters(
        self, path: Path | str, connector: str | None = None, ids: Iterable[int] | None = None
    ) -> int:
        """Dead letters as JSON lines in a private file (0600), fsynced; returns how many."""
        letters = self._run(
            self._letters(connector, ids, False, None, None), "read dead letters", "Nothing was written."
        )
        return export_lines(path, letters)


__all__ = ["DEAD", "Burying"]
