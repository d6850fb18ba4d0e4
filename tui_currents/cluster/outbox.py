"""`JetStreamOutbox`: the outbox contract (tui_currents.outbox.Outbox) on a NATS JetStream cluster.

Layout in JetStream (NAME is the `name` given, "tc" by default):

- Stream `NAME_OUTBOX` (work queue, file storage, `replicas` copies), subjects `NAME.outbox.<connector>`:
  one message per commit per connector carrying all its queued events (several when they would pass the
  server's max_payload; see codec.py), published with a `Nats-Msg-Id` derived from its content, so a
  commit retried with the same batch is stored once.
  `commit` returns only after the publish ack, i.e. once a quorum of replicas stored it.
- One durable pull consumer per connector (`c_<connector>`), shared by every instance: a message has one
  owner at a time and comes back after the ack wait when its owner dies.
- Stream `NAME_DEAD`, subjects `NAME.dead.<connector>`: one message per dead letter, with its reason.
- KV bucket `NAME_state`: connector states (`s.<connector>`) and each instance's counters (`n.<instance>`).
- Tail: best effort, core NATS subjects `NAME.tail.<connector>` (see tail.py): each instance keeps the
  lines it heard since it started; lines published while it was away, or lost on a reconnect, are not in it.

A leased row's `seq` packs (stream sequence of its batch message, position in it). A batch message is
acked once every row of it handed out is delivered or dead-lettered; terminated when all were
dead-lettered; nak'ed with the latest asked delay when any row was given back or is to be retried. The
rows of a nak'ed message that were already settled are skipped when it comes back to this instance;
another instance receiving it sends them again, under the same messageId, which Segment deduplicates.

Every call runs on a private event loop (loop.py) and waits at most twice `timeout` seconds: a cluster
without quorum raises StoreUnavailable with a message saying what was kept (errors.py), never hangs.

Known differences from the SQLite store: duplicates are collapsed per batch message (the same batch
again, or a messageId repeated within one batch), not per messageId across batches (Segment deduplicates
those); `attempts` is the JetStream delivery count minus one, so releases and Retry-After waits count too;
the `lease_seconds` given to `lease` is not used: the consumer's ack wait is the constructor's
`lease_seconds`, set when the consumer is first created; dead-letter caps are not applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter, defaultdict
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

import nats
import nats.errors
import nats.js.errors
import orjson
from nats.aio.msg import Msg
from nats.js import api

from tui_currents.cluster import codec, dead_letters
from tui_currents.cluster.errors import NATS_ERRORS, unavailable
from tui_currents.cluster.loop import LoopThread
from tui_currents.cluster.tail import TailFeed
from tui_currents.cluster.tallies import Tally, sizes, summed
from tui_currents.outbox import (
    DAY,
    DEAD_LETTERED,
    DELIVERED,
    DUPLICATE,
    DUPLICATE_REASON,
    EXPIRED,
    FATE_COUNTER,
    NOT_SELECTED,
    QUEUED,
    RECEIVED,
    REQUEUED,
    REQUEUED_REASON,
    RETRIED,
    TAIL_DEAD_LETTER,
    TAIL_DELIVERED,
    TAIL_DUPLICATE,
    Backlog,
    CommitResult,
    ConnectorState,
    DeadLetter,
    Outbox,
    OutboxRow,
    StoreUnavailable,
    TailRow,
)
from tui_currents.received import FATE, MESSAGE_ID, TYPE, Received
from tui_currents.store.dead_letters import export_lines

if TYPE_CHECKING:
    from tui_currents.mapping import Outcome

T = TypeVar("T")

DONE, DEAD, AGAIN = "done", "dead", "again"  # how a handed-out row was settled


@dataclass(slots=True)
class _Held:
    """A batch message this instance owns: fetched, not yet acked, nak'ed or terminated."""

    msg: Msg
    stream_seq: int
    batch: codec.Batch
    attempts: int
    skip: frozenset[int]  # positions settled before an earlier nak (not handed out again)
    handed: bool = False
    settled: dict[int, str] = field(default_factory=dict)
    retry_at: float = 0.0


