"""One connector-status view: `status`, `connector list`, the terminal app and the alerts show the same state,
decided once by `connector_view` (config first, then whether an engine runs, then what it recorded).

Real homes: a real config file, a real SQLite store, the engine's real heartbeat table and lock file.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.tui.helpers import fill_store, write_connectors
from tui_currents import config, connector_removal, status
from tui_currents.alerts import AlertMonitor
from tui_currents.control import Control
from tui_currents.engine import EngineLock
from tui_currents.outbox import ConnectorState
from tui_currents.paths import Home
from tui_currents.secrets import Secrets
from tui_currents.store import Store
from tui_currents.tui.backend import Backend

NAMES = ("Production", "SMS to EU", "Brand archive")  # the last one is paused in the config


def states_everywhere(home: Home, *, engine_here: bool = True) -> dict[str, dict[str, str]]:
    """Per view, each connector's state as it shows it. `engine_here`: also ask the alerts, which only
    ever run inside the engine."""
    cfg = config.load(home)
    report = status.engine_status(home, cfg)
    views = {
        "status": {c["name"]: c["state"] for c in report["connectors"]},
        "connector list": {name: entry["state"] for name, entry in status.connector_status(home).items()},
    }
    backend = Backend(home, Secrets(home), start_engine=False)
    try:
        views["tui"] = {row.name: row.state for row in backend.connector_rows()}
    finally:
        for closing in (backend._reader, backend._control):
            if closing is not None:
                closing.close()
    if engine_here:
        with AlertMonitor(home.store_file, sender=None) as monitor:
            views["alerts"] = {v.name: v.state for v in monitor.connector_views(cfg, time.time())}
    return views


@contextmanager
def engine_presence(home: Home, *, heartbeat_age: float = 0.0, lock: bool = True) -> Iterator[None]:
    """What a running engine leaves for other processes: its heartbeat and the home's lock."""
    ctl = Control(home.store_file)
    ctl.beat(pid=os.getpid(), started_at=time.time() - 60, receiver=None, demo=False)
    ctl.close()
    if heartbeat_age:
        with sqlite3.connect(home.store_file) as db:
            db.execute("UPDATE engine_presence SET heartbeat_at = heartbeat_at - ?", (heartbeat_age,))
    held = EngineLock(home.lock_file) if lock else None
    if held is not None:
        held.acquire()
    try:
        yield
    finally:
        if held is not None:
            held.release()


@pytest.fixture
def configured(home: Home, monkeypatch: pytest.MonkeyPatch) -> Home:
    write_connectors(home, monkeypatch)
    with Store(home.store_file) as store:
        store.set_state("Production", ConnectorState(state="running", detail="sending", since=time.time()))
    return home


def test_with_no_engine_a_paused_connector_is_paused_and_the_others_not_running(configured: Home) -> None:
    # The engine was killed while Production ran; then the user paused it. Before, `status` said "not
    # running" for it (the recorded state decided), `connector list` said "running" (the recorded state,
    # unchecked), and only the app said "paused" (the config decided).
    config.set_paused(configured, "Production", True)
    views = states_everywhere(configured, engine_here=False)
    for view, states in views.items():
        assert states["Production"] == "paused", view
        assert states["SMS to EU"] == "not running", view
        assert states["Brand archive"] == "paused", view


def test_with_no_engine_the_last_recorded_state_is_not_passed_off_as_current(configured: Home) -> None:
    views = states_everywhere(configured, engine_here=False)
    assert {view: states["Production"] for view, states in views.items()} == dict.fromkeys(
        views, "not running"
    )
    report = status.engine_status(configured, config.load(configured))
    production = next(c for c in report["connectors"] if c["name"] == "Production")
    assert production["recorded_state"] == "running"
    assert "last known: running (sending)" in production["detail"]


def test_a_connector_the_running_engine_has_not_reported_on_is_starting(configured: Home) -> None:
    # Before, `status` called it "not running" while the engine ran; the app called it "starting".
    with engine_presence(configured):
        views = states_everywhere(configured)
    for view, states in views.items():
        assert states == {"Production": "running", "SMS to EU": "starting", "Brand archive": "paused"}, view


def test_an_engine_that_holds_the_lock_but_cannot_write_is_shown_so_by_the_app_too(configured: Home) -> None:
    # A full disk stops the heartbeat, not the engine. Before, only `status` looked at the lock: the app
    # said "not running" (and showed the last recorded state as if it were history).
    with engine_presence(configured, heartbeat_age=60):
        views = states_everywhere(configured, engine_here=False)
    for view, states in views.items():
        assert states["Production"] == states["SMS to EU"] == "store unwritable", view
        assert states["Brand archive"] == "paused", view


def test_the_app_says_a_locked_engine_runs_wherever_it_says_whether_one_runs(configured: Home) -> None:
    # The health screen's summary and the top bar asked the heartbeat alone: "no engine runs" above rows
    # saying "store unwritable".
    with engine_presence(configured, heartbeat_age=60):
        backend = Backend(configured, Secrets(configured), start_engine=False)
        try:
            running, mode = backend.engine_running, backend.mode_text()
        finally:
            for closing in (backend._reader, backend._control):
                if closing is not None:
                    closing.close()
    assert running and mode == f"console of the service (pid {os.getpid()})"


def test_deliver_first_is_refused_when_the_engine_cannot_write_the_store(configured: Home) -> None:
    # `connector remove --deliver-first` asked the heartbeat alone: with a stale one it said the engine
    # was not running, and with a fresh one it waited for an engine that cannot mark anything delivered.
    cfg = config.load(configured)
    with engine_presence(configured, heartbeat_age=60):
        why = connector_removal.why_not_delivering(configured, cfg, "Production")
    assert why is not None and why.startswith("the engine cannot write the store")
    with engine_presence(configured):
        assert connector_removal.why_not_delivering(configured, cfg, "Production") is None
    with engine_presence(configured, heartbeat_age=60, lock=False):  # a stopped engine's last heartbeat
        why = connector_removal.why_not_delivering(configured, cfg, "Production")
    assert why is not None and "not running" in why


def test_idle_with_events_waiting_reads_running_everywhere(configured: Home) -> None:
    fill_store(configured, events=50)  # leaves events waiting for both active connectors
    with Store(configured.store_file) as store:
        store.set_state("SMS to EU", ConnectorState(state="idle", since=time.time()))
        assert store.backlog("SMS to EU").messages > 0
    with engine_presence(configured):
        views = states_everywhere(configured)
    assert {view: states["SMS to EU"] for view, states in views.items()} == dict.fromkeys(views, "running")


def test_dropped_dead_letters_are_a_warning_in_the_app_too(configured: Home) -> None:
    with sqlite3.connect(configured.store_file) as db:
        db.execute(
            "INSERT INTO counters (connector, event_type, name, n) VALUES (?, ?, ?, ?)",
            ("Production", "users.messages.email.Send", "dead_letters_dropped", 7),
        )
    backend = Backend(configured, Secrets(configured), start_engine=False)
    try:
        rows = {row.name: row for row in backend.connector_rows()}
    finally:
        for closing in (backend._reader, backend._control):
            if closing is not None:
                closing.close()
    report = status.engine_status(configured, config.load(configured))
    shown = next(c for c in report["connectors"] if c["name"] == "Production")["warning"]
    assert rows["Production"].warning == shown and "7 dead letters were dropped" in shown
