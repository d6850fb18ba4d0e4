"""`commit`: a received batch published to the queue stream (one batch message per connector), its rejected
events to the dead-letter stream, then counted.

Duplicates. A batch message carries a `Nats-Msg-Id` hashed from its content, so the same batch again
(Braze retrying a request it got no answer for, on this instance or another) is stored once by the server.
A messageId already queued recently in another batch is caught by a window of known ids per connector,
kept by every instance from its own commits and from the received lines every instance publishes on the
tail subjects (see tail.py): the same id in a different batch within `duplicate_window` seconds is a
duplicate. The tail is best effort, so an id queued by another instance a moment ago, or while this one
was away, can slip through; it is then sent twice under the same messageId, which Segment deduplicates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from nats.js import api

from tui_currents.cluster import codec
from tui_currents.cluster.base import Core
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
from tui_currents.segments import KeySet, key_of
from tui_currents.store.dead_letter_caps import bounded_event, warn_over_request_cap

if TYPE_CHECKING:
    from tui_currents.mapping import Outcome

log = logging.getLogger("tui_currents.cluster")


class KnownWindow:
    """The messageIds one connector queued within about `window` seconds, as 64-bit keys: two generations
    of keys, the older dropped when the newer is half a window old or holds half of `most` keys."""

    def __init__(self, window: float, most: int) -> None:
        self.window = window
        self.most = most
        self._new = KeySet()
        self._old = KeySet()
        self._began = time.monotonic()

    def among(self, keys: Sequence[int]) -> set[int]:
        return self._new.among(keys) | self._old.among(keys)

    def add(self, keys: Sequence[int]) -> None:
        if time.monotonic() - self._began >= self.window / 2 or len(self._new) >= self.most // 2:
            self._old, self._new, self._began = self._new, KeySet(), time.monotonic()
        self._new.update(keys)


class Committing(Core):
    """The commit part of JetStreamOutbox."""

    def _known(self, connector: str) -> KnownWindow:
        known = self._known_ids.get(connector)
        if known is None:
            known = self._known_ids[connector] = KnownWindow(self.duplicate_window, self.known_ids_max)
        return known

    def _heard_queued(self, connector: str, message_ids: list[str]) -> None:
        """Another instance (or this one) queued these ids: heard on the tail, on the client's loop."""
        self._known(connector).add([key_of(m) for m in message_ids])

    def commit(
        self, batch: Sequence[tuple[str, Outcome]] | Received, *, source: str, now: float | None = None
    ) -> CommitResult:
        """Publish the batch's queued events (one message per connector) and its dead letters; returns
        after every publish ack (a quorum stored them). A batch retried after a failure is stored once:
        each publish carries an id derived from its content; a messageId queued recently in another batch
        is a duplicate (see the module's docstring). Counters follow (see tallies.py)."""
        now = time.time() if now is None else now
        received = batch if isinstance(batch, Received) else Received.of(batch)
        kept = "Nothing from this batch was acknowledged; its sender can send it again."
        return self._run(self._commit(received, source, now), "save received events", kept)

    async def _commit(self, received: Received, source: str, now: float) -> CommitResult:
        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        publishes: list[Coroutine[Any, Any, api.PubAck]] = []
        plans: list[tuple[str, list[tuple[str, str]], list[bytes], str]] = []  # per batch message
        lines_of: dict[str, list[list]] = {}  # tail lines per connector, marked copies of the batch's
        new_keys: dict[str, list[int]] = {}
        duplicates = 0
        for connector, (entries, bodies) in received.tails.items():
            lines = lines_of[connector] = [list(entry) for entry in entries]
            queued: list[tuple[str, str]] = []
            queued_bodies: list[bytes] = []
            at = [i for i, entry in enumerate(entries) if entry[FATE] == "queued"]
            keys = [key_of(lines[i][MESSAGE_ID]) for i in at]
            known = self._known(connector).among(keys)
            seen: set[int] = set()
            for index, key, body in zip(at, keys, bodies, strict=True):
                line = lines[index]
                if key in seen or key in known:
                    _mark_duplicate(line, counts, connector)
                    duplicates += 1
                    continue
                seen.add(key)
                queued.append((line[MESSAGE_ID], line[TYPE]))
                queued_bodies.append(body)
            new_keys[connector] = list(seen)
            # One batch message per connector, or several when its events would not fit in one.
            for start, end in codec.chunks([len(body) for body in queued_bodies], self._message_room()):
                chunk, chunk_bodies = queued[start:end], queued_bodies[start:end]
                msg_id = codec.batch_id(connector, [m for m, _ in chunk], chunk_bodies)
                plans.append((connector, chunk, chunk_bodies, msg_id))
                data = codec.encode_batch(now, chunk, chunk_bodies)
                headers = {"Nats-Msg-Id": msg_id}
                publishes.append(self._js.publish(self._subject(connector), data, headers=headers))
        caps = self._caps
        over_cap = received.dead[caps.per_request :]  # rejected events beyond the cap: counted, not kept
        dead_publishes = [
            self._publish_dead(
                connector, event_id, event_type, reason, now, 0, bounded_event(record, caps.event_bytes),
                None, ("rejected", source, record),
            )
            for connector, event_id, event_type, reason, record in received.dead[: caps.per_request]
        ]  # fmt: skip
        acks = await asyncio.gather(*publishes, return_exceptions=True)
        dead = await asyncio.gather(*dead_publishes, return_exceptions=True)
        failure = next((r for r in [*acks, *dead] if isinstance(r, BaseException)), None)
        if failure is not None:
            # Batch messages stored before another publish failed: the caller retries the commit and
            # finds them stored; remember they are this commit's own, not duplicates from the source.
            for plan, ack in zip(plans, acks, strict=True):
                if isinstance(ack, api.PubAck) and not ack.duplicate:
                    self._stored_unreported[plan[3]] = None
            while len(self._stored_unreported) > 10_000:
                del self._stored_unreported[next(iter(self._stored_unreported))]
            raise failure
        for connector, keys in new_keys.items():
            self._known(connector).add(keys)
        queued_total = 0
        tail_bodies: dict[str, list[bytes]] = defaultdict(list)
        for (connector, chunk, chunk_bodies, msg_id), ack in zip(plans, acks, strict=True):
            mine = msg_id in self._stored_unreported
            self._stored_unreported.pop(msg_id, None)
            if isinstance(ack, api.PubAck) and ack.duplicate and not mine:  # this very batch is stored
                ids = {message_id for message_id, _ in chunk}
                for line in lines_of[connector]:
                    if line[FATE] == "queued" and line[MESSAGE_ID] in ids:
                        _mark_duplicate(line, counts, connector)
                duplicates += len(chunk)
                continue
            queued_total += len(chunk)
            self._tally.queue(connector, len(chunk), sum(len(b) for b in chunk_bodies))
            tail_bodies[connector] += chunk_bodies
        for connector, lines in lines_of.items():
            await self._tail.received(connector, now, lines, source=source, bodies=tail_bodies[connector])
        for (connector, event_type, fate), n in received.fates.items():
            counts[(connector, event_type, RECEIVED)] += n
            counts[(connector, event_type, FATE_COUNTER.get(fate, NOT_SELECTED))] += n
        if over_cap:
            for connector, _, event_type, _, _ in over_cap:
                counts[(connector, event_type, DEAD_LETTERS_DROPPED)] += 1
            warn_over_request_cap(len(over_cap), caps.per_request)
        self._tally.bump(counts)
        if dead_publishes:
            await self._trim_dead_letters()
        return CommitResult(
            received=received.items,
            queued=queued_total,
            duplicates=duplicates,
            filtered=received.items - queued_total - duplicates - len(received.dead),
            dead_lettered=len(received.dead),
        )

    def _message_room(self) -> int:
        """Bytes of Segment messages one batch message may carry: the server's payload limit, less room
        for the index line."""
        return max(1, int(self._nc.max_payload * 0.75))

    async def _publish_dead(
        self,
        connector: str,
        message_id: str | None,
        event_type: str,
        reason: str,
        at: float,
        attempts: int,
        event: bytes | None,
        message: bytes | None,
        identity: tuple[bytes | str | None, ...],
    ) -> None:
        record = {
            "connector": connector,
            "message_id": message_id,
            "event_type": event_type,
            "reason": reason,
            "at": at,
            "attempts": attempts,
            "event": event.decode("utf-8", "replace") if event is not None else None,
            "message": message.decode("utf-8", "replace") if message is not None else None,
        }
        parts = [part if part is not None else b"" for part in identity]
        headers = {"Nats-Msg-Id": codec.content_id(connector, *parts)}
        await self._js.publish(self._dead_subject(connector), orjson.dumps(record), headers=headers)


def _mark_duplicate(line: list, counts: dict[tuple[str, str, str], int], connector: str) -> None:
    """Turn a tail line from queued into duplicate, and count it so."""
    line[FATE] = TAIL_DUPLICATE
    line[4] = DUPLICATE_REASON
    counts[(connector, line[TYPE], QUEUED)] -= 1
    counts[(connector, line[TYPE], DUPLICATE)] += 1
