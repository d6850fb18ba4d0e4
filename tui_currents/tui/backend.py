"""The TUI's one door to the rest of the program: config, write keys, the store and the engine.

Screens ask this facade and never touch the engine, the store or the keyring themselves. It runs in one of
two modes:

- "in-process": no engine runs on this home, so the app starts one in its own event loop.
- "console": another process (`tui-currents run`, a service) holds the home's engine lock; this app reads
  the shared store and sends its requests (reload, test events, retry dead letters) through `control`.

Reads go through a separate read-only store connection, off the UI thread, so a busy engine never makes
the interface stutter.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import orjson

from tui_currents import config as config_module
from tui_currents import connector_removal, control
from tui_currents.config import Config, ConfigError, Connector, FieldError, Workspace
from tui_currents.connector_view import (
    DISK_FULL,
    STORE_UNWRITABLE,
    EngineSighting,
    connector_views,
    sight_engine,
)
from tui_currents.outbox import DEAD_LETTERED, DELIVERED, RECEIVED
from tui_currents.paths import Home
from tui_currents.secrets import Secrets, SecretsUnavailable
from tui_currents.tui.models import (
    CLUSTER_NO_QUORUM,
    CLUSTER_READ,
    CLUSTER_UNREACHABLE,
    CLUSTER_UNREADABLE,
    ClusterInstanceRow,
    ClusterStreamRow,
    ClusterSummary,
    ConnectorRow,
    CounterHistory,
    DeadLetterRow,
    TailLine,
)

if TYPE_CHECKING:
    # At run time the store module is imported when the store is first opened, after the first frame.
    from tui_currents.engine import Engine, EngineOptions
    from tui_currents.outbox import Outbox, TailRow

# What the screens may meet or build, named here so that they import this module only (see the docstring).
__all__ = [
    "Backend",
    "ConfigError",
    "Connector",
    "FieldError",
    "SecretsUnavailable",
    "decode_json",
    "destination_of",
]

log = logging.getLogger("tui_currents.tui")

IN_PROCESS = "in-process"
CONSOLE = "console"
# The app's engine delivers from a process of its own when there is a second core (unless
# TUI_CURRENTS_DELIVERY_PROCESS=0), at this much lower priority than the app: on busy cores the scheduler
# then serves the app's keys and frames before bulk delivery (nice 10 weighs about a ninth of nice 0).
# Measured with bench/bench_tui.py (full speed), this layout kept keypress p99 under 100 ms in four of five
# alternating rounds (not always since); delivery on the app's loop, or in a process at the app's
# priority, met it in at most one, with p99 up to 1,000 ms on busy cores.
# `tui-currents run` has no app to make way for: its default layout and priority are unchanged.
DELIVERY_NICENESS = 10

# The most a read of the cluster's state may hold a thread: the header refreshes it every few seconds and
# must say "unreachable" soon, not after the client's own timeouts (5 s per request).
CLUSTER_READ_SECONDS = 2.0
# A console opening a cluster member's queue gives up after this long when NATS does not answer (the engine
# keeps its own, longer patience), and waits this long after a failed open before it tries again: the
# screens refresh every second or so, and each of their reads must not start a connect of its own.
CONSOLE_OPEN_SECONDS = 2.0
OPEN_RETRY_SECONDS = 2.0

# How a connector's state reads at a glance: "good" (green), "warning" (yellow), "bad" (red), "muted".
STATE_KINDS = {
    "running": "good",
    "idle": "good",
    "paused": "muted",
    "backing off": "warning",
    "credentials rejected": "bad",
    "no write key": "bad",
    "disabled": "muted",
    "stopped": "muted",
    "removed": "muted",
    "not running": "muted",
    "starting": "muted",
    DISK_FULL: "bad",
    STORE_UNWRITABLE: "bad",
}


@dataclass(slots=True)
class _RateMeter:
    """events/s from successive samples of a counter."""

    last_value: int | None = None
    last_at: float | None = None
    rate: float = 0.0

    def sample(self, value: int, at: float) -> float:
        if self.last_value is not None and self.last_at is not None and at > self.last_at:
            self.rate = max(value - self.last_value, 0) / (at - self.last_at)
        self.last_value, self.last_at = value, at
        return self.rate


def destination_of(connector: Connector) -> str:
    """US, EU or "custom: host[:port]" for a custom endpoint."""
    if connector.region == config_module.CUSTOM_REGION and connector.endpoint:
        parts = urlsplit(connector.endpoint)
        return f"custom: {parts.hostname}{':' + str(parts.port) if parts.port else ''}"
    return connector.region.upper()


def tail_line(row: TailRow) -> TailLine:
    """A store tail row as the tail view shows it."""
    return TailLine(
        seq=row.seq,
        at=row.at,
        connector=row.connector,
        event_type=row.event_type,
        segment_event=row.segment_event,
        user=row.user,
        fate=row.fate,
        reason=row.reason,
        message_id=row.message_id,
        update=row.update,
    )


class Backend:
    """Config, keys, store and engine behind one small interface for the screens."""

    def __init__(
        self,
        home: Home,
        secrets: Secrets,
        *,
        demo: bool = False,
        demo_rate: float | None = None,
        start_engine: bool = True,
        engine_options: EngineOptions | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.home = home
        self.secrets = secrets
        self.demo = demo
        self.demo_rate = demo_rate
        self.start_engine = start_engine
        self._engine_options = engine_options
        self.clock = clock
        self.engine: Engine | None = None  # when the engine runs in this process
        self.engine_problem: str | None = None
        self.mode = CONSOLE
        self._reader: Outbox | None = None
        self._control: control.Control | None = None
        self._meters: dict[str, _RateMeter] = {}
        self._histories: dict[str, CounterHistory] = {}
        self._lock = asyncio.Lock()
        self.cluster_name: str | None = None  # the cluster this home is a member of (None: a single box)
        self.cluster: ClusterSummary | None = None  # its state as last read (`refresh_cluster`)
        self._cluster_read: asyncio.Future[ClusterSummary | None] | None = None  # the read under way
        self._opening = threading.Lock()  # held by the one thread opening the queue
        self._open_again_at = 0.0  # monotonic time before which a failed cluster open is not retried
        self._open_problem: str | None = None  # why the last open failed, while it is the problem shown

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Run the engine here unless another process already does (then be its console)."""
        self.home.ensure()
        self.cluster_name = await asyncio.to_thread(_cluster_name, self.home)
        if self.start_engine:
            await self._start_engine()
        # In a thread: on a cluster member this connects to NATS, which may take seconds (or time out).
        await asyncio.to_thread(self._open_store)

    async def _start_engine(self) -> None:
        await asyncio.to_thread(_import_engine, demo=self.demo)
        from tui_currents.delivery_process import delivery_process_wanted
        from tui_currents.engine import Engine, EngineLocked, EngineOptions

        options = self._engine_options or EngineOptions(
            demo=self.demo,
            demo_rate=self.demo_rate if self.demo else None,
            delivery_process=delivery_process_wanted(default=True),
            delivery_niceness=DELIVERY_NICENESS,
        )
        engine = Engine(self.home, self.secrets, options)
        try:
            await engine.start()
        except EngineLocked:
            self.mode = CONSOLE
            return
        except OSError as exc:
            if not options.start_receiver:
                self.engine_problem = f"the engine could not start: {exc}"
                return
            # Most often the receiver's port is taken: forward what is queued anyway, without receiving.
            self.engine_problem = f"the receiver could not start ({exc}); running without it"
            options.start_receiver = False
            engine = Engine(self.home, self.secrets, options)
            try:
                await engine.start()
            except Exception as again:
                self.engine_problem = f"the engine could not start: {again}"
                return
        except ConfigError as exc:
            self.engine_problem = f"the engine could not start: {exc}"
            return
        self.engine = engine
        self.mode = IN_PROCESS

    def _open_store(self) -> None:
        """Open the queue for reading unless it is open. On a cluster member, one thread at a time tries
        (the others go on without it) and not again within OPEN_RETRY_SECONDS of a failure: NATS down
        makes each try last CONSOLE_OPEN_SECONDS, and it is tried again by itself until NATS is back."""
        from tui_currents.outbox_home import queue_exists

        if self._reader is not None or not queue_exists(self.home):
            return
        on_cluster = self.cluster_name is not None
        if on_cluster and time.monotonic() < self._open_again_at:
            return
        if not self._opening.acquire(blocking=not on_cluster):
            return  # another thread is connecting: this read goes on without the queue, as while it fails
        try:
            if self._reader is None:
                self._try_open()
        finally:
            self._opening.release()

    def _try_open(self) -> None:
        from tui_currents.outbox import NOT_CREATED, StoreUnavailable
        from tui_currents.outbox_home import open_outbox

        try:
            self._reader = open_outbox(self.home, readonly=True, timeout=CONSOLE_OPEN_SECONDS)
            if self._control is None:
                self._control = control.Control(self.home.store_file)
        except StoreUnavailable as exc:
            if exc.cause != NOT_CREATED:  # no engine ran yet: nothing is wrong, it is tried again later
                self._open_again_at = time.monotonic() + OPEN_RETRY_SECONDS
                if self.engine_problem is None:
                    self.engine_problem = self._open_problem = str(exc)
            return
        if self._open_problem is not None and self.engine_problem == self._open_problem:
            self.engine_problem = None  # the queue is reachable again: its old failure is no problem now
        self._open_problem = None

    def _open_control(self) -> None:
        """The engine's command table and heartbeat, in the home's own SQLite file. Opened apart from the
        queue: on a cluster member the queue is on NATS, and the top bar (drawn on the UI thread) must not
        wait for a connection to it."""
        if self._control is not None:
            return
        if self.cluster_name is None:  # a single box: the table lives in the queue's store, opened with it
            self._open_store()
            return
        from tui_currents.outbox import StoreUnavailable

        with contextlib.suppress(StoreUnavailable):  # tried again at the next look
            self._control = control.Control(self.home.store_file)

    async def stop(self) -> None:
        """Stop the in-process engine (queued events stay in the store) and close connections."""
        if self.engine is not None:
            engine, self.engine = self.engine, None
            await engine.stop()
        async with self._lock:  # a read still running in its thread finishes first
            if self._cluster_read is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait([self._cluster_read])
            if self._reader is not None:
                self._reader.close()
                self._reader = None
            if self._control is not None:
                self._control.close()
                self._control = None

    # ------------------------------------------------------------------ mode

    def presence(self) -> control.Presence | None:
        """The running service, if this is its console and it is alive."""
        if self.mode != CONSOLE:
            return None
        self._open_control()
        if self._control is None:
            return None
        presence = self._control.presence()
        # Heartbeats are wall-clock times, whatever clock the screens are given.
        return presence if presence is not None and presence.alive(time.time()) else None

    def engine_sighting(self) -> EngineSighting:
        """Whether an engine runs on this home (here or in another process), as `status` tells it."""
        self._open_control()
        return sight_engine(self.home, self._control, in_process=self.mode == IN_PROCESS)

    def mode_text(self) -> str:
        """A few words for the top bar."""
        if self.mode == IN_PROCESS:
            receiver = getattr(self.engine, "receiver_url", None)
            return "engine in this app" + (f" · receiver {receiver}" if receiver else "")
        engine = self.engine_sighting()
        if engine.running:
            return f"console of the service (pid {engine.pid})"
        return "console · engine not running"

    @property
    def engine_running(self) -> bool:
        return self.engine_sighting().running

    # ------------------------------------------------------------------ config

    def load_config(self) -> Config:
        """The config as it is on disk (raises ConfigError with a message to show)."""
        return config_module.load(self.home)

    def validate(self, connector: Connector, *, replacing: str | None = None) -> list[FieldError]:
        """Field-by-field problems for the editor, the overlap rule included. A workspace name that does
        not exist yet is fine (saving adds it) as long as it is a valid name."""
        cfg = self.load_config()
        probe, workspace_errors = cfg, []
        if connector.workspace and not any(w.name == connector.workspace for w in cfg.workspaces):
            workspace_errors = [
                FieldError("workspace", e.message)
                for e in config_module.validate_workspace(Workspace(connector.workspace), cfg)
            ]
            probe = Config(
                workspaces=[*cfg.workspaces, Workspace(connector.workspace)], connectors=cfg.connectors
            )
        errors = config_module.validate_connector(connector, probe, replacing=replacing)
        if not connector.workspace.strip():
            workspace_errors = [
                FieldError("workspace", "is empty; give the Braze workspace's name (a new name adds it)")
            ]
        if workspace_errors:
            errors = [e for e in errors if e.field != "workspace"] + workspace_errors
        return errors

    async def save_connector(
        self, connector: Connector, *, original: str | None = None, write_key: str | None = None
    ) -> str:
        """Create (`original` None) or update a connector, adding its workspace if new and storing its
        write key if one was given (empty keeps the stored key). Returns what happened, in words.
        Raises ConfigError (nothing saved) or ValueError (a bad write key, nothing saved)."""
        if write_key is not None and any(ch.isspace() for ch in write_key):
            raise ValueError("The write key contains spaces or line breaks; paste the key alone.")
        added = await asyncio.to_thread(self._save_connector_files, connector, original, write_key)
        self._engine_reload()
        verb = "Launched" if original is None else "Updated"
        extra = f" (new workspace {connector.workspace!r} added)" if added else ""
        return f"{verb} connector {connector.name!r}{extra}."

    def _save_connector_files(
        self, connector: Connector, original: str | None, write_key: str | None
    ) -> bool:
        """The blocking part of a save (config file, keyring); True when a workspace was added."""
        cfg = self.load_config()
        added_workspace = False
        if not any(w.name == connector.workspace for w in cfg.workspaces):
            config_module.add_workspace(self.home, Workspace(connector.workspace))
            added_workspace = True
            if not self.secrets.has_receiver_token(connector.workspace):
                self.secrets.set_receiver_token(connector.workspace, self.secrets.generate_receiver_token())
        if original is None:
            config_module.add_connector(self.home, connector)
        else:
            config_module.update_connector(self.home, original, connector)
        if write_key:
            self.secrets.set_write_key(connector.name, write_key)
        return added_workspace

    async def queued_events(self, name: str) -> int:
        """How many events wait in a connector's outbox."""
        return await asyncio.to_thread(connector_removal.queued_events, self.home, name)

    async def delete_connector(self, name: str) -> int:
        """Remove a connector from the config once the engine let go of it; events still queued for it move to
        the dead letters (reason "connector removed"). Its write key is kept. Returns how many moved."""
        moved, _ = await asyncio.to_thread(connector_removal.remove, self.home, name)
        self._engine_reload()
        return moved

    async def set_paused(self, name: str, paused: bool) -> None:
        await asyncio.to_thread(config_module.set_paused, self.home, name, paused)
        self._engine_reload()

    async def add_workspace(self, name: str) -> str:
        """Add a Braze workspace with a new receiver token; returns the token (to show once)."""

        def add() -> str:
            config_module.add_workspace(self.home, Workspace(name=name))
            token = self.secrets.generate_receiver_token()
            self.secrets.set_receiver_token(name, token)
            return token

        token = await asyncio.to_thread(add)
        self._engine_reload()
        return token

    async def rotate_receiver_token(self, name: str) -> str:
        """Give a workspace a new receiver token (the old one stops working); returns it (to show once)."""

        def rotate() -> str:
            token = self.secrets.generate_receiver_token()
            self.secrets.set_receiver_token(name, token)
            return token

        token = await asyncio.to_thread(rotate)
        self._engine_reload()
        return token

    def write_key_hint(self, name: str) -> str | None:
        """ "…abcd" when a write key is stored, else None."""
        return self.secrets.write_key_hint(name)

    def workspace_problems(self, name: str) -> list[str]:
        """Why a new workspace cannot be called `name` (empty when it can)."""
        problems = config_module.validate_workspace(Workspace(name), self.load_config())
        return [p.message for p in problems]

    def workspaces(self) -> list[str]:
        return [w.name for w in self.load_config().workspaces]

    def save_ui(self, *, theme: str | None = None) -> None:
        """Remember a UI choice in [ui] of the config file."""
        cfg = self.load_config()
        if theme is not None:
            cfg.ui.theme = theme
        config_module.save(self.home, cfg)

    def _engine_reload(self) -> None:
        # The engine also notices the config file change by itself within a second; asking saves that wait
        # and is the only way it learns about a changed write key.
        if self.engine is not None:
            self.engine.reload()
        else:
            self._post(control.RELOAD)

    def _post(self, kind: str, **args: object) -> bool:
        self._open_control()
        if self._control is None:
            return False
        self._control.post(kind, **args)
        return True

    # ------------------------------------------------------------------ engine requests

    def send_test_events(self, name: str) -> str:
        """One event of each selected type through the connector, like Braze's "Send test events"."""
        if self.engine is not None:
            sent = self.engine.send_test_events(name)
            return f"Sent {sent} test events through {name!r}: watch them in its tail."
        if self.presence() is None:
            return "No engine is running, so nothing can be sent; start one with `tui-currents run`."
        self._post(control.SEND_TEST_EVENTS, connector=name)
        return f"Asked the service to send test events through {name!r}: watch them in its tail."

    def retry_dead_letters(self, *, connector: str | None = None, ids: Sequence[int] | None = None) -> str:
        """Put dead letters back in the outbox; returns what happened, in words."""
        wanted = list(ids) if ids is not None else None
        if self.engine is not None and self.engine.store is not None:
            moved = self.engine.store.requeue(connector=connector, ids=wanted)
            if moved == 0:
                return "Nothing was requeued: rejected events have no Segment message to send again."
            return f"Requeued {moved} dead letter{'s' if moved != 1 else ''}; they are delivered shortly."
        if self.presence() is not None:
            self._post(control.RETRY_DEAD_LETTERS, connector=connector, ids=wanted)
            return "Asked the service to retry; the list updates in a moment."
        from tui_currents.outbox_home import open_outbox, queue_exists

        if not queue_exists(self.home):
            return "There is no store yet, so there are no dead letters."
        # No engine anywhere: requeue in the queue directly; the next run delivers them.

        with open_outbox(self.home) as store:
            moved = store.requeue(connector=connector, ids=wanted)
        return f"Requeued {moved} dead letters; they are delivered when the engine runs."

    def export_dead_letters(self, *, connector: str | None = None) -> tuple[Path, int]:
        """Write the dead letters as JSON lines into the home; returns the file and how many."""
        reader = self._store()
        stamp = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y%m%dT%H%M%SZ")
        folder = self.home.data / "exports"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = folder / f"dead-letters-{stamp}.jsonl"
        if reader is None:
            path.touch(mode=0o600)
            return path, 0
        return path, reader.export_dead_letters(path, connector=connector)

    # ------------------------------------------------------------------ store reads

    def _store(self) -> Outbox | None:
        self._open_store()
        return self._reader

    def connector_rows(self) -> list[ConnectorRow]:
        """Every configured connector with its live figures (raises ConfigError for a broken config).
        States are decided by `connector_view`, as for `status` and the alerts."""
        cfg = self.load_config()
        reader = self._store()
        now = self.clock()
        engine = self.engine_sighting()
        rates: dict[str, float] = {}

        def receiving(name: str, counters: Mapping[str, int]) -> bool:
            # One sample per refresh: events/s from the received counter, and the throughput history.
            rates[name] = self._meters.setdefault(name, _RateMeter()).sample(counters[RECEIVED], now)
            self._histories.setdefault(name, CounterHistory()).add(
                now, counters[DELIVERED], counters[DEAD_LETTERED]
            )
            return rates[name] > 0

        views = connector_views(cfg.connectors, reader, engine, now=now, receiving=receiving)
        return [
            ConnectorRow(
                name=view.name,
                workspace=connector.workspace,
                destination=destination_of(connector),
                state=view.state,
                state_kind=STATE_KINDS.get(view.state, "warning"),
                detail=view.detail,
                events_per_second=rates[view.name],
                backlog=view.backlog.messages,
                delivered=view.delivered,
                failed=view.dead_lettered,
                dead_letters=view.backlog.dead_letters,
                retried=view.retried,
                last_error=view.recorded.last_error if view.recorded else None,
                paused=connector.paused,
                paused_until=view.recorded.paused_until if view.recorded else None,
                warning=view.warning,
                top_event_types=view.top_event_types,
            )
            for connector, view in zip(cfg.connectors, views, strict=True)
        ]

    def throughput(self, name: str | None, seconds: int, bucket: int) -> tuple[list[float], list[float]]:
        """Delivered and failed events/s per bucket over the last `seconds` (since this app opened), for
        one connector or, with `name` None, all of them added up."""
        now = self.clock()
        histories = [self._histories[name]] if name in self._histories else []
        if name is None:
            histories = list(self._histories.values())
        delivered = [0.0] * (seconds // bucket)
        failed = [0.0] * (seconds // bucket)
        for history in histories:
            d, f = history.rates(now, seconds, bucket)
            delivered = [a + b for a, b in zip(delivered, d, strict=True)]
            failed = [a + b for a, b in zip(failed, f, strict=True)]
        return delivered, failed

    def tail(self, *, after: int, limit: int = 2000, connector: str | None = None) -> list[TailLine]:
        """Tail lines newer than `after` (oldest first)."""
        reader = self._store()
        if reader is None:
            return []
        return [
            tail_line(row)
            for row in reader.tail(after=after, limit=limit, connector=connector, messages=False)
        ]

    def tail_start(self, keep: int) -> int:
        """Where a new tail starts reading: about `keep` rows back from the newest."""
        reader = self._store()
        if reader is None:
            return 0
        return max(reader.tail_last_seq() - keep, 0)

    def tail_message(self, seq: int) -> dict | None:
        """The exact Segment message of a tail line, or None (filtered, or no longer in the store)."""
        reader = self._store()
        if reader is None:
            return None
        rows = reader.tail(after=seq - 1, limit=1)
        if not rows or rows[0].seq != seq or rows[0].message is None:
            return None
        message: dict = orjson.loads(rows[0].message)
        return message

    def dead_letters(self, *, connector: str | None = None, limit: int = 500) -> list[DeadLetterRow]:
        """The newest dead letters, newest first."""
        reader = self._store()
        letters = reader.dead_letters(connector, limit=limit) if reader else []
        return [
            DeadLetterRow(
                d.id, d.connector, d.message_id, d.event_type, d.reason, d.at, d.attempts, d.event, d.message
            )
            for d in letters
        ]

    # ------------------------------------------------------------------ cluster

    async def refresh_cluster(self) -> ClusterSummary | None:
        """Read the cluster's state in a thread and keep it in `cluster`; None on a single box. Callers at
        the same moment (the header, the health screen) share one read, and it runs beside the screens'
        reads: a slow screen read must not hold up the header, nor reads pile up while NATS is silent."""
        if self.cluster_name is None:
            return None
        if self._cluster_read is None or self._cluster_read.done():
            self._cluster_read = asyncio.ensure_future(asyncio.to_thread(self.cluster_summary))
        self.cluster = await asyncio.shield(self._cluster_read)
        return self.cluster

    def cluster_summary(self) -> ClusterSummary | None:
        """The cluster's instances and queue stream, as `cluster status` reads them (the same function,
        through this app's open connection), or why they cannot be read; None on a single box. Blocking,
        for at most CLUSTER_READ_SECONDS."""
        name = self.cluster_name
        if name is None:
            return None
        from tui_currents.cluster.errors import UNREACHABLE
        from tui_currents.cluster.outbox import JetStreamOutbox
        from tui_currents.cluster.status import status_of
        from tui_currents.outbox import StoreUnavailable

        reader = self._reader
        if not isinstance(reader, JetStreamOutbox):  # not opened yet: the screens' reads keep trying
            why = self.engine_problem or "the cluster's queue is not open yet"
            return ClusterSummary(name, CLUSTER_UNREACHABLE, problem=why)
        try:
            status = status_of(reader, deadline=CLUSTER_READ_SECONDS)
        except StoreUnavailable as exc:
            reach = {UNREACHABLE: CLUSTER_UNREACHABLE, "no quorum": CLUSTER_NO_QUORUM}.get(
                exc.cause, CLUSTER_UNREADABLE
            )
            return ClusterSummary(name, reach, problem=str(exc))
        stream = status["stream"]
        return ClusterSummary(
            name=status["cluster"],
            reach=CLUSTER_READ,
            running=status["running_instances"],
            instances=tuple(
                ClusterInstanceRow(
                    name=item["instance"],
                    this_home=item["this_home"],
                    state=item["state"],
                    address=item["address"],
                    version=item["version"],
                    heartbeat_age=item["seconds_since_heartbeat"],
                )
                for item in status["instances"]
            ),
            stream=ClusterStreamRow(
                name=stream["name"],
                messages=stream["messages"],
                bytes=stream["bytes"],
                replicas=stream["replicas"],
                leader=stream["leader"],
                lagging=tuple(stream["lagging"]),
            ),
        )

    async def run(self, fn: Callable, /, *args, **kwargs):
        """Run a blocking backend call off the UI thread (one at a time: the reader is one connection).

        A caller cancelled meanwhile (a screen's read superseded, the app closing) gives up only once the
        thread is done: the lock is held until then, so `stop` never closes a connection still in use."""
        async with self._lock:
            call = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
            try:
                return await asyncio.shield(call)
            except asyncio.CancelledError:
                while not call.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait([call])
                raise


def _import_engine(*, demo: bool) -> None:
    """Import the engine and what its start imports (httpx, aiohttp's servers, smtplib...): a few hundred
    ms, so a thread does it while the app's event loop keeps drawing and taking keys."""
    modules = ["tui_currents.engine", "tui_currents.sources.receiver"]
    if demo:
        modules.append("tui_currents.sandbox")
    for name in modules:
        importlib.import_module(name)


def _cluster_name(home: Home) -> str | None:
    """The name of the cluster the home is a member of; None for a single box, or when config.toml cannot
    be read (the screens say why)."""
    from tui_currents.cluster.membership import cluster_settings

    try:
        settings = cluster_settings(home)
    except ConfigError:
        return None
    return settings.name if settings is not None else None


def decode_json(blob: bytes | None) -> object:
    """A stored JSON blob as an object (or its text when it does not parse)."""
    if blob is None:
        return None
    with contextlib.suppress(orjson.JSONDecodeError):
        return orjson.loads(blob)
    return blob.decode(errors="replace")
