"""The connection every part of the cluster queue shares: connecting, the JetStream assets, the shared KV
bucket kept current by a watch, counters and presence written in the background, and the sync-to-async
bridge with its deadline.

Keys of the KV bucket `NAME_state` (connector names as hex tokens, see codec.token):

- `s.<connector>`: the connector's last displayed state (ConnectorState).
- `n.<counter key>`: one writer's counters and backlog sizes (tallies.py).
- `i.<instance>`: an engine's presence: host, pid, version, receiver address, last heartbeat.
- `h.<connector>`: a pause every instance honours (Segment's Retry-After), until a time.
- `r.<connector>`: the digest of a write key Segment refused: no instance sends with that key again.
- `a.<connector>.<stream seq>`: attempts of the rows of a batch message sent again (only after a retry).
- `e.<connector>.<kind>`: the last phase of an alert sent for the connector, by which instance
  (alert_claims.py: one alert per cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import time
from collections import defaultdict
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
import orjson
from nats.aio.msg import Msg
from nats.js import api

from tui_currents import __version__
from tui_currents.cluster import codec
from tui_currents.cluster.errors import NATS_ERRORS, cannot_connect, unavailable
from tui_currents.cluster.loop import LoopThread
from tui_currents.cluster.tail import TailFeed
from tui_currents.cluster.tallies import Tally
from tui_currents.outbox import ConnectorState, DeadLetterCaps, StoreUnavailable

T = TypeVar("T")

HEARTBEAT_SECONDS = 1.0
FLUSH_SECONDS = 0.25
# How long a request (and a connect attempt) may take unless the opener asks otherwise.
REQUEST_SECONDS = 5.0


@dataclass(slots=True)
class Held:
    """A batch message this instance owns: fetched, not yet acked, nak'ed or terminated."""

    msg: Msg
    stream_seq: int
    batch: codec.Batch
    attempts: dict[int, int]  # per position, real attempts before this delivery (absent: 0)
    skip: frozenset[int]  # positions settled before an earlier nak (not handed out again)
    handed: bool = False
    lease_until: float = 0.0  # when the lease of its handed-out rows ends (the message is given back)
    settled: dict[int, str] = field(default_factory=dict)
    counted: set[int] = field(default_factory=set)  # positions to retry with one more attempt
    retry_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Hold:
    """A pause every instance honours: no request to Segment for the connector before `until`."""

    until: float
    detail: str


