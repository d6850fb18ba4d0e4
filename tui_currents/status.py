"""What `tui-currents status` and the connector list show: states, backlog and counters from the store.

Reads only; works whether or not an engine runs (a stopped engine's last states are shown as such).
An engine whose heartbeat is stale but which still holds the home's lock is running and cannot write the
store (a full disk): its connectors are shown in that state, not in the last one it could record.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tui_currents.config import Config
from tui_currents.control import Control, engine_lock_holder
from tui_currents.outbox import NOT_CREATED, StoreUnavailable
from tui_currents.outbox_home import open_outbox
from tui_currents.paths import Home

# Less free space than this on the store's disk reads as "full": SQLite needs room for a few pages per write.
LOW_SPACE_BYTES = 1 << 20
DISK_FULL = "disk full"
STORE_UNWRITABLE = "store unwritable"
HEARTBEAT_STALE_SECONDS = 5.0  # the engine beats every second

# Counters shown per connector, in this order (names as the store keeps them).
COUNTER_NAMES = (
    "received",
    "queued",
    "duplicate",
    "not_selected",
    "anonymous",
    "unsupported",
    "not_forwardable",
    "delivered",
    "retried",
    "dead_lettered",
    "expired",
    "dead_letters_dropped",
)


def connector_status(home: Home) -> dict[str, dict]:
    """Per connector name: state, detail, backlog, oldest queued age, counters, last error.
    Empty when no engine created the store yet; StoreUnavailable when it cannot be read."""
    try:
        store = open_outbox(home, readonly=True)
    except StoreUnavailable as exc:
        if exc.cause == NOT_CREATED:
            return {}
        raise  # damaged, empty, unreadable: the caller says so in one line
    try:
        now = time.time()
        states = store.states()
        counters = store.counters()
        names = set(states) | {name for name in counters if name}
        view: dict[str, dict] = {}
        for name in sorted(names):
            state = states.get(name)
            totals: dict[str, int] = {}
            for per_type in counters.get(name, {}).values():
                for counter, n in per_type.items():
                    totals[counter] = totals.get(counter, 0) + n
            backlog = store.backlog(name)
            dropped = totals.get("dead_letters_dropped", 0)
            warning = state.warning if state else None
            if dropped:
                # Said here, from the counter: it stays visible whether or not an engine runs.
                note = (
                    f"{dropped:,} dead letters were dropped (over the caps in config.toml's "
                    "[dead_letters]; the oldest go first): export or retry dead letters sooner to keep them."
                )
                warning = f"{warning} {note}" if warning else note
            view[name] = {
                "state": state.state if state else "not running",
                "detail": state.detail if state else "",
                "since": state.since if state else None,
                "paused_until": state.paused_until if state else None,
                "warning": warning,
                "last_error": state.last_error if state else None,
                "last_error_at": state.last_error_at if state else None,
                "backlog": backlog.messages,
                "backlog_bytes": backlog.bytes,
                "oldest_age_seconds": None
                if backlog.oldest_enqueued_at is None
                else max(0.0, now - backlog.oldest_enqueued_at),
                "dead_letters": backlog.dead_letters,
                "dead_letters_dropped": dropped,
                "delivered": totals.get("delivered", 0),
                "counters": {counter: totals.get(counter, 0) for counter in COUNTER_NAMES},
            }
        return view
    finally:
        store.close()


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


def engine_status(home: Home, cfg: Config, view: dict[str, dict]) -> dict:
    """The whole `status --json` document: the engine and every configured connector."""
    presence = None
    unreadable: dict[str, str] = {}
    if home.store_file.exists():
        ctl = Control(home.store_file)
        try:
            presence = ctl.presence()
            unreadable = ctl.receiver_problems()
        finally:
            ctl.close()
    now = time.time()
    heartbeat_age = None if presence is None else max(0.0, now - presence.heartbeat_at)
    alive = bool(presence and presence.alive(now, within=HEARTBEAT_STALE_SECONDS))
    holder = None if alive else engine_lock_holder(home.lock_file)
    # A live engine that cannot write its heartbeat (a full disk) still holds the home's lock.
    running = alive or holder is not None
    # A stale heartbeat of this very engine means it cannot write; none yet (or a previous run's) means it
    # is starting. The free space on the disk is looked at either way.
    stale = not alive and presence is not None and holder == presence.pid
    problem = store_problem(home, heartbeat_age=heartbeat_age if stale else None, running=running)
    # (alive implies a presence; the second test says so to the type checker)
    pid = presence.pid if alive and presence is not None else (holder or (presence.pid if presence else None))
    connectors = []
    for connector in cfg.connectors:
        entry = {
            "name": connector.name,
            "workspace": connector.workspace,
            "destination": connector.batch_url(),
            "enabled": connector.enabled,
            "paused": connector.paused,
            "events": len(connector.events),
        }
        stored = view.get(connector.name) or {
            "state": "not running",
            "detail": "",
            "backlog": 0,
            "oldest_age_seconds": None,
            "dead_letters": 0,
            "delivered": 0,
            "last_error": None,
            "last_error_at": None,
            "counters": dict.fromkeys(COUNTER_NAMES, 0),
        }
        entry.update(stored)
        if not running and entry["state"] not in ("disabled", "paused"):
            entry["state"] = "not running"
        elif problem and connector.active:
            # The recorded state is from before the store stopped taking writes: say what holds it now.
            entry["recorded_state"] = entry["state"]
            entry["state"] = DISK_FULL if problem.startswith(DISK_FULL) else STORE_UNWRITABLE
            entry["detail"] = problem
        connectors.append(entry)
    return {
        "engine": {
            "running": running,
            "pid": pid if running else None,
            "receiver": presence.receiver if running and presence else None,
            "demo": presence.demo if running and presence else False,
            "started_at": presence.started_at if running and presence else None,
            "heartbeat_age_seconds": heartbeat_age if running else None,
            "store_problem": problem,
            # Workspaces whose requests are answered 503 because their token cannot be read.
            "receiver_problems": {w: f"receiver token unreadable: {t}" for w, t in unreadable.items()}
            if running
            else {},
        },
        "connectors": connectors,
    }
