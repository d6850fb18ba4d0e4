"""`tui-currents status`: the engine, and each connector's state, backlog and counters."""

from __future__ import annotations

import argparse

from tui_currents import config
from tui_currents.cli.common import Subparsers, home_of, print_json, table


def cmd_status(args: argparse.Namespace) -> int:
    from tui_currents.status import engine_status

    home = home_of(args)
    report = engine_status(home, config.load(home))
    if args.json:
        print_json(report)
        return 0
    engine = report["engine"]
    if engine["running"]:
        print(f"Engine: running (pid {engine['pid']}, receiver {engine['receiver'] or 'off'})")
        for workspace, problem in engine.get("receiver_problems", {}).items():
            print(f"Workspace {workspace!r}: {problem}")
    else:
        print("Engine: not running (start it with: tui-currents run)")
    if engine.get("store_problem"):
        print(f"Store: {engine['store_problem']}")
    if not report["connectors"]:
        print("No connectors.")
        return 0
    rows = []
    for c in report["connectors"]:
        oldest = c.get("oldest_age_seconds")
        rows.append(
            [
                c["name"],
                c["state"],
                str(c["backlog"]),
                "-" if oldest is None else f"{oldest:.0f}s",
                str(c["delivered"]),
                str(c["dead_letters"]),
                _last_error(c),
            ]
        )
    print(table(rows, ["Connector", "State", "Backlog", "Oldest", "Delivered", "Dead letters", "Last error"]))
    for c in report["connectors"]:
        if c.get("warning"):
            print(f"Warning ({c['name']}): {c['warning']}")
    return 0


def _last_error(connector: dict) -> str:
    """The last error with when it happened, marked resolved once the connector runs again."""
    error = connector.get("last_error")
    if not error:
        return ""
    from datetime import UTC, datetime

    at = connector.get("last_error_at")
    when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC") if at else "time unknown"
    resolved = ", resolved" if connector.get("state") in ("running", "idle") else ""
    return f"{error} ({when}{resolved})"


def register(sub: Subparsers) -> None:
    """Add `status`."""
    status = sub.add_parser("status", help="connector states, counters, backlog and last errors")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
