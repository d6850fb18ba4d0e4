"""`tui-currents events`: the event catalog."""

from __future__ import annotations

import argparse

from tui_currents import catalog
from tui_currents.cli.common import Subparsers, print_json, table

EVENTS_HELP = (
    "SPEC: event types, groups or categories, comma-separated. 'all' = the 51 types Braze's Segment "
    "connector exports; 'extended' = the types beyond it (custom events, purchases, sessions...), off "
    "unless named; 'all,extended' = everything forwardable. See `tui-currents events`."
)


def _event_entry(entry: catalog.EventType) -> dict[str, object]:
    """One catalog entry as `events --json` gives it: `supported` = Braze's Segment connector exports it,
    `forwardable` = tui-currents can send it, `reason` (only when it cannot) = why not and what to do."""
    item: dict[str, object] = {
        "event_type": entry.event_type,
        "category": entry.category,
        "group": entry.group,
        "segment_event": entry.segment_event,
        "supported": entry.supported,
        "forwardable": entry.forwardable,
    }
    if not entry.forwardable:
        item["reason"] = entry.reason
    return item


def cmd_events(args: argparse.Namespace) -> int:
    if args.json:
        print_json([_event_entry(e) for e in catalog.CATALOG])
        return 0
    rows = [
        [
            e.category,
            e.group,
            e.event_type,
            e.segment_event if e.forwardable else "(not forwardable)",
            "yes" if e.supported else "no",
        ]
        for e in catalog.CATALOG
    ]
    print(table(rows, ["Category", "Group", "Braze event type", "Segment event", "In Braze's connector"]))
    print(
        f"\n`all` selects the {len(catalog.supported_types())} types Braze's Segment connector exports; "
        f"`extended` the {len(catalog.extended_types())} forwardable types beyond them (off unless selected)."
    )
    print("Not forwardable (counted, never sent):")
    for entry in catalog.CATALOG:
        if not entry.forwardable:
            print(f"  {entry.event_type}: {entry.reason}")
    return 0


def register(sub: Subparsers) -> None:
    """Add `events`."""
    events = sub.add_parser("events", help="list the event catalog")
    events.add_argument("--json", action="store_true")
    events.set_defaults(func=cmd_events)
