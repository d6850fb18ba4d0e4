"""One connector-status view: what `status`, `connector list`, the terminal app and the alerts show.

A connector's state is decided here and nowhere else, from three sources:

- the config says what the user wants: a disabled or paused connector is shown so, whatever the engine
  last recorded (it may not have applied the change yet, or may not run at all);
- the engine's presence says whether anything runs: with no engine on the home every other connector is
  "not running" (its last recorded state is kept, as `recorded`, and named in the detail); an engine that
  holds the home's lock but cannot write the store (a full disk, a stale heartbeat) shows its active
  connectors as "disk full" or "store unwritable"; a running engine that has not reported on a connector
  yet is "starting";
- the outbox says what the engine last recorded, and the figures: backlog, counters, dead letters.
  "idle" with events waiting (or arriving) reads "running": the engine says idle between two leases.

Reads only; works whether or not an engine runs. The figures are plain data (frozen rows), so the command
line prints them, the terminal app shows them and the alert rules step on them without deciding again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tui_currents.config import Connector
from tui_currents.control import Control, Presence, engine_lock_holder
from tui_currents.outbox import (
    ANONYMOUS,
    DEAD_LETTERED,
    DEAD_LETTERS_DROPPED,
    DELIVERED,
    DUPLICATE,
    EXPIRED,
    NOT_FORWARDABLE,
    NOT_SELECTED,
    QUEUED,
    RECEIVED,
    RETRIED,
    UNSUPPORTED,
    Backlog,
    ConnectorState,
    ConnectorStatus,
    Outbox,
)
from tui_currents.paths import Home

# Less free space than this on the store's disk reads as "full": SQLite needs room for a few pages per write.
LOW_SPACE_BYTES = 1 << 20
HEARTBEAT_STALE_SECONDS = 5.0  # the engine beats every second

# States this view adds to the engine's own (ConnectorStatus).
NOT_RUNNING = "not running"
STARTING = "starting"
DISK_FULL = "disk full"
STORE_UNWRITABLE = "store unwritable"

# Counters shown per connector, in this order (names as the outbox keeps them).
COUNTER_NAMES = (
    RECEIVED,
    QUEUED,
    DUPLICATE,
    NOT_SELECTED,
    ANONYMOUS,
    UNSUPPORTED,
    NOT_FORWARDABLE,
    DELIVERED,
    RETRIED,
    DEAD_LETTERED,
    EXPIRED,
    DEAD_LETTERS_DROPPED,
)
TOP_TYPES = 5  # the busiest event types named per connector

EMPTY_BACKLOG = Backlog(messages=0, bytes=0, oldest_enqueued_at=None, dead_letters=0)


# ---------------------------------------------------------------------------------------------- the engine


@dataclass(frozen=True, slots=True)
class ReceiverProblem:
    """Why the running engine cannot read a workspace's receiver token (its events are answered 503)."""

    text: str
    since: float | None = None  # when it began, when known


@dataclass(frozen=True, slots=True)
class EngineSighting:
    """Whether an engine runs on the home, and what stops it from working, as every view tells it."""

    running: bool
    pid: int | None = None
    presence: Presence | None = None  # what the engine last said about itself (while running)
    heartbeat_age: float | None = None  # seconds since its last heartbeat (while running)
    store_problem: str | None = None  # why the running engine cannot write the store, in words
    receiver_problems: Mapping[str, ReceiverProblem] = field(default_factory=dict)  # per workspace

    @classmethod
    def this_process(
        cls, receiver_problems: Mapping[str, ReceiverProblem] | None = None, *, pid: int | None = None
    ) -> EngineSighting:
        """The engine runs in this very process (the alerts it raises, a terminal app that started it)."""
        return cls(running=True, pid=pid or os.getpid(), receiver_problems=dict(receiver_problems or {}))