class JetStreamOutbox:
    """The queue on a NATS JetStream cluster, shared by every instance that opens it with the same `name`.

    `instance` names this instance (its counters' key): stable across restarts, unique in the cluster.
    Raises StoreUnavailable when the cluster cannot be reached or its assets cannot be created.
    """

    def __init__(
        self,
        servers: Sequence[str],
        *,
        instance: str,
        name: str = "tc",
        replicas: int = 3,
        timeout: float = 5.0,
        lease_seconds: float = 60.0,
        duplicate_window: float = 600.0,
        fetch_wait: float = 0.1,
        tail_keep: int = 10_000,
    ) -> None:
        self.servers = list(servers)
        self.instance = instance
        self.name = name
        self.stream = f"{name.upper()}_OUTBOX"
        self.dead_stream = f"{name.upper()}_DEAD"
        self.bucket = f"{name}_state"
        self.replicas = replicas
        self.timeout = timeout
        self.lease_seconds = lease_seconds
        self.duplicate_window = duplicate_window
        self.fetch_wait = fetch_wait
        self.tail_keep = tail_keep
        self.path = Path(f"nats:{self.stream}")  # what StoreUnavailable names: this queue, not a file
        self._tally = Tally()
        self._others: dict[str, Tally] = {}  # other instances' counters, by KV key
        self._states: dict[str, ConnectorState] = {}
        self._held: dict[str, dict[int, _Held]] = defaultdict(dict)
        self._settled_before: dict[tuple[str, int], set[int]] = {}
        self._subs: dict[str, Any] = {}
        self._stored_unreported: dict[str, None] = {}  # ids of batches stored by a commit that then failed
        self._events_per_message: dict[str, int] = {}  # the last batch message's size, per connector
        self._closed = False
        self._loop = LoopThread(name=f"nats-{name}")
        try:
            self._run(self._open(), "connect to the NATS cluster", "Nothing was read or written.")
        except BaseException:
            self._loop.stop()
            raise

    # ------------------------------------------------------------------------------------- plumbing

    def _run(self, coro: Coroutine[Any, Any, T], doing: str, kept: str) -> T:
        """Run `coro` on the client's loop, waiting at most twice `timeout` (a call makes a few requests,
        each bounded by `timeout`); NATS failures become StoreUnavailable saying what was kept."""
        if self._closed:
            coro.close()
            raise StoreUnavailable(
                f"Could not {doing}: the cluster queue is closed.", cause="closed", path=self.path
            )
        try:
            return self._loop.call(coro, self.timeout * 2)
        except NATS_ERRORS as error:
            raise unavailable(error, doing, kept, self.servers, self.path) from error

    async def _open(self) -> None:
        self._nc = await nats.connect(
            servers=self.servers,
            connect_timeout=self.timeout,
            reconnect_time_wait=0.2,
            max_reconnect_attempts=-1,
            error_cb=_ignore,
            disconnected_cb=_nothing,
            reconnected_cb=_nothing,
        )
        self._js = self._nc.jetstream(timeout=self.timeout)
        await self._ensure_stream(
            api.StreamConfig(
                name=self.stream,
                subjects=[f"{self.name}.outbox.*"],
                retention=api.RetentionPolicy.WORK_QUEUE,
                storage=api.StorageType.FILE,
                num_replicas=self.replicas,
                duplicate_window=self.duplicate_window,
            )
        )
        await self._ensure_stream(
            api.StreamConfig(
                name=self.dead_stream,
                subjects=[f"{self.name}.dead.*"],
                retention=api.RetentionPolicy.LIMITS,
                storage=api.StorageType.FILE,
                num_replicas=self.replicas,
                duplicate_window=self.duplicate_window,
            )
        )
        try:
            self._kv = await self._js.key_value(self.bucket)
        except nats.js.errors.BucketNotFoundError:
            self._kv = await self._js.create_key_value(
                bucket=self.bucket, history=1, replicas=self.replicas, storage=api.StorageType.FILE
            )
        # Every instance's counters and every connector's state, kept up to date by a watch on the bucket:
        # reads are then local, and a change made by any instance shows within moments everywhere.
        self._watcher = await self._kv.watchall()
        while (entry := await self._watcher.updates(timeout=self.timeout)) is not None:
            self._heard_kv(entry)
        mine = self._others.pop(self._counter_key, None)
        if mine is not None:
            self._tally = mine
        self._watching = asyncio.get_running_loop().create_task(self._watch_forever())
        self._tail = TailFeed(self._nc, self.name, self.tail_keep)
        await self._tail.listen()
        self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    async def _ensure_stream(self, config: api.StreamConfig) -> None:
        try:
            await self._js.stream_info(config.name or "")
        except nats.js.errors.NotFoundError:
            await self._js.add_stream(config)

    @property
    def _counter_key(self) -> str:
        return f"n.{codec.token(self.instance)}"

    def _subject(self, connector: str) -> str:
        return f"{self.name}.outbox.{codec.token(connector)}"

    def _dead_subject(self, connector: str) -> str:
        return f"{self.name}.dead.{codec.token(connector)}"

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            with contextlib.suppress(*NATS_ERRORS):
                await self._flush()

    async def _flush(self) -> None:
        if self._tally.dirty:
            self._tally.dirty = False
            try:
                await self._kv.put(self._counter_key, self._tally.encode())
            except BaseException:
                self._tally.dirty = True
                raise

    def _heard_kv(self, entry: Any) -> None:
        key, value = entry.key, entry.value
        if key.startswith("n."):
            if value:
                self._others[key] = Tally.decode(value)
            else:
                self._others.pop(key, None)
        elif key.startswith("s."):
            connector = codec.connector_of(key[2:])
            if value:
                self._states[connector] = ConnectorState.from_json(value)
            else:
                self._states.pop(connector, None)

    async def _watch_forever(self) -> None:
        while True:
            try:
                entry = await self._watcher.updates(timeout=60)
            except nats.errors.TimeoutError:
                continue
            if entry is not None:
                self._heard_kv(entry)

    async def _all_tallies(self) -> list[Tally]:
        return [self._tally, *(t for key, t in self._others.items() if key != self._counter_key)]

    # ------------------------------------------------------------------------------------------ commit

    def commit(
        self, batch: Sequence[tuple[str, Outcome]] | Received, *, source: str, now: float | None = None
    ) -> CommitResult:
        """Publish the batch's queued events (one message per connector) and its dead letters; returns
        after every publish ack (a quorum stored them). A batch retried after a failure is stored once:
        each publish carries an id derived from its content. Counters follow (best effort, see tallies)."""
        now = time.time() if now is None else now
        received = batch if isinstance(batch, Received) else Received.of(batch)
        kept = "Nothing from this batch was acknowledged; its sender can send it again."
        return self._run(self._commit(received, source, now), "save received events", kept)

    async def _commit(self, received: Received, source: str, now: float) -> CommitResult:
        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        publishes: list[Coroutine[Any, Any, api.PubAck]] = []
        plans: list[tuple[str, list[tuple[str, str]], list[bytes], str]] = []  # per batch message
        lines_of: dict[str, list[list]] = {}  # tail lines per connector, marked copies of the batch's
        duplicates = 0
        for connector, (entries, bodies) in received.tails.items():
            lines = lines_of[connector] = [list(entry) for entry in entries]
            queued: list[tuple[str, str]] = []
            queued_bodies: list[bytes] = []
            seen: set[str] = set()
            at = [i for i, entry in enumerate(entries) if entry[FATE] == "queued"]
            for index, body in zip(at, bodies, strict=True):
                line = lines[index]
                if line[MESSAGE_ID] in seen:
                    _mark_duplicate(line, counts, connector)
                    duplicates += 1
                    continue
                seen.add(line[MESSAGE_ID])
                queued.append((line[MESSAGE_ID], line[TYPE]))
                queued_bodies.append(body)
            # One batch message per connector, or several when its events would not fit in one.
            for start, end in codec.chunks([len(body) for body in queued_bodies], self._message_room()):
                chunk, chunk_bodies = queued[start:end], queued_bodies[start:end]
                msg_id = codec.batch_id(connector, [m for m, _ in chunk], chunk_bodies)
                plans.append((connector, chunk, chunk_bodies, msg_id))
                data = codec.encode_batch(now, chunk, chunk_bodies)
                headers = {"Nats-Msg-Id": msg_id}
                publishes.append(self._js.publish(self._subject(connector), data, headers=headers))
        dead_publishes = [
            self._publish_dead(
                connector, event_id, event_type, reason, now, 0, record, None, ("rejected", source, record)
            )
            for connector, event_id, event_type, reason, record in received.dead
        ]
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
        self._tally.bump(counts)
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
        identity: tuple[bytes | str, ...],
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
        headers = {"Nats-Msg-Id": codec.content_id(connector, *identity)}
        await self._js.publish(self._dead_subject(connector), orjson.dumps(record), headers=headers)

    # ------------------------------------------------------------------------------------------- lease

    def lease(
        self, connector: str, *, max_messages: int, max_bytes: int, lease_seconds: float,
        now: float | None = None,
    ) -> list[OutboxRow]:  # fmt: skip
        """The connector's next messages, whole batch messages at a time (the first even when larger than
        the limits); each batch message is owned by this instance until settled or its ack wait passes."""
        kept = "Nothing was leased; the queue is unchanged."
        return self._run(self._lease(connector, max_messages, max_bytes), "lease queued events", kept)

    async def _subscription(self, connector: str) -> Any:
        sub = self._subs.get(connector)
        if sub is None:
            durable = f"c_{codec.token(connector)}"
            config = api.ConsumerConfig(
                durable_name=durable,
                ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=self.lease_seconds,
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

    async def _lease(self, connector: str, max_messages: int, max_bytes: int) -> list[OutboxRow]:
        held = self._held[connector]
        rows: list[OutboxRow] = []
        budget = [max_messages, max_bytes]

        def hand_out(item: _Held) -> bool:
            positions = [p for p in range(len(item.batch.entries)) if p not in item.skip]
            size = sum(item.batch.entries[p].size for p in positions)
            if rows and (len(positions) > budget[0] or size > budget[1]):
                return False
            item.handed = True
            budget[0] -= len(positions)
            budget[1] -= size
            for p in positions:
                entry = item.batch.entries[p]
                rows.append(
                    OutboxRow(
                        codec.row_seq(item.stream_seq, p), entry.message_id, entry.event_type,
                        item.batch.bodies[p], entry.size, item.attempts, item.batch.enqueued_at,
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

    async def _take(self, connector: str, msg: Msg) -> _Held | None:
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
        item = _Held(msg, stream_seq, batch, max(0, meta.num_delivered - 1), skip)
        self._held[connector][stream_seq] = item
        return item

    # --------------------------------------------------------------------------------------- settling

    async def _settle(
        self, connector: str, seqs: Sequence[int], how: str, retry_at: float = 0.0
    ) -> list[tuple[_Held, int]]:
        """Mark handed-out rows; finish each batch message all of whose rows are settled. Returns the rows
        newly settled (their message and position)."""
        held = self._held.get(connector, {})
        marked: list[tuple[_Held, int]] = []
        touched: dict[int, _Held] = {}
        for seq in seqs:
            stream_seq, position = codec.split_seq(seq)
            item = held.get(stream_seq)
            if item is None or not item.handed or position in item.settled or position in item.skip:
                continue
            item.settled[position] = how
            if how == AGAIN:
                item.retry_at = max(item.retry_at, retry_at)
            marked.append((item, position))
            touched[stream_seq] = item
        complete = [i for i in touched.values() if len(i.settled) + len(i.skip) >= len(i.batch.entries)]
        await asyncio.gather(*(self._finish(connector, item) for item in complete))
        return marked

    async def _finish(self, connector: str, item: _Held) -> None:
        key = (connector, item.stream_seq)
        self._held[connector].pop(item.stream_seq, None)
        outcomes = set(item.settled.values())
        if AGAIN in outcomes:
            done = {p for p, how in item.settled.items() if how != AGAIN} | set(item.skip)
            self._settled_before[key] = done
            await item.msg.nak(delay=max(0.0, item.retry_at - time.time()))
            return
        self._settled_before.pop(key, None)
        if outcomes == {DEAD} and not item.skip:
            await item.msg.term()
        else:
            await item.msg.ack_sync(timeout=self.timeout)

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
        settled. Every redelivery counts in `attempts` (JetStream's delivery count)."""
        kept = "They stay leased and come back when the lease ends."
        self._run(self._retry_later(connector, seqs, retry_at, count_attempt), "schedule a retry", kept)

    async def _retry_later(
        self, connector: str, seqs: Sequence[int], retry_at: float, count_attempt: bool
    ) -> None:
        marked = await self._settle(connector, seqs, AGAIN, retry_at)
        if count_attempt:
            types = Counter(item.batch.entries[p].event_type for item, p in marked)
            self._tally.bump({(connector, t, RETRIED): n for t, n in types.items()})

    def release(self, connector: str, seqs: Sequence[int], *, retry_at: float = 0.0) -> None:
        """Given back unsent, due again at `retry_at`."""
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
        await asyncio.gather(
            *(
                self._publish_dead(
                    connector, entry.message_id, entry.event_type, reason, now, item.attempts, None,
                    item.batch.bodies[p], ("dead", str(item.stream_seq), str(p)),
                )
                for _, item, p in wanted
                for entry in [item.batch.entries[p]]
            )
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
            positions = [
                codec.row_seq(item.stream_seq, p)
                for p in range(len(item.batch.entries))
                if p not in item.skip
            ]
            room = len(positions) if limit is None else limit - moved
            moved += await self._dead_letter(connector, positions[:room], reason, now, expired=expired)
            await self._settle(connector, positions[room:], AGAIN)
        return moved

    # -------------------------------------------------------------------------------------- observing

    def backlog(self, connector: str) -> Backlog:
        """Events and bytes waiting (from the shared counters), the oldest waiting batch's enqueue time
        (read from the stream) and the dead letters kept (the dead-letter stream's count)."""
        return self._run(self._backlog(connector), "read the backlog", "Nothing was changed.")

    async def _backlog(self, connector: str) -> Backlog:
        messages, size = sizes(await self._all_tallies(), connector)
        oldest = None
        with contextlib.suppress(nats.js.errors.NotFoundError):
            first = await self._js.get_msg(self.stream, seq=1, subject=self._subject(connector), next=True)
            if first.data:
                oldest = codec.decode_batch(first.data).enqueued_at
        subject = self._dead_subject(connector)
        info = await self._js.stream_info(self.dead_stream, subjects_filter=subject)
        dead = (info.state.subjects or {}).get(subject, 0)
        return Backlog(messages=messages, bytes=size, oldest_enqueued_at=oldest, dead_letters=dead)

    def set_state(self, connector: str, state: ConnectorState) -> None:
        """Written to the shared KV bucket: every instance reads it (through its watch)."""
        self._run(self._set_state(connector, state), "record a state", "Nothing was changed.")

    async def _set_state(self, connector: str, state: ConnectorState) -> None:
        await self._kv.put(f"s.{codec.token(connector)}", state.to_json().encode())
        self._states[connector] = state

    def states(self) -> dict[str, ConnectorState]:
        """Every connector's last recorded state, as this instance's watch of the KV bucket last heard."""
        return self._run(self._states_now(), "read connector states", "Nothing was changed.")

    async def _states_now(self) -> dict[str, ConnectorState]:
        return dict(self._states)

    def counters(self, connector: str | None = None) -> dict[str, dict[str, dict[str, int]]]:
        """Every instance's counts summed (this instance's from memory, others' as last written)."""
        return summed(self._run(self._all_tallies(), "read counters", "Nothing was changed."), connector)

    def counter_totals(self, connector: str | None = None) -> dict[str, int]:
        """Counters summed over event types and connectors."""
        totals: dict[str, int] = defaultdict(int)
        for types in self.counters(connector).values():
            for names in types.values():
                for name, n in names.items():
                    totals[name] += n
        return dict(totals)

    # ------------------------------------------------------------------------------------------ tail

    def tail(
        self, *, after: int = 0, limit: int = 1000, connector: str | None = None, messages: bool = True
    ) -> list[TailRow]:
        """Lines this instance heard since it started, after line `after` (best effort: see tail.py)."""
        rows = self._run(self._tail_rows(after, limit, connector), "read the tail", "Nothing was changed.")
        if not messages:
            rows = [dataclasses.replace(row, message=None) for row in rows]
        return rows

    async def _tail_rows(self, after: int, limit: int, connector: str | None) -> list[TailRow]:
        return self._tail.rows(after, limit, connector)  # read on the loop that writes it

    def tail_last_seq(self) -> int:
        """The newest tail line this instance heard (0 when none)."""
        return self._tail.last_seq

    # ------------------------------------------------------------------------------------ dead letters

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

    # ---------------------------------------------------------------------------------------- closing

    def close(self) -> None:
        """Give back what this instance holds, write its counters, and disconnect (bounded in time)."""
        if self._closed:
            return
        try:
            with contextlib.suppress(StoreUnavailable):
                self._run(self._close(), "close the cluster queue", "Leases end by themselves.")
        finally:
            self._closed = True
            self._loop.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def _close(self) -> None:
        self._flusher.cancel()
        self._watching.cancel()
        with contextlib.suppress(*NATS_ERRORS):
            await self._watcher.stop()
        with contextlib.suppress(*NATS_ERRORS):
            await self._release_all(None)
        with contextlib.suppress(*NATS_ERRORS):
            await self._flush()
        with contextlib.suppress(*NATS_ERRORS):
            # the acks and naks above reach the server before the connection closes
            await self._nc.flush(timeout=max(1, round(self.timeout)))
        with contextlib.suppress(*NATS_ERRORS):
            await self._nc.close()


def _mark_duplicate(line: list, counts: dict[tuple[str, str, str], int], connector: str) -> None:
    """Turn a tail line from queued into duplicate, and count it so."""
    line[FATE] = TAIL_DUPLICATE
    line[4] = DUPLICATE_REASON
    counts[(connector, line[TYPE], QUEUED)] -= 1
    counts[(connector, line[TYPE], DUPLICATE)] += 1


async def _ignore(error: Exception) -> None:
    """Connection errors are retried by the client and surface on the calls that need an answer."""


async def _nothing() -> None:
    return None


if TYPE_CHECKING:

    def _is_an_outbox(queue: JetStreamOutbox) -> Outbox:
        """mypy checks here that JetStreamOutbox has every call of the contract, with its signature."""
        return queue