class Core:
    """State and plumbing shared by the parts of JetStreamOutbox (see outbox.py for the whole)."""

    def __init__(
        self,
        servers: Sequence[str],
        *,
        instance: str,
        name: str = "tc",
        replicas: int = 3,
        timeout: float = REQUEST_SECONDS,
        connect_within: float | None = None,
        ack_wait: float = 30.0,
        duplicate_window: float = 600.0,
        fetch_wait: float = 0.1,
        tail_keep: int = 10_000,
        creds: Path | None = None,
        tls_ca: Path | None = None,
        counter_key: str | None = None,
        presence: bool = False,
        readonly: bool = False,
        dead_letter_caps: DeadLetterCaps | None = None,
        known_ids_max: int = 2_000_000,
    ) -> None:
        self.servers = list(servers)
        self.instance = instance
        self.name = name
        self.stream = f"{name.upper()}_OUTBOX"
        self.dead_stream = f"{name.upper()}_DEAD"
        self.bucket = f"{name}_state"
        self.replicas = replicas
        self.timeout = timeout
        # The most the first connect may take, every server and attempt together: the client retries a
        # silent cluster until then. A console asks for less than the engine's 1.5 x timeout.
        self.connect_within = timeout * 1.5 if connect_within is None else connect_within
        self.ack_wait = ack_wait
        self.duplicate_window = duplicate_window
        self.fetch_wait = fetch_wait
        self.tail_keep = tail_keep
        self.creds = creds
        self.tls_ca = tls_ca
        self.readonly = readonly
        self.presence = presence and not readonly
        self.known_ids_max = known_ids_max
        self._caps = dead_letter_caps or DeadLetterCaps()
        self._counter_key = f"n.{codec.token(counter_key or instance)}"
        self.path = Path(f"nats:{self.stream}")  # what StoreUnavailable names: this queue, not a file
        self._tally = Tally()
        self._others: dict[str, Tally] = {}  # other writers' counters, by KV key
        self._states: dict[str, ConnectorState] = {}
        self._instances: dict[str, dict[str, Any]] = {}  # presence of every engine, by instance
        self._holds: dict[str, Hold] = {}
        self._refused: dict[str, str] = {}  # connector: digest of the write key Segment refused
        self._held: dict[str, dict[int, Held]] = defaultdict(dict)
        self._settled_before: dict[tuple[str, int], set[int]] = {}
        self._subs: dict[str, Any] = {}
        self._known_ids: dict[str, Any] = {}  # connector: KnownWindow (committing.py)
        self._stored_unreported: dict[str, None] = {}  # ids of batches stored by a commit that then failed
        self._events_per_message: dict[str, int] = {}  # the last batch message's size, per connector
        self._address: str | None = None
        self._started_at = time.time()
        self._connect_errors: list[BaseException] = []
        self._closed = False
        self._loop = LoopThread(name=f"nats-{name}")
        try:
            self._run(self._open(), "connect to the NATS cluster", "Nothing was read or written.")
        except BaseException:
            self._loop.stop()
            raise

    # ------------------------------------------------------------------------------------- plumbing

    def _run(
        self, coro: Coroutine[Any, Any, T], doing: str, kept: str, *, deadline: float | None = None
    ) -> T:
        """Run `coro` on the client's loop, waiting at most twice `timeout` (a call makes a few requests,
        each bounded by `timeout`), or `deadline` seconds when given; NATS failures become StoreUnavailable
        saying what was kept."""
        if self._closed:
            coro.close()
            raise StoreUnavailable(
                f"Could not {doing}: the cluster queue is closed.", cause="closed", path=self.path
            )
        try:
            return self._loop.call(coro, self.timeout * 2 if deadline is None else deadline)
        except StoreUnavailable:
            raise
        except NATS_ERRORS as error:
            raise unavailable(error, doing, kept, self.servers, self.path) from error

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Start `coro` on the client's loop without waiting (best-effort writes: holds, presence)."""
        if not self._closed:
            asyncio.run_coroutine_threadsafe(_quietly(coro), self._loop.loop)

    async def _connect(self) -> None:
        options: dict[str, Any] = {}
        if self.creds is not None and not os.access(self.creds, os.R_OK):  # the client reads it only if asked
            error = FileNotFoundError(str(self.creds))
            raise cannot_connect(error, [], self.servers, self.path, self.creds)
        if self.creds is not None:
            options["user_credentials"] = str(self.creds)
        if self.tls_ca is not None:
            options["tls"] = ssl.create_default_context(cafile=str(self.tls_ca))
        try:
            self._nc = await asyncio.wait_for(
                nats.connect(
                    servers=self.servers,
                    connect_timeout=min(self.timeout, self.connect_within),
                    reconnect_time_wait=0.2,
                    max_reconnect_attempts=-1,
                    error_cb=self._heard_error,
                    disconnected_cb=_nothing,
                    reconnected_cb=_nothing,
                    name=f"tui-currents {self.instance}",
                    **options,
                ),
                self.connect_within,
            )
        except (*NATS_ERRORS, ssl.SSLError) as error:
            raise cannot_connect(error, self._connect_errors, self.servers, self.path, self.creds) from error
        if not self._nc._server_info.get("jetstream"):
            await self._nc.close()
            raise cannot_connect(None, [], self.servers, self.path, self.creds, no_jetstream=True)

    async def _heard_error(self, error: Exception) -> None:
        """Connection errors are retried by the client; kept (a few) to say why a connect failed."""
        self._connect_errors = [*self._connect_errors[-4:], error]

    async def _open(self) -> None:
        await self._connect()
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
        # Every writer's counters, every connector's state and hold, every engine's presence, kept up to
        # date by a watch on the bucket: reads are then local, and a change made anywhere shows everywhere.
        self._watcher = await self._kv.watchall()
        while (entry := await self._watcher.updates(timeout=self.timeout)) is not None:
            self._heard_kv(entry)
        mine = self._others.pop(self._counter_key, None)
        if mine is not None:
            self._tally = mine
        loop = asyncio.get_running_loop()
        self._watching = loop.create_task(self._watch_forever())
        self._tail = TailFeed(self._nc, self.name, self.tail_keep, on_queued=self._heard_queued)
        await self._tail.listen()
        self._background = [self._watching]
        if not self.readonly:
            self._background.append(loop.create_task(self._flush_forever()))
            self._background.append(loop.create_task(self._keep_leases_forever()))

    async def _ensure_stream(self, config: api.StreamConfig) -> None:
        try:
            await self._js.stream_info(config.name or "")
        except nats.js.errors.NotFoundError:
            await self._js.add_stream(config)

    def _subject(self, connector: str) -> str:
        return f"{self.name}.outbox.{codec.token(connector)}"

    def _dead_subject(self, connector: str) -> str:
        return f"{self.name}.dead.{codec.token(connector)}"

    # ------------------------------------------------------------------ counters, presence, the watch

    async def _flush_forever(self) -> None:
        last_beat = 0.0
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            with contextlib.suppress(*NATS_ERRORS):
                await self._flush()
            if self.presence and time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                last_beat = time.monotonic()
                with contextlib.suppress(*NATS_ERRORS):
                    await self._beat("running")

    async def _flush(self) -> None:
        if self._tally.dirty:
            self._tally.dirty = False
            try:
                await self._kv.put(self._counter_key, self._tally.encode())
            except BaseException:
                self._tally.dirty = True
                raise

    async def _beat(self, state: str) -> None:
        presence = {
            "instance": self.instance,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "version": __version__,
            "address": self._address,
            "started_at": self._started_at,
            "at": time.time(),
            "state": state,
        }
        await self._kv.put(f"i.{codec.token(self.instance)}", orjson.dumps(presence))

    def _heard_kv(self, entry: Any) -> None:
        key, value = entry.key, entry.value
        kind, _, rest = key.partition(".")
        if kind == "n":
            if value:
                self._others[key] = Tally.decode(value)
            else:
                self._others.pop(key, None)
            return
        if kind not in ("s", "i", "h", "r"):
            return
        name = codec.connector_of(rest)
        if kind == "s":
            if value:
                self._states[name] = ConnectorState.from_json(value)
            else:
                self._states.pop(name, None)
        elif kind == "i":
            if value:
                self._instances[name] = orjson.loads(value)
            else:
                self._instances.pop(name, None)
        elif kind == "h":
            if value:
                doc = orjson.loads(value)
                self._holds[name] = Hold(doc["until"], doc["detail"])
            else:
                self._holds.pop(name, None)
        elif value:
            self._refused[name] = value.decode()
        else:
            self._refused.pop(name, None)

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

    # Defined by the parts (committing.py, leases.py, burial.py); Core comes last in JetStreamOutbox's bases.
    def _heard_queued(self, connector: str, message_ids: list[str]) -> None:
        raise NotImplementedError

    async def _keep_leases_forever(self) -> None:
        raise NotImplementedError

    async def _trim_dead_letters(self) -> None:
        raise NotImplementedError

    async def _settle(
        self, connector: str, seqs: Sequence[int], how: str, retry_at: float = 0.0, *, count: bool = False
    ) -> list[tuple[Held, int]]:
        raise NotImplementedError

    async def _subscription(self, connector: str) -> Any:
        raise NotImplementedError

    async def _fetch(self, sub: Any, want: int) -> list[Msg]:
        raise NotImplementedError

    async def _take(self, connector: str, msg: Msg) -> Held | None:
        raise NotImplementedError

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
        raise NotImplementedError


async def _quietly(coro: Coroutine[Any, Any, Any]) -> None:
    with contextlib.suppress(*NATS_ERRORS):
        await coro


async def _nothing() -> None:
    return None
