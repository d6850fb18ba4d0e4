"""`tui-currents connector ...`: add, edit, list, show, remove, pause, resume and test connectors."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence

from tui_currents import catalog, config
from tui_currents.cli.common import (
    Subparsers,
    UsageError,
    home_of,
    notify_engine,
    open_secrets,
    print_json,
    read_secret_from_stdin,
    table,
)
from tui_currents.cli.events import EVENTS_HELP
from tui_currents.paths import Home


def _pairs(values: Sequence[str] | None, what: str) -> dict[str, str]:
    result = {}
    for item in values or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UsageError(f"{what} must look like KEY=VALUE, got {item!r}")
        result[key.strip()] = value.strip()
    return result


def _apply_connector_options(connector: config.Connector, args: argparse.Namespace) -> None:
    if args.workspace is not None:
        connector.workspace = args.workspace
    if args.email is not None:
        connector.contact_email = args.email
    if args.region is not None:
        connector.region, connector.endpoint = args.region, None
    if args.endpoint is not None:
        connector.region, connector.endpoint = "custom", args.endpoint
    if args.events is not None:
        try:
            connector.events = catalog.resolve_events(args.events)
        except ValueError as exc:
            raise UsageError(f"--events: {exc}") from None
    if args.include_anonymous is not None:
        connector.include_anonymous = args.include_anonymous
    if args.override:
        connector.name_overrides = {**connector.name_overrides, **_pairs(args.override, "--override")}
    if args.transform:
        transforms = _pairs(args.transform, "--transform")
        _warn_unknown_fields(transforms)
        connector.field_transforms = {**connector.field_transforms, **transforms}
    for option in ("retention_days", "max_in_flight", "gzip"):
        value = getattr(args, option)
        if value is not None:
            setattr(connector, option, value)


def _connector_json(connector: config.Connector, secrets, store_view: dict | None) -> dict:
    data = connector.to_dict()
    data["destination"] = connector.batch_url()
    data["write_key_stored"] = bool(secrets and secrets.has_write_key(connector.name))
    if store_view is not None:
        data.update(store_view.get(connector.name, {}))
    return data


def cmd_connector(args: argparse.Namespace) -> int:
    home = home_of(args)
    action = args.action
    if action in ("add", "edit"):
        cfg = config.load(home)
        if action == "add":
            missing = [
                flag
                for flag, value in (
                    ("--workspace", args.workspace),
                    ("--email", args.email),
                    ("--events", args.events),
                )
                if value is None
            ]
            if args.region is None and args.endpoint is None:
                missing.append("--region or --endpoint")
            if not args.write_key_stdin:
                missing.append("--write-key-stdin")
            if missing:
                raise UsageError(f"connector add needs {', '.join(missing)}")
            connector = config.Connector(
                name=args.name, workspace=args.workspace, contact_email=args.email, region="us", events=[]
            )
        else:
            connector = cfg.connector(args.name)
        _apply_connector_options(connector, args)
        write_key = read_secret_from_stdin("write key") if args.write_key_stdin else None
        secrets = open_secrets(home, interactive=False) if write_key else None
        if action == "add":
            config.add_connector(home, connector)
        else:
            config.update_connector(home, args.name, connector)
        if write_key and secrets is not None:
            secrets.set_write_key(connector.name, write_key)
        notify_engine(home)
        verb = "added" if action == "add" else "updated"
        count = len(connector.events)
        print(f"Connector {connector.name!r} {verb}: {count} event types -> {connector.batch_url()}")
        return 0
    if action in ("list", "show"):
        cfg = config.load(home)
        connectors = cfg.connectors if action == "list" else [cfg.connector(args.name)]
        from tui_currents.status import connector_status

        view = connector_status(home, cfg)  # states decided by connector_view, as for `status`
        secrets = None
        try:
            secrets = open_secrets(home, interactive=False) if connectors else None
        except Exception:  # listing must work even where the keyring is locked; "stored" then reads false
            secrets = None
        items = [_connector_json(c, secrets, view) for c in connectors]
        if args.json:
            print_json(items if action == "list" else items[0])
            return 0
        if action == "show":
            for key, value in items[0].items():
                print(f"{key:>20}: {value}")
            return 0
        if not items:
            print(
                "No connectors yet. Add one: tui-currents connector add NAME --workspace W ... (see --help)"
            )
            return 0
        rows = [
            [
                i["name"],
                i["workspace"],
                i["region"],
                str(len(i["events"])),
                i.get("state", "not running"),
                str(i.get("backlog", 0)),
                str(i.get("delivered", 0)),
                str(i.get("dead_letters", 0)),
            ]
            for i in items
        ]
        print(
            table(
                rows,
                [
                    "Connector",
                    "Workspace",
                    "Region",
                    "Types",
                    "State",
                    "Backlog",
                    "Delivered",
                    "Dead letters",
                ],
            )
        )
        return 0
    if action == "remove":
        return _remove_connector(home, args)
    if action in ("pause", "resume"):
        config.set_paused(home, args.name, action == "pause")
        notify_engine(home)
        print(f"Connector {args.name!r} {'paused' if action == 'pause' else 'resumed'}.")
        return 0
    if action == "test":
        return _send_test_events(home, args)
    raise UsageError(f"unknown connector action {action!r}")


DELIVER_FIRST = "deliver-first"
DEAD_LETTER = "dead-letter"


def _ask_what_to_do_with_queued(name: str, queued: int) -> str | None:
    """On a terminal: deliver first, dead-letter, or cancel (None)."""
    print(f"Connector {name!r} still has {queued:,} queued events. Removing it would leave them unsent.")
    while True:
        answer = input(
            "[d] deliver them first, then remove  [l] move them to the dead letters and remove  [c] cancel: "
        )
        choice = {"d": DELIVER_FIRST, "l": DEAD_LETTER, "c": None, "": None}.get(answer.strip().lower()[:1])
        if choice is not None or answer.strip().lower()[:1] in ("c", ""):
            return choice


def _remove_connector(home: Home, args: argparse.Namespace) -> int:
    """`connector remove`: a connector with queued events is removed only once the user said what becomes
    of them (see connector_removal)."""
    from tui_currents import connector_removal as removal

    name = args.name
    cfg = config.load(home)
    cfg.connector(name)  # an unknown name: KeyError, exit 2
    queued = removal.queued_events(home, name)
    choice = DEAD_LETTER if args.dead_letter else DELIVER_FIRST if args.deliver_first else None
    if queued and choice is None:
        if not sys.stdin.isatty():
            raise UsageError(
                f"connector {name!r} still has {queued:,} queued events; nothing was removed. Say what "
                "becomes of them: --deliver-first (wait while the engine sends them, then remove) or "
                '--dead-letter (move them to the dead letters, reason "connector removed", then remove)'
            )
        choice = _ask_what_to_do_with_queued(name, queued)
        if choice is None:
            print(f"Nothing was removed; connector {name!r} keeps its {queued:,} queued events.")
            return 1
    if queued and choice == DELIVER_FIRST:
        why = removal.why_not_delivering(home, cfg, name)
        if why is not None:
            print(
                f"tui-currents: {queued:,} events are queued for {name!r} and nothing sends them now: {why}. "
                "Nothing was removed; run again once they are sent, or use --dead-letter.",
                file=sys.stderr,
            )
            return 1
        print(
            f"{queued:,} events queued for {name!r}; waiting while the engine sends them "
            f"(up to {args.wait:g} s)."
        )
        remaining = removal.wait_until_delivered(
            home, name, timeout=args.wait, on_progress=lambda n: print(f"  {n:,} still queued...", flush=True)
        )
        if remaining:
            print(
                f"tui-currents: {remaining:,} events are still queued for {name!r} after {args.wait:g} s; "
                "nothing was removed. Run again (a longer --wait), or use --dead-letter.",
                file=sys.stderr,
            )
            return 1
    moved, settled = removal.remove(home, name)
    try:
        open_secrets(home, interactive=True).delete_write_key(name)
    except Exception as exc:
        print(
            f"note: the write key could not be removed from the keyring: {type(exc).__name__}",
            file=sys.stderr,
        )
    print(f"Connector {name!r} removed.")
    if moved:
        print(
            f"{moved:,} events still queued for it were moved to the dead letters "
            f'(reason "connector removed"): tui-currents dead-letters list --connector {name!r}'
        )
    if not settled:
        print(
            "note: the running engine did not confirm within "
            f"{removal.SETTLE_SECONDS:g} s that it stopped sending for this connector; "
            "check `tui-currents status`",
            file=sys.stderr,
        )
    return 0


def _warn_unknown_fields(transforms: dict[str, str]) -> None:
    """A transform of a field no event type carries does nothing: say so (it is kept, as asked)."""
    known = set(catalog.COMMON_FIELDS) | set(catalog.TRACKING_FIELDS)
    for entry in catalog.CATALOG:
        known.update(catalog.required_fields(entry.event_type), catalog.optional_fields(entry.event_type))
    for field in transforms:
        if field not in known:
            close = difflib.get_close_matches(field, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            print(
                f"tui-currents: warning: no event type has a field {field!r}, so its transform does "
                f"nothing{hint}",
                file=sys.stderr,
            )


def _send_test_events(home: Home, args: argparse.Namespace) -> int:
    """`connector test NAME`: ask first (or take --yes), and only when an engine runs to send them."""
    from tui_currents import test_events
    from tui_currents.control import SEND_TEST_EVENTS, Control

    connector = config.load(home).connector(args.name)
    question = test_events.question(connector)
    if not args.yes and not sys.stdin.isatty():
        raise UsageError(f"{question} Nothing was sent: add --yes to send without a terminal.")
    ctl = Control(home.store_file) if home.store_file.exists() else None
    try:
        presence = ctl.presence() if ctl else None
        if ctl is None or not (presence and presence.alive()):
            print(
                "tui-currents: no engine is running, so nothing was sent; start one with `tui-currents run` "
                "and try again.",
                file=sys.stderr,
            )
            return 1
        if not args.yes:
            print(question)
            print(test_events.NOTE)
            if input("Send them? [y/N] ").strip().lower() not in ("y", "yes"):
                print("Nothing was sent.")
                return 0
        ctl.post(SEND_TEST_EVENTS, connector=connector.name)
    finally:
        if ctl:
            ctl.close()
    print(
        f"Asked the engine to send {test_events.count(connector)} test events through {connector.name!r} "
        f"to {test_events.destination(connector)}. {test_events.NOTE}"
    )
    return 0


def register(sub: Subparsers) -> None:
    """Add `connector` and its actions."""
    con = sub.add_parser("connector", help="connectors: where a workspace's events go in Segment")
    con_sub = con.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action in ("add", "edit"):
        p = con_sub.add_parser(action, help=f"{action} a connector")
        p.add_argument("name")
        p.add_argument("--workspace")
        p.add_argument("--email", help="contact email for alerts")
        dest = p.add_mutually_exclusive_group()
        dest.add_argument("--region", choices=["us", "eu"])
        dest.add_argument("--endpoint", help="custom Segment endpoint URL (https; http only on loopback)")
        p.add_argument("--events", help=EVENTS_HELP)
        p.add_argument("--write-key-stdin", action="store_true", help="read the Segment write key from stdin")
        anon = p.add_mutually_exclusive_group()
        anon.add_argument("--include-anonymous", dest="include_anonymous", action="store_true", default=None)
        anon.add_argument("--exclude-anonymous", dest="include_anonymous", action="store_false")
        p.add_argument("--override", action="append", metavar="TYPE=NAME", help="Segment event name override")
        p.add_argument("--transform", action="append", metavar="FIELD=redact|hash", help="field transform")
        p.add_argument("--retention-days", type=int)
        p.add_argument("--max-in-flight", type=int)
        p.add_argument("--gzip", action=argparse.BooleanOptionalAction, default=None)
    con_list = con_sub.add_parser("list", help="list the connectors with state, backlog and counts")
    con_list.add_argument("--json", action="store_true")
    con_show = con_sub.add_parser("show", help="show one connector's settings and figures")
    con_show.add_argument("name")
    con_show.add_argument("--json", action="store_true")
    con_rm = con_sub.add_parser(
        "remove", help="remove a connector (one with queued events needs --deliver-first or --dead-letter)"
    )
    con_rm.add_argument("name")
    queued_choice = con_rm.add_mutually_exclusive_group()
    queued_choice.add_argument(
        "--deliver-first", action="store_true", help="wait while the running engine sends its queued events"
    )
    queued_choice.add_argument(
        "--dead-letter",
        action="store_true",
        help='move its queued events to the dead letters (reason "connector removed")',
    )
    con_rm.add_argument(
        "--wait",
        type=float,
        default=300.0,
        help="with --deliver-first: seconds to wait at most (default 300)",
    )
    for action, what in (
        ("pause", "stop sending (events are still received and queued)"),
        ("resume", "send again"),
    ):
        con_sub.add_parser(action, help=what).add_argument("name")
    con_test = con_sub.add_parser("test", help="send one test event of each selected type (asks first)")
    con_test.add_argument("name")
    con_test.add_argument("--yes", action="store_true", help="do not ask (needed without a terminal)")
    con.set_defaults(func=cmd_connector)
