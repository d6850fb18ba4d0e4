"""`JetStreamOutbox`: the outbox contract (tui_currents.outbox.Outbox) on a NATS JetStream cluster.

Layout in JetStream (NAME is the `name` given, "tc" by default):

- Stream `NAME_OUTBOX` (work queue, file storage, `replicas` copies), subjects `NAME.outbox.<connector>`:
  one message per commit per connector carrying all its queued events (several when they would pass the
  server's max_payload; see codec.py). `commit` returns only after the publish ack, i.e. once a quorum of
  replicas stored it (committing.py).
- One durable pull consumer per connector (`c_<connector>`), shared by every instance: a message has one
  owner at a time and comes back when its owner dies (leases.py).
- Stream `NAME_DEAD`, subjects `NAME.dead.<connector>`: one message per dead letter, with its reason
  (burial.py).
- KV bucket `NAME_state`: connector states, holds every instance honours, counters, presence (base.py).
- Tail: best effort, core NATS subjects `NAME.tail.<connector>` (tail.py).

Every call runs on a private event loop (loop.py) and waits at most twice `timeout` seconds: a cluster
without quorum raises StoreUnavailable with a message saying what was kept (errors.py), never hangs.

The parts: base.py (connection, KV, presence), committing.py (commit, duplicates), leases.py (lease and
marks, lease time, attempts), burial.py (dead letters and their caps); this module joins them and adds
the reads and the holds shared by every instance.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Self

import nats.js.errors
import orjson

from tui_currents.cluster import codec
from tui_currents.cluster.alert_claims import AlertClaims
from tui_currents.cluster.base import Hold
from tui_currents.cluster.burial import Burying
from tui_currents.cluster.committing import Committing
from tui_currents.cluster.errors import NATS_ERRORS, not_connected
from tui_currents.cluster.leases import Leasing
from tui_currents.cluster.tallies import sizes, summed
from tui_currents.outbox import Backlog, ConnectorState, Outbox, StoreUnavailable, TailRow

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext


class JetStreamOutbox(Committing, Leasing, Burying):
    """The queue on a NATS JetStream cluster, shared by every instance that opens it with the same `name`.

    `instance` names this instance (its presence key, and its counters' key unless `counter_key` is
    given): stable across restarts, unique in the cluster. `presence`: write a heartbeat (engines only).
    `readonly`: a reader (status, a console): writes no counters and holds no leases.
    Raises StoreUnavailable when the cluster cannot be reached or its assets cannot be created.
    """

    side_tables: Any = None  # the home's SQLite store: alert log, receiver problems (see below)
    _alert_claims: AlertClaims | None = None

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

    # ------------------------------------------------------------------ holds every instance honours

    def shared_hold(self, connector: str) -> Hold | None:
        """The pause another instance (or this one) recorded for the connector, while it lasts."""
        hold = self._holds.get(connector)
        return hold if hold is not None and hold.until > time.time() else None

    def share_hold(self, connector: str, until: float, detail: str) -> None:
        """Record a pause (Segment's Retry-After) for every instance; written in the background."""
        current = self._holds.get(connector)
        if current is not None and current.until >= until:
            return
        self._holds[connector] = Hold(until, detail)
        value = orjson.dumps({"until": until, "detail": detail})
        self._spawn(self._kv.put(f"h.{codec.token(connector)}", value))

    def key_refused(self, connector: str, write_key: str) -> bool:
        """Whether Segment refused this write key for the connector, on any instance."""
        refused = self._refused.get(connector)
        return refused is not None and refused == key_digest(connector, write_key)

    def share_refused_key(self, connector: str, write_key: str) -> None:
        """Record that Segment refused this write key, for every instance (its digest, not the key)."""
        digest = key_digest(connector, write_key)
        if self._refused.get(connector) == digest:
            return
        self._refused[connector] = digest
        self._spawn(self._kv.put(f"r.{codec.token(connector)}", digest.encode()))

    def announce(self, *, receiver: str | None) -> None:
        """The receiver address this instance's presence shows (`cluster status`)."""
        self._address = receiver

    # ------------------------------------------------------------------------------- cluster status

    def cluster_view(self, *, deadline: float | None = None) -> dict[str, Any]:
        """Instances (presence), the queue stream (messages, bytes, replicas, leader, lagging replicas)
        and each connector's consumer (waiting, in flight, redelivered), as `cluster status` shows them.

        `deadline`: answer or raise within that many seconds (a screen refreshing it must not wait out
        the client's timeouts). With no server connected it raises at once (cause "unreachable")."""
        doing, kept = "read the cluster's state", "Nothing was changed."
        if not self._closed and not self._nc.is_connected:
            raise not_connected(doing, kept, self.servers, self.path)
        return self._run(self._cluster_view(), doing, kept, deadline=deadline)

    async def _cluster_view(self) -> dict[str, Any]:
        js: JetStreamContext = self._js
        info = await js.stream_info(self.stream)
        cluster = info.cluster
        replicas = [
            {"name": r.name, "current": bool(r.current), "lag": r.lag or 0, "offline": bool(r.offline)}
            for r in (cluster.replicas or [] if cluster is not None else [])
        ]
        consumers = {}
        for consumer in await js.consumers_info(self.stream):
            name = consumer.name or ""
            if not name.startswith("c_"):
                continue
            with contextlib.suppress(ValueError):
                consumers[codec.connector_of(name[2:])] = {
                    "waiting": consumer.num_pending or 0,
                    "in_flight": consumer.num_ack_pending or 0,
                    "redelivered": consumer.num_redelivered or 0,
                }
        return {
            "name": self.name,
            "servers": self.servers,
            "instances": {name: dict(doc) for name, doc in self._instances.items()},
            "stream": {
                "name": self.stream,
                "messages": info.state.messages,
                "bytes": info.state.bytes,
                "replicas": (info.config.num_replicas if info.config else None) or self.replicas,
                "leader": cluster.leader if cluster is not None else None,
                "followers": replicas,
                "lagging": [r["name"] for r in replicas if not r["current"] or r["offline"]],
            },
            "connectors": consumers,
        }

    # ------------------------------------------------------------------------- one alert per cluster

    def claim_alert(self, connector: str, kind: str, phase: str) -> bool:
        """Whether this instance sends the alert (or recovery) `phase` of the connector's `kind`: the
        first instance to claim the episode does, the others record it only (see alert_claims.py).
        Raises StoreUnavailable when the claim cannot be made."""
        if self._alert_claims is None:
            self._alert_claims = AlertClaims(self.instance)
        claims = self._alert_claims
        return self._run(
            claims.claim(self._kv, connector, kind, phase), "claim an alert", "The alert is still recorded."
        )

    # ----------------------------------------------------- side tables: the home's own SQLite file

    # The alert log and the receiver problems are per instance: kept in the home's SQLite store (set by
    # open_outbox as `side_tables`), so the alert monitor reads the cluster's figures and logs locally.

    def _side(self, call: str) -> Any:
        if self.side_tables is None:
            raise StoreUnavailable(
                f"Could not {call.replace('_', ' ')}: this cluster queue was opened without its home's "
                "local store.",
                cause="closed",
                path=self.path,
            )
        return getattr(self.side_tables, call)

    def alert_memories(self) -> Any:
        return self._side("alert_memories")()

    def record_alerts(self, *args: Any, **kwargs: Any) -> Any:
        return self._side("record_alerts")(*args, **kwargs)

    def pending_alerts(self, *args: Any, **kwargs: Any) -> Any:
        return self._side("pending_alerts")(*args, **kwargs)

    def alert_sent(self, *args: Any, **kwargs: Any) -> Any:
        return self._side("alert_sent")(*args, **kwargs)

    def alert_send_failed(self, *args: Any, **kwargs: Any) -> Any:
        return self._side("alert_send_failed")(*args, **kwargs)

    def alert_given_up(self, *args: Any, **kwargs: Any) -> Any:
        return self._side("alert_given_up")(*args, **kwargs)

    def recent_alerts(self, *args: Any, **kwargs: Any) -> Any:
        return self._side("recent_alerts")(*args, **kwargs)

    def open_alerts(self) -> Any:
        return self._side("open_alerts")()

    def receiver_problems(self) -> Any:
        return self._side("receiver_problems")()

    # ---------------------------------------------------------------------------------------- closing

    def close(self) -> None:
        """Give back what this instance holds, write its counters, and disconnect (bounded in time)."""
        if self._closed:
            return
        if self.side_tables is not None:
            self.side_tables.close()
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
        for task in self._background:
            task.cancel()
        with contextlib.suppress(*NATS_ERRORS):
            await self._watcher.stop()
        with contextlib.suppress(*NATS_ERRORS):
            await self._release_all(None)
        if not self.readonly:
            with contextlib.suppress(*NATS_ERRORS):
                await self._flush()
        if self.presence:
            with contextlib.suppress(*NATS_ERRORS):
                await self._beat("stopped")
        with contextlib.suppress(*NATS_ERRORS):
            # the acks and naks above reach the server before the connection closes
            await self._nc.flush(timeout=max(1, round(self.timeout)))
        with contextlib.suppress(*NATS_ERRORS):
            await self._nc.close()


def key_digest(connector: str, write_key: str) -> str:
    """What the KV bucket keeps of a write key Segment refused: a keyed hash, never the key itself."""
    digest = hashlib.blake2b(write_key.encode(), digest_size=16, key=b"tui-currents refused key")
    digest.update(connector.encode())
    return digest.hexdigest()


if TYPE_CHECKING:

    def _is_an_outbox(queue: JetStreamOutbox) -> Outbox:
        """mypy checks here that JetStreamOutbox has every call of the contract, with its signature."""
        return queue