def free_bytes(folder: Path) -> int | None:
    """Bytes free for this user on the disk holding `folder` (None when it cannot be told)."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def store_problem(home: Home, *, heartbeat_age: float | None, running: bool) -> str | None:
    """Why a running engine cannot write the store, in words, or None when nothing says it cannot.
    `heartbeat_age`: how old the engine's own heartbeat is when it is stale, else None."""
    if not running:
        return None
    free = free_bytes(home.store_file.parent)
    if free is not None and free < LOW_SPACE_BYTES:
        return (
            f"disk full: cannot write the store ({free:,} bytes free on the disk holding "
            f"{home.store_file}). Events already stored are kept and new batches are refused (503) so "
            "Braze sends them again; free some space and delivery resumes by itself."
        )
    if heartbeat_age is not None:
        return (
            f"the engine has not written to the store for {heartbeat_age:.0f} s: it cannot write the "
            "store (see the engine's log for why). Events already stored are kept."
        )
    return None


def sight_engine(home: Home, control: Control | None, *, in_process: bool = False) -> EngineSighting:
    """Whether an engine runs on `home`, from its heartbeat (read through `control`, None before any store
    exists) and the home's lock; `in_process`: this process runs it. An engine whose heartbeat is stale but
    which still holds the lock is running and cannot write the store."""
    presence = control.presence() if control is not None else None
    now = time.time()  # heartbeats are wall-clock times
    heartbeat_age = None if presence is None else max(0.0, now - presence.heartbeat_at)
    alive = in_process or bool(presence and presence.alive(now, within=HEARTBEAT_STALE_SECONDS))
    holder = None if alive else engine_lock_holder(home.lock_file)
    # A live engine that cannot write its heartbeat (a full disk) still holds the home's lock.
    running = alive or holder is not None
    if not running:
        return EngineSighting(running=False)
    # A stale heartbeat of this very engine means it cannot write; none yet (or a previous run's) means it
    # is starting. The free space on the disk is looked at either way.
    stale = not alive and presence is not None and holder == presence.pid
    problem = store_problem(home, heartbeat_age=heartbeat_age if stale else None, running=True)
    if in_process:
        pid: int | None = os.getpid()
    elif alive and presence is not None:
        pid = presence.pid
    else:
        pid = holder or (presence.pid if presence else None)
    unreadable = control.receiver_problems() if control is not None else {}
    return EngineSighting(
        running=True,
        pid=pid,
        presence=presence,
        heartbeat_age=heartbeat_age,
        store_problem=problem,
        receiver_problems={w: ReceiverProblem(text) for w, text in unreadable.items()},
    )


def sight_home(home: Home) -> EngineSighting:
    """`sight_engine` through a short connection of its own to the home's store (none before one exists)."""
    if not home.store_file.exists():
        return sight_engine(home, None)
    control = Control(home.store_file)
    try:
        return sight_engine(home, control)
    finally:
        control.close()


# ----------------------------------------------------------------------------------------- the connectors


@dataclass(frozen=True, slots=True)
class ConnectorView:
    """One connector as every view shows it: the state decided once, and its figures."""

    name: str
    state: str  # ConnectorStatus, NOT_RUNNING, STARTING, DISK_FULL, STORE_UNWRITABLE (or "removed")
    detail: str
    recorded: ConnectorState | None  # what the engine last recorded (None before it reported)
    backlog: Backlog
    counters: Mapping[str, int]  # summed over event types; every name of COUNTER_NAMES is there
    oldest_age_seconds: float | None  # how long the oldest waiting event has waited
    top_event_types: tuple[tuple[str, int], ...] = ()  # the busiest types it queued, most first
    configured: Connector | None = None  # None for a name only the outbox knows (a removed connector)
    token_problem: ReceiverProblem | None = None  # its workspace's receiver token cannot be read
    warning: str | None = None  # what needs attention, in words (token, the engine's warning, drops)

    @property
    def enabled(self) -> bool:
        return self.configured is not None and self.configured.enabled

    @property
    def active(self) -> bool:
        """Enabled and not paused by the user: waiting is then not expected."""
        return self.configured is not None and self.configured.active

    @property
    def delivered(self) -> int:
        return self.counters[DELIVERED]

    @property
    def dead_lettered(self) -> int:
        """Dead-lettered, all time (expired ones included)."""
        return self.counters[DEAD_LETTERED]

    @property
    def retried(self) -> int:
        return self.counters[RETRIED]

    @property
    def dead_letters_dropped(self) -> int:
        return self.counters[DEAD_LETTERS_DROPPED]


