"""`tui-currents import`: Currents Avro files into the outbox."""

from __future__ import annotations

import argparse
from pathlib import Path

from tui_currents import catalog
from tui_currents.cli.common import Subparsers, UsageError, home_of


def _iso(value: str | None, flag: str) -> float | None:
    if value is None:
        return None
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{flag}: {value!r} is not an ISO-8601 date or time (e.g. 2026-11-01T00:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def cmd_import(args: argparse.Namespace) -> int:
    from tui_currents.import_command import run_import

    home = home_of(args)
    path = Path(args.path)
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    event_types = None
    if args.event_type:
        try:
            event_types = catalog.resolve_events(",".join(args.event_type))
        except ValueError as exc:
            raise UsageError(f"--event-type: {exc}") from None
    return run_import(
        home,
        path,
        workspace=args.workspace,
        since=_iso(args.since, "--since"),
        until=_iso(args.until, "--until"),
        event_types=event_types,
        dry_run=args.dry_run,
    )


def register(sub: Subparsers) -> None:
    """Add `import`."""
    imp = sub.add_parser("import", help="import Currents Avro files (exports copied or synced to a folder)")
    imp.add_argument("path")
    imp.add_argument("--workspace", required=True)
    imp.add_argument("--since", help="only events at or after this ISO-8601 time")
    imp.add_argument("--until", help="only events before this ISO-8601 time")
    imp.add_argument("--event-type", action="append", help="only these event types, groups or categories")
    imp.add_argument("--dry-run", action="store_true", help="report what would be sent, queue nothing")
    imp.set_defaults(func=cmd_import)
