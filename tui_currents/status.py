"""What `tui-currents status`, `connector list` and the metrics show, as JSON-ready documents.

The states and figures are decided by `connector_view` (the one place that does); this module only lays
them out. Reads only; works whether or not an engine runs.
"""

from __future__ import annotations

import time

from tui_currents import config as config_module
from tui_currents.config import Config
from tui_currents.connector_view import (
    COUNTER_NAMES,
    ConnectorView,
    EngineSighting,
    connector_views,
    sight_home,
)
from tui_currents.outbox import NOT_CREATED, Outbox, StoreUnavailable
from tui_currents.outbox_home import open_outbox, queue_exists
from tui_currents.paths import Home

__all__ = ["connector_status", "engine_status", "read_views", "view_json"]


def _open_reader(home: Home) -> Outbox | None:
    """The outbox read-only; None when no engine created it yet. StoreUnavailable when it cannot be read
    (damaged, empty, unreadable: the caller says so in one line)."""
    try:
        return open_outbox(home, readonly=True)
    except StoreUnavailable as exc:
        if exc.cause == NOT_CREATED:
            return None
        raise


def read_views(
    home: Home, cfg: Config, *, stored_too: bool = False
) -> tuple[EngineSighting, list[ConnectorView]]:
    """The engine and every configured connector (and, with `stored_too`, those only the store knows)."""
    reader = _open_reader(home) if queue_exists(home) else None
    try:
        engine = sight_home(home)
        views = connector_views(cfg.connectors, reader, engine, now=time.time(), stored_too=stored_too)
    finally:
        if reader is not None:
            reader.close()
    return engine, views


def view_json(view: ConnectorView) -> dict:
    """One connector's state and figures as `status --json` and `connector list --json` give them."""
    recorded, backlog = view.recorded, view.backlog
    entry: dict = {
        "state": view.state,
        "detail": view.detail,
        "since": recorded.since if recorded else None,
        "paused_until": recorded.paused_until if recorded else None,
        "warning": view.warning,
        "last_error": recorded.last_error if recorded else None,
        "last_error_at": recorded.last_error_at if recorded else None,
        "backlog": backlog.messages,
        "backlog_bytes": backlog.bytes,
        "oldest_age_seconds": view.oldest_age_seconds,
        "dead_letters": backlog.dead_letters,
        "dead_letters_dropped": view.dead_letters_dropped,
        "delivered": view.delivered,
        "counters": {counter: view.counters[counter] for counter in COUNTER_NAMES},
    }
    if recorded is not None and recorded.state != view.state:
        entry["recorded_state"] = recorded.state  # what the engine last wrote, when it is not what holds now
    return entry


def connector_status(home: Home, cfg: Config | None = None) -> dict[str, dict]:
    """Per connector name (configured, then those only the store knows): state, detail, backlog, oldest
    queued age, counters, last error. Empty when there is nothing to show; StoreUnavailable when the store
    cannot be read. `cfg` None: read from the home (a config with problems counts as no connectors)."""
    if cfg is None:
        try:
            cfg = config_module.load(home)
        except config_module.ConfigError:
            cfg = Config()
    _, views = read_views(home, cfg, stored_too=True)
    return {view.name: view_json(view) for view in views}


def engine_status(home: Home, cfg: Config) -> dict:
    """The whole `status --json` document: the engine and every configured connector."""
    engine, views = read_views(home, cfg)
    presence = engine.presence if engine.running else None
    connectors = []
    for connector, view in zip(cfg.connectors, views, strict=True):
        entry = {
            "name": connector.name,
            "workspace": connector.workspace,
            "destination": connector.batch_url(),
            "enabled": connector.enabled,
            "paused": connector.paused,
            "events": len(connector.events),
        }
        entry.update(view_json(view))
        connectors.append(entry)
    return {
        "engine": {
            "running": engine.running,
            "pid": engine.pid,
            "receiver": presence.receiver if presence else None,
            "demo": presence.demo if presence else False,
            "started_at": presence.started_at if presence else None,
            "heartbeat_age_seconds": engine.heartbeat_age,
            "store_problem": engine.store_problem,
            # Workspaces whose requests are answered 503 because their token cannot be read.
            "receiver_problems": {
                w: f"receiver token unreadable: {p.text}" for w, p in engine.receiver_problems.items()
            },
        },
        "connectors": connectors,
    }