def decide_state(
    connector: Connector | None,
    recorded: ConnectorState | None,
    engine: EngineSighting,
    *,
    waiting: bool = False,
) -> tuple[str, str]:
    """The state to show and its detail. `waiting`: events wait in its outbox or are arriving now."""
    # The config says what the user wants; the engine's presence whether anything runs; the outbox what
    # the engine last did.
    if connector is not None and not connector.enabled:
        return ConnectorStatus.DISABLED.value, ""
    if connector is not None and connector.paused:
        return ConnectorStatus.PAUSED.value, "paused by you: events are queued, not sent"
    if not engine.running:
        last = ""
        if recorded is not None:
            last = f"last known: {recorded.state}" + (f" ({recorded.detail})" if recorded.detail else "")
        return NOT_RUNNING, "no engine runs on this home" + (f"; {last}" if last else "")
    if engine.store_problem and connector is not None:
        # The recorded state is from before the store stopped taking writes: say what holds it now.
        kind = DISK_FULL if engine.store_problem.startswith(DISK_FULL) else STORE_UNWRITABLE
        return kind, engine.store_problem
    if recorded is None:
        return STARTING, "the engine has not reported on it yet"
    if recorded.state == ConnectorStatus.IDLE and waiting:
        # The engine says "idle" between two leases; with events waiting or flowing, it is at work.
        return ConnectorStatus.RUNNING.value, "sending what arrives"
    return recorded.state, recorded.detail


def _dropped_note(dropped: int) -> str:
    return (
        f"{dropped:,} dead letters were dropped (over the caps in config.toml's "
        "[dead_letters]; the oldest go first): export or retry dead letters sooner to keep them."
    )


def _totals(per_type: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    totals = dict.fromkeys(COUNTER_NAMES, 0)
    for counts in per_type.values():
        for counter, n in counts.items():
            totals[counter] = totals.get(counter, 0) + n
    return totals


def _top_types(per_type: Mapping[str, Mapping[str, int]]) -> tuple[tuple[str, int], ...]:
    busiest = sorted(
        ((t, c.get(QUEUED, 0)) for t, c in per_type.items() if c.get(QUEUED, 0)),
        key=lambda item: (-item[1], item[0]),
    )
    return tuple(busiest[:TOP_TYPES])


def connector_views(
    connectors: Sequence[Connector],
    outbox: Outbox | None,
    engine: EngineSighting,
    *,
    now: float,
    receiving: Callable[[str, Mapping[str, int]], bool] | None = None,
    stored_too: bool = False,
) -> list[ConnectorView]:
    """Every configured connector (in config order) with its state and figures; `outbox` None: no store
    yet. `receiving(name, counters)`: whether the connector's events are arriving now (a view that samples
    its counters over time knows; called once per connector). `stored_too`: then the names only the outbox
    knows (removed connectors), sorted."""
    states = outbox.states() if outbox is not None else {}
    counters = outbox.counters() if outbox is not None else {}
    wanted: list[tuple[str, Connector | None]] = [(c.name, c) for c in connectors]
    if stored_too:
        known = {c.name for c in connectors}
        stored = (set(states) | {name for name in counters if name}) - known
        wanted += [(name, None) for name in sorted(stored)]
    views = []
    for name, connector in wanted:
        per_type = counters.get(name, {})
        totals = _totals(per_type)
        backlog = outbox.backlog(name) if outbox is not None else EMPTY_BACKLOG
        recorded = states.get(name)
        waiting = backlog.messages > 0
        if receiving is not None:
            waiting = receiving(name, totals) or waiting
        state, detail = decide_state(connector, recorded, engine, waiting=waiting)
        token = engine.receiver_problems.get(connector.workspace) if connector is not None else None
        notes = [
            f"receiver token unreadable: {token.text}" if token else None,
            recorded.warning if recorded else None,
            _dropped_note(totals[DEAD_LETTERS_DROPPED]) if totals[DEAD_LETTERS_DROPPED] else None,
        ]
        oldest = backlog.oldest_enqueued_at
        views.append(
            ConnectorView(
                name=name,
                state=state,
                detail=detail,
                recorded=recorded,
                backlog=backlog,
                counters=totals,
                oldest_age_seconds=None if oldest is None else max(0.0, now - oldest),
                top_event_types=_top_types(per_type),
                configured=connector,
                token_problem=token,
                warning=" ".join(note for note in notes if note) or None,
            )
        )
    return views
