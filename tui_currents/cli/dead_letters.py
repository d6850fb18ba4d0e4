"""`tui-currents dead-letters ...`: list, export and retry dead letters."""

from __future__ import annotations

import argparse
from typing import Any

from tui_currents.cli.common import Subparsers, UsageError, home_of, notify_engine, print_json, table


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from tui_currents.outbox import NOT_CREATED, StoreUnavailable
    from tui_currents.outbox_home import open_outbox, queue_exists

    home = home_of(args)
    if not queue_exists(home):
        print("No dead letters: the store is created when the engine first runs.")
        return 0
    if args.action == "list":
        try:
            store = open_outbox(home, readonly=True)
        except StoreUnavailable as exc:
            if exc.cause != NOT_CREATED:
                raise
            print("No dead letters: the store is created when the engine first runs.")
            return 0
        try:
            letters = store.dead_letters(args.connector, limit=args.limit)
        finally:
            store.close()
        items: list[dict[str, Any]] = [
            {
                "id": d.id,
                "connector": d.connector,
                "message_id": d.message_id,
                "event_type": d.event_type,
                "reason": d.reason,
                "at": datetime.fromtimestamp(d.at, UTC).isoformat(timespec="seconds"),
                "attempts": d.attempts,
                "can_retry": d.message is not None,
            }
            for d in letters
        ]
        if args.json:
            print_json(items)
        elif not items:
            print("No dead letters.")
        else:
            rows = [[str(i["id"]), i["at"], i["connector"], i["event_type"], i["reason"][:70]] for i in items]
            print(table(rows, ["Id", "At (UTC)", "Connector", "Event type", "Reason"]))
        return 0
    store = open_outbox(home)
    try:
        if args.action == "export":
            count = store.export_dead_letters(args.file, args.connector)
            print(f"{count:,} dead letters written to {args.file} (JSON lines, private to you).")
            return 0
        missing = [
            i for i in args.id or [] if [d.id for d in store.dead_letters(limit=1, before=i + 1)] != [i]
        ]
        if missing:
            raise UsageError(
                f"no dead letter with id {', '.join(map(str, missing))}; nothing was put back "
                "(see: tui-currents dead-letters list)"
            )
        moved = store.requeue(args.connector, args.id or None)
    finally:
        store.close()
    notify_engine(home)
    print(
        f"{moved:,} dead letters put back in the outbox; they are sent by the running engine "
        "(dead letters with no Segment message, rejected while mapping, cannot be sent and stay)."
    )
    return 0


def register(sub: Subparsers) -> None:
    """Add `dead-letters` and its actions."""
    dead = sub.add_parser("dead-letters", help="messages that will not be sent unless retried, and why")
    dead_sub = dead.add_subparsers(dest="action", required=True, metavar="ACTION")
    dead_list = dead_sub.add_parser("list", help="newest first")
    dead_list.add_argument("--connector")
    dead_list.add_argument("--limit", type=int, default=100)
    dead_list.add_argument("--json", action="store_true")
    dead_export = dead_sub.add_parser("export", help="write them as JSON lines to FILE (mode 0600)")
    dead_export.add_argument("file")
    dead_export.add_argument("--connector")
    dead_retry = dead_sub.add_parser("retry", help="put them back in the outbox (after fixing the cause)")
    dead_retry.add_argument("--connector")
    dead_retry.add_argument("--id", type=int, action="append", help="only this dead letter (repeatable)")
    dead.set_defaults(func=cmd_dead_letters)
