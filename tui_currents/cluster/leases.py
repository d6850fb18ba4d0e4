"""Leases and marks: batch messages fetched from the shared durable consumer, handed out as rows, settled.

A leased row's `seq` packs (stream sequence of its batch message, position in it). A batch message is
acked once every row of it handed out is delivered or dead-lettered; terminated when all were
dead-lettered; nak'ed with the latest asked delay when any row was given back or is to be retried. The
rows of a nak'ed message that were already settled are skipped when it comes back to this instance;
another instance receiving it sends them again, under the same messageId, which Segment deduplicates.

Lease time. The consumer's ack wait is short (`ack_wait`, 30 s by default: what an instance that dies
leaves behind comes back that soon); while a lease runs, this instance tells the server it is still
working on its messages (in-progress acks, every second at most), and when `lease_seconds` pass it gives
them back itself (nak), so a lease lasts what the caller asked.

Attempts. JetStream counts every delivery, releases and Retry-After waits included; the contract counts
only real attempts. So when a message is given back with some rows counted as one more attempt, the
attempts per row are written to the KV bucket (`a.<connector>.<stream seq>`) before the nak, and read
when the message is delivered again; a message delivered for the first time costs nothing extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import nats.js.errors
import orjson
from nats.aio.msg import Msg
from nats.js import api

from tui_currents.cluster import codec
from tui_currents.cluster.base import Core, Held
from tui_currents.cluster.errors import NATS_ERRORS
from tui_currents.outbox import DELIVERED, RETRIED, TAIL_DELIVERED, OutboxRow

DONE, DEAD, AGAIN = "done", "dead", "again"  # how a handed-out row was settled


class Leasing(Core):
    """The lease and mark part of JetStreamOutbox."""

    def lease(
        self, connector: str, *, max_messages: int, max_bytes: int, lease_seconds: float,
        now: float | None = None,
    ) -> list[OutboxRow]:  # fmt: skip
        """The connector's next messages, whole batch messages at a time (the first even when larger than
        the limits); each batch message is owned by this instance until settled or `lease_seconds` pass."""
        kept = "Nothing was leased; the queue is unchanged."
        return self._run(
            self._lease(connector, max_messages, max_bytes, lease_seconds), "lease queued events", kept
        )

    async def _subscription(self, connector: str) -> Any:
        sub = self._subs.get(connector)
        if sub is None:
            durable = f"c_{codec.token(connector)}"
            config = api.ConsumerConfig(
                durable_name=durable,
                ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=self.ack_wait,
                max_deliver=-1,
                max_ack_pending=20_000,
                filter_subject=self._subject(connector),
            )
            try:
                await self._js.consumer_info(self.stream, durable)
            except nats.js.errors.NotFoundError:
                with contextlib.suppress(nats.js.errors.BadRequestError):  # another instance made it first
                    await self._js.add_consumer(self.stream, config)
            sub = self._subs[connector] = await self._js.pull_subscribe_bind(durable, stream=self.stream)
        return sub

    async def _lease(
        self, connector: str, max_messages: int, max_bytes: int, lease_seconds: float
    ) -> list[OutboxRow]:
        held = self._held[connector]
        rows: list[OutboxRow] = []
        budget = [max_messages, max_bytes]
        until = time.time() + lease_seconds

        def hand_out(item: Held) -> bool:
            positions = [p for p in range(len(item.batch.entries)) if p not in item.skip]
            size = sum(item.batch.entries[p].size for p in positions)
            if rows and (len(positions) > budget[0] or size > budget[1]):
                return False
            item.handed = True
            item.lease_until = until
            budget[0] -= len(positions)
            budget[1] -= size
            for p in positions:
                entry = item.batch.entries[p]
                rows.append(
                    OutboxRow(
                        codec.row_seq(item.stream_seq, p), entry.message_id, entry.event_type,
                        item.batch.bodies[p], entry.size, item.attempts.get(p, 0), item.batch.enqueued_at,
                    )
                )  # fmt: skip
            return True

        for item in sorted((h for h in held.values() if not h.handed), key=lambda h: h.stream_seq):
            if item.handed:  # taken by a lease running beside this one (on another thread) meanwhile
                continue
            if not hand_out(item):
                return rows
            await item.msg.in_progress()  # fetched earlier: its ack wait starts again now
        sub = await self._subscription(connector)
        while budget[0] > 0 and budget[1] > 0:
            # Fetch about as many batch messages as the budget holds, so that an instance does not take
            # messages it will not hand out soon (they would wait in its buffer, not go to another one).
            want = max(1, min(256, budget[0] // self._events_per_message.get(connector, 50)))
            msgs = await self._fetch(sub, want)
            if not msgs:
                break
            stop = False
            for msg in msgs:
                taken = await self._take(connector, msg)
                if taken is None or stop:
                    continue
                stop = not hand_out(taken)
            if stop or len(msgs) < want:
                break
        return rows

    async def _fetch(self, sub: Any, want: int) -> list[Msg]:
        """Up to `want` due messages ([] when none). A consumer just created, or whose leader moved to
        another node, answers "no responders" for a moment: asked again until `timeout`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            try:
                fetched: list[Msg] = await sub.fetch(want, timeout=self.fetch_wait)
                return fetched
            except TimeoutError:  # nothing due (nats-py raises its own or asyncio's, by the path taken)
                return []
            except nats.js.errors.ServiceUnavailableError:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.05)

    def _attempts_key(self, connector: str, stream_seq: int) -> str:
        return f"a.{codec.token(connector)}.{stream_seq}"

    async def _take(self, connector: str, msg: Msg) -> Held | None:
        """Own a fetched message (None when it holds nothing left to send: it is acked)."""
        meta = msg.metadata
        stream_seq = meta.sequence.stream
        skip = frozenset(self._settled_before.get((connector, stream_seq), ()))
        batch = codec.decode_batch(msg.data)
        self._events_per_message[connector] = max(1, len(batch.entries))
        if len(skip) >= len(batch.entries):
            await msg.ack()
            self._settled_before.pop((connector, stream_seq), None)
            return None
        attempts: dict[int, int] = {}
        if meta.num_delivered > 1:  # delivered before: were any of its rows really attempted?
            with contextlib.suppress(nats.js.errors.KeyNotFoundError):
                entry = await self._kv.get(self._attempts_key(connector, stream_seq))
                if entry.value:
                    attempts = {int(p): n for p, n in orjson.loads(entry.value).items()}
        item = Held(msg, stream_seq, batch, attempts, skip)
        self._held[connector][stream_seq] = item
        return item

    async def _keep_leases_forever(self) -> None:
        """Tell the server every held message is still being worked on, until its lease ends; then give it
        back (a lease lasts `lease_seconds`, whatever the consumer's ack wait)."""
        while True:
            await asyncio.sleep(max(0.2, min(1.0, self.ack_wait / 3)))
            now = time.time()
            for connector, held in list(self._held.items()):
                ended = [
                    codec.row_seq(item.stream_seq, p)
                    for item in list(held.values())
                    if item.handed and item.lease_until <= now
                    for p in range(len(item.batch.entries))
                    if p not in item.settled and p not in item.skip
                ]
                with contextlib.suppress(*NATS_ERRORS):
                    if ended:
                        await self._settle(connector, ended, AGAIN)
                    for item in list(held.values()):
                        await item.msg.in_progress()

    # --------------------------------------------------------------------------------------- settling

    async def _settle(
        self, connector: str, seqs: Sequence[int], how: str, retry_at: float = 0.0, *, count: bool = False
    ) -> list[tuple[Held, int]]:
        """Mark handed-out rows; finish each batch message all of whose rows are settled. Returns the rows
        newly settled (their message and position). `count`: rows given back count one more attempt."""
        held = self._held.get(connector, {})
        marked: list[tuple[Held, int]] = []
        touched: dict[int, Held] = {}
        for seq in seqs:
            stream_seq, position = codec.split_seq(seq)
            item = held.get(stream_seq)
            if item is None or not item.handed or position in item.settled or position in item.skip:
                continue
            item.settled[position] = how
            if how == AGAIN:
                item.retry_at = max(item.retry_at, retry_at)
                if count:
                    item.counted.add(position)
            marked.append((item, position))
            touched[stream_seq] = item
        complete = [i for i in touched.values() if len(i.settled) + len(i.skip) >= len(i.batch.entries)]
        await asyncio.gather(*(self._finish(connector, item) for item in complete))
        return marked

    async def _finish(self, connector: str, item: Held) -> None:
        key = (connector, item.stream_seq)
        self._held[connector].pop(item.stream_seq, None)
        outcomes = set(item.settled.values())
        if AGAIN in outcomes:
            done = {p for p, how in item.settled.items() if how != AGAIN} | set(item.skip)
            self._settled_before[key] = done
            if item.counted:
                attempts = {
                    str(p): item.attempts.get(p, 0) + (p in item.counted)
                    for p, how in item.settled.items()
                    if how == AGAIN
                }
                await self._kv.put(self._attempts_key(connector, item.stream_seq), orjson.dumps(attempts))
            await item.msg.nak(delay=max(0.0, item.retry_at - time.time()))
            return
        self._settled_before.pop(key, None)
        if outcomes == {DEAD} and not item.skip:
            await item.msg.term()
        else:
            await item.msg.ack_sync(timeout=self.timeout)
        if item.attempts:
            with contextlib.suppress(*NATS_ERRORS):  # a leftover key is only a few bytes, never read again
                await self._kv.delete(self._attempts_key(connector, item.stream_seq))

    def delivered(self, connector: str, seqs: Sequence[int], *, now: float | None = None) -> int:
        """Segment accepted these rows; their batch message is acked once all its rows are settled."""
        now = time.time() if now is None else now
        kept = "They stay leased and will be sent again under the same messageId."
        return self._run(self._delivered(connector, seqs, now), "mark events delivered", kept)

    async def _delivered(self, connector: str, seqs: Sequence[int], now: float) -> int:
        marked = await self._settle(connector, seqs, DONE)
        entries = [item.batch.entries[p] for item, p in marked]
        self._tally.bump(
            {(connector, t, DELIVERED): n for t, n in Counter(e.event_type for e in entries).items()}
        )
        self._tally.queue(connector, -len(entries), -sum(e.size for e in entries))
        await self._tail.updates(
            connector, now, [(e.event_type, e.message_id) for e in entries], TAIL_DELIVERED
        )
        return len(marked)

    def retry_later(
        self, connector: str, seqs: Sequence[int], *, retry_at: float, error: str, count_attempt: bool = True
    ) -> None:
        """Due again at `retry_at`: their batch message is nak'ed with that delay once all its rows are
        settled. The attempt is counted unless Segment asked for the wait (`count_attempt=False`)."""
        kept = "They stay leased and come back when the lease ends."
        self._run(self._retry_later(connector, seqs, retry_at, count_attempt), "schedule a retry", kept)

    async def _retry_later(
        self, connector: str, seqs: Sequence[int], retry_at: float, count_attempt: bool
    ) -> None:
        marked = await self._settle(connector, seqs, AGAIN, retry_at, count=count_attempt)
        if count_attempt:
            types = Counter(item.batch.entries[p].event_type for item, p in marked)
            self._tally.bump({(connector, t, RETRIED): n for t, n in types.items()})

    def release(self, connector: str, seqs: Sequence[int], *, retry_at: float = 0.0) -> None:
        """Given back unsent, due again at `retry_at`; no attempt counted."""
        kept = "They stay leased and come back when the lease ends."
        self._run(self._settle(connector, seqs, AGAIN, retry_at), "give back leased events", kept)

    def release_leases(self, connector: str | None = None) -> int:
        """Every batch message this instance holds is nak'ed (due again now); returns the rows given back."""
        kept = "They come back when their lease ends."
        return self._run(self._release_all(connector), "give back leased events", kept)

    async def _release_all(self, connector: str | None) -> int:
        count = 0
        for name in [connector] if connector is not None else list(self._held):
            for item in list(self._held.get(name, {}).values()):
                rest = [
                    codec.row_seq(item.stream_seq, p)
                    for p in range(len(item.batch.entries))
                    if p not in item.settled and p not in item.skip
                ]
                item.handed = True
                count += len(rest)
                await self._settle(name, rest, AGAIN, 0.0)
        return count
