"""Removing a connector that still has queued events: nothing may be orphaned unseen.

A removed connector's outbox is read by nobody: its events would never be sent, never expire and never show.
So a connector with queued events is removed in one of two ways, chosen by the user:

- deliver first: wait while the running engine sends the backlog, then remove (`wait_until_delivered`);
- dead-letter: remove now and move what is queued to the dead letters with the reason "connector removed",
  where they can be exported, or retried once a connector of the same name exists again.

Either way `remove` ends by moving to the dead letters whatever is still queued once the engine has let go
of the connector (events that arrived while the removal was under way), and says how many.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tui_currents import config
from tui_currents.config import Config
from tui_currents.connector_view import sight_home
from tui_currents.control import RELOAD, Control
from tui_currents.outbox import NOT_CREATED, StoreUnavailable
from tui_currents.outbox_home import open_outbox
from tui_currents.paths import Home

REMOVED_REASON = "connector removed"
SETTLE_SECONDS = (
    20.0  # how long a running engine gets to stop the connector's delivery (stop_timeout + slack)
)
_POLL_SECONDS = 0.2


def queued_events(home: Home, name: str) -> int:
    """How many events wait in the connector's outbox (0 when no engine created the store yet)."""
    try:
        store = open_outbox(home, readonly=True)
    except StoreUnavailable as exc:
        if exc.cause == NOT_CREATED:
            return 0
        raise
    try:
        return store.backlog(name).messages
    finally:
        store.close()


def _engine_alive(home: Home) -> bool:
    if not home.store_file.exists():
        return False
    ctl = Control(home.store_file)
    try:
        presence = ctl.presence()
    finally:
        ctl.close()
    return bool(presence and presence.alive())


def why_not_delivering(home: Home, cfg: Config, name: str) -> str | None:
    """Why nothing sends the connector's queued events now, in words; None when the engine is sending them."""
    connector = cfg.connector(name)
    if not connector.enabled:
        return "the connector is disabled"
    if connector.paused:
        return "the connector is paused (resume it: tui-currents connector resume NAME)"
    # Whether an engine runs is decided where every view decides it (connector_view).
    engine = sight_home(home)
    if not engine.running:
        return "the engine is not running (start it: tui-currents run)"
    if engine.store_problem:
        return f"the engine cannot write the store: {engine.store_problem}"
    return None


def wait_until_delivered(
    home: Home, name: str, *, timeout: float, on_progress: Callable[[int], None] | None = None
) -> int:
    """Wait up to `timeout` seconds for the connector's backlog to empty; returns how many are still queued.
    `on_progress(remaining)` hears the count about every 5 seconds."""
    deadline = time.monotonic() + timeout
    told = 0.0
    while True:
        remaining = queued_events(home, name)
        now = time.monotonic()
        if remaining == 0 or now >= deadline:
            return remaining
        if on_progress is not None and now - told >= 5.0:
            told = now
            on_progress(remaining)
        time.sleep(min(_POLL_SECONDS * 5, max(0.0, deadline - now)))


def _let_engine_go(home: Home, name: str, was_active: bool, settle: float) -> bool:
    """Have a running engine apply the removal (its receiver stops queueing for the connector and its
    delivery stops); True once it has, or when no engine runs. Waits at most `settle` seconds."""
    if not _engine_alive(home):
        return True
    deadline = time.monotonic() + settle
    ctl = Control(home.store_file)
    try:
        asked_at = time.time()
        command = ctl.post(RELOAD)
        while not ctl.taken(command):
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_SECONDS)
    finally:
        ctl.close()
    if not was_active:
        return True  # no delivery ran for it
    store = open_outbox(home, readonly=True)
    try:
        while True:
            state = store.states().get(name)
            if state is not None and state.state == "removed" and state.since >= asked_at - 1.0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_SECONDS)
    finally:
        store.close()


def remove(home: Home, name: str, *, settle: float = SETTLE_SECONDS) -> tuple[int, bool]:
    """Remove the connector from the config, let a running engine let go of it, then move whatever is still
    queued for it to the dead letters (reason "connector removed"). Returns (how many were moved, whether
    the engine confirmed in time that it stopped delivering for it)."""
    was_active = config.load(home).connector(name).active
    config.remove_connector(home, name)
    settled = _let_engine_go(home, name, was_active, settle)
    if queued_events(home, name) == 0:
        return 0, settled
    store = open_outbox(home)
    try:
        return store.dead_letter_queued(name, reason=REMOVED_REASON), settled
    finally:
        store.close()
