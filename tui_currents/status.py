"""What `tui-currents status` and the connector list show: states, backlog and counters from the store.

Reads only; works whether or not an engine runs (a stopped engine's last states are shown as such).
"""

from __future__ import annotations

import time

from tui_currents.config import Config
from tui_currents.control import Control
from tui_currents.paths import Home
from tui_currents.store import Store, StoreUnavailable

# Counters shown per connector, in this order (names as the store keeps them).
COUNTER_NAMES = (
    "received",
    "queued",
    "duplicate",
    "not_selected",
    "anonymous",
    "unsupported",
    "delivered",
    "retried",
    "dead_lettered",
    "expired",
)


def connector_status(home: Home) -> dict[str, dict]:
    """Per connector name: state, detail, backlog, oldest queued age, counters, last error."""
    try:
        store = Store(home.store_file, readonly=True)
    except StoreUnavailable:
        return {}
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
            view[name] = {
                "state": state.state if state else "not running",
                "detail": state.detail if state else "",
                "since": state.since if state else None,
                "paused_until": state.paused_until if state else None,
                "warning": state.warning if state else None,
                "last_error": state.last_error if state else None,
                "last_error_at": state.last_error_at if state else None,
                "backlog": backlog.messages,
                "backlog_bytes": backlog.bytes,
                "oldest_age_seconds": None
                if backlog.oldest_enqueued_at is None
                else max(0.0, now - backlog.oldest_enqueued_at),
                "dead_letters": backlog.dead_letters,
                "delivered": totals.get("delivered", 0),
                "counters": {counter: totals.get(counter, 0) for counter in COUNTER_NAMES},
            }
        return view
    finally:
        store.close()


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
    running = bool(presence and presence.alive())
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
        connectors.append(entry)
    return {
        "engine": {
            "running": running,
            "pid": presence.pid if running else None,
            "receiver": presence.receiver if running else None,
            "demo": presence.demo if running else False,
            "started_at": presence.started_at if running else None,
            # Workspaces whose requests are answered 503 because their token cannot be read.
            "receiver_problems": {w: f"receiver token unreadable: {t}" for w, t in unreadable.items()}
            if running
            else {},
        },
        "connectors": connectors,
    }
