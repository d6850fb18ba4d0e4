"""The `tui-currents` command: the TUI, the headless engine, imports and scripted configuration.

Exit codes: 0 ok; 1 a runtime failure (printed as one line); 2 a usage or validation error (one line on
stderr saying what to fix). `--json` outputs are stable: keys are only ever added.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import getpass
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tui_currents import __version__, catalog, config
from tui_currents.cluster.commands import add_cluster_parser
from tui_currents.paths import Home


class UsageError(Exception):
    """A problem the user fixes by changing the command line or the input (exit code 2)."""


class EngineRunning(Exception):
    """The command cannot be done while an engine runs on the home (exit code 1)."""


# ----------------------------------------------------------------------------- helpers


def _home(args: argparse.Namespace) -> Home:
    return Home.resolve(args.home)


def _secrets(home: Home, *, interactive: bool):
    """Open the keyring; on a server without one, ask for the encrypted file's passphrase on a terminal."""
    from tui_currents.secrets import Secrets, SecretsUnavailable

    try:
        return Secrets(home)
    except SecretsUnavailable:
        if not (interactive and sys.stdin.isatty()):
            raise
        return Secrets(home, backend="file", passphrase=_ask_passphrase(home))


PASSPHRASE_TRIES = 3


def _ask_passphrase(home: Home) -> str:
    """Ask for the encrypted keyring file's passphrase on the terminal: once to unlock an existing file;
    twice, to rule out a typo that would lock the keys away, to create one."""
    path = home.keyring_file
    if path.exists():
        print(f"The keys of this home are in the encrypted file {path}.", file=sys.stderr)
        return getpass.getpass("Its passphrase: ")
    print(
        "No OS keyring here: keys will be kept in an encrypted file. Choose its passphrase (asked twice).",
        file=sys.stderr,
    )
    for _ in range(PASSPHRASE_TRIES):
        first = getpass.getpass("New passphrase: ")
        if not first.strip():
            print("The passphrase cannot be empty.", file=sys.stderr)
            continue
        if getpass.getpass("The same passphrase again: ") == first:
            return first
        print("The two passphrases differ; once more.", file=sys.stderr)
    raise UsageError("the passphrases did not match, so nothing was stored; run the command again")


def _read_secret_from_stdin(what: str) -> str:
    from tui_currents.secrets import read_secret_from_stdin

    try:
        return read_secret_from_stdin()
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}") from None


def _notify_engine(home: Home) -> None:
    """Ask a running engine to reload (keys are not in the config file, so it cannot see them change)."""
    if not home.store_file.exists():
        return
    from tui_currents.control import RELOAD, Control

    ctl = Control(home.store_file)
    try:
        ctl.post(RELOAD)
    finally:
        ctl.close()


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _setup_logging(home: Home, *, verbose: bool, to_stderr: bool, log_format: str | None = None) -> None:
    """Logging as [logs] says (format, rotation); `log_format` overrides the format for this run."""
    from tui_currents.logs import setup_logging

    try:
        logs = config.load(home).logs
    except config.ConfigError:
        logs = config.LogSettings()  # the app reports the config's problem itself
    setup_logging(
        home,
        verbose=verbose,
        to_stderr=to_stderr,
        log_format=log_format or logs.format,
        max_bytes=logs.max_bytes,
        keep=logs.keep,
    )


# ----------------------------------------------------------------------------- events


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
        _print_json([_event_entry(e) for e in catalog.CATALOG])
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
    print(_table(rows, ["Category", "Group", "Braze event type", "Segment event", "In Braze's connector"]))
    print(
        f"\n`all` selects the {len(catalog.supported_types())} types Braze's Segment connector exports; "
        f"`extended` the {len(catalog.extended_types())} forwardable types beyond them (off unless selected)."
    )
    print("Not forwardable (counted, never sent):")
    for entry in catalog.CATALOG:
        if not entry.forwardable:
            print(f"  {entry.event_type}: {entry.reason}")
    return 0


# ----------------------------------------------------------------------------- workspaces


def cmd_workspace(args: argparse.Namespace) -> int:
    home = _home(args)
    if args.action == "list":
        cfg = config.load(home)
        secrets = _secrets(home, interactive=True) if cfg.workspaces else None
        items: list[dict[str, Any]] = [
            {
                "name": w.name,
                "receiver_path": f"/currents/{w.name}",
                "token_stored": bool(secrets and secrets.has_receiver_token(w.name)),
                "connectors": [c.name for c in cfg.connectors if c.workspace == w.name],
            }
            for w in cfg.workspaces
        ]
        if args.json:
            _print_json(items)
        elif not items:
            print("No workspaces yet. Add one: tui-currents workspace add NAME")
        else:
            rows = [
                [
                    i["name"],
                    i["receiver_path"],
                    "yes" if i["token_stored"] else "no",
                    ", ".join(i["connectors"]),
                ]
                for i in items
            ]
            print(_table(rows, ["Workspace", "Receiver path", "Token", "Connectors"]))
        return 0
    if args.action == "add":
        secrets = _secrets(home, interactive=True)
        if args.receiver_token_stdin:
            token = _read_secret_from_stdin("receiver token")
        else:
            token = secrets.generate_receiver_token()
        config.add_workspace(home, config.Workspace(name=args.name))
        secrets.set_receiver_token(args.name, token)
        print(f"Workspace {args.name!r} added. Braze posts to /currents/{args.name} with its bearer token.")
        if not args.receiver_token_stdin:
            print(
                "A receiver token was generated and stored in the keyring. Show it once to paste into "
                f"Braze: tui-currents workspace token {args.name}"
            )
        _notify_engine(home)
        return 0
    if args.action == "token":
        secrets = _secrets(home, interactive=True)
        token = secrets.get_receiver_token(args.name)
        if token is None:
            raise UsageError(f"workspace {args.name!r} has no receiver token stored")
        if sys.stdout.isatty():
            # Printed only on request, to a terminal, so it can be pasted into Braze's Currents form.
            print(token)
            return 0
        raise UsageError("refusing to print a receiver token to a pipe or file; run it in a terminal")
    if args.action == "remove":
        config.remove_workspace(home, args.name)
        secrets = _secrets(home, interactive=True)
        secrets.delete_receiver_token(args.name)
        print(f"Workspace {args.name!r} removed.")
        _notify_engine(home)
        return 0
    raise UsageError(f"unknown workspace action {args.action!r}")


# ----------------------------------------------------------------------------- connectors


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
    home = _home(args)
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
        write_key = _read_secret_from_stdin("write key") if args.write_key_stdin else None
        secrets = _secrets(home, interactive=False) if write_key else None
        if action == "add":
            config.add_connector(home, connector)
        else:
            config.update_connector(home, args.name, connector)
        if write_key and secrets is not None:
            secrets.set_write_key(connector.name, write_key)
        _notify_engine(home)
        verb = "added" if action == "add" else "updated"
        count = len(connector.events)
        print(f"Connector {connector.name!r} {verb}: {count} event types -> {connector.batch_url()}")
        return 0
    if action in ("list", "show"):
        cfg = config.load(home)
        connectors = cfg.connectors if action == "list" else [cfg.connector(args.name)]
        view = _store_view(home)
        secrets = None
        try:
            secrets = _secrets(home, interactive=False) if connectors else None
        except Exception:  # listing must work even where the keyring is locked; "stored" then reads false
            secrets = None
        items = [_connector_json(c, secrets, view) for c in connectors]
        if args.json:
            _print_json(items if action == "list" else items[0])
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
            _table(
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
        _notify_engine(home)
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
        _secrets(home, interactive=True).delete_write_key(name)
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


# ----------------------------------------------------------------------------- dead letters


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from tui_currents.outbox import NOT_CREATED, StoreUnavailable
    from tui_currents.outbox_home import open_outbox

    home = _home(args)
    if not home.store_file.exists():
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
            _print_json(items)
        elif not items:
            print("No dead letters.")
        else:
            rows = [[str(i["id"]), i["at"], i["connector"], i["event_type"], i["reason"][:70]] for i in items]
            print(_table(rows, ["Id", "At (UTC)", "Connector", "Event type", "Reason"]))
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
    _notify_engine(home)
    print(
        f"{moved:,} dead letters put back in the outbox; they are sent by the running engine "
        "(dead letters with no Segment message, rejected while mapping, cannot be sent and stay)."
    )
    return 0


# ----------------------------------------------------------------------------- sandbox


def cmd_sandbox(args: argparse.Namespace) -> int:
    """`tui-currents sandbox`: the local Segment stand-in, for trying a connector by hand."""
    from tui_currents import sandbox

    print(
        "A local Segment stand-in: point a connector at it (--endpoint, or Custom endpoint in the editor); "
        "each second it says what it accepted. Ctrl+C stops it. Its address:",
        flush=True,
    )
    return sandbox.serve(args, report_every=1.0)


# ----------------------------------------------------------------------------- SMTP


def cmd_smtp(args: argparse.Namespace) -> int:
    home = _home(args)
    secrets = _secrets(home, interactive=False)
    if args.action == "password":
        secrets.set_smtp_password(_read_secret_from_stdin("SMTP password"))
        print("SMTP password stored in the keyring.")
    else:
        secrets.delete_smtp_password()
        print("SMTP password removed from the keyring.")
    return 0


# ----------------------------------------------------------------------------- service, alerts


def cmd_service(args: argparse.Namespace) -> int:
    from tui_currents.service_unit import render

    home = _home(args).ensure()  # ReadWritePaths= must exist when the service starts
    credential = Path(args.passphrase_file).absolute() if args.passphrase_file else None
    sys.stdout.write(render(home, user=args.user, credential=credential))
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    from tui_currents.webhook import check_webhook_url

    home = _home(args)
    if args.action == "webhook":
        url = _read_secret_from_stdin("webhook URL")
        if problem := check_webhook_url(url):
            raise UsageError(f"webhook URL: {problem}")
        _secrets(home, interactive=False).set_webhook_url(url)
        config.set_webhook(home, True)
        print("Alert webhook stored in the keyring and turned on ([alerts] webhook = true).")
    else:
        config.set_webhook(home, False)
        _secrets(home, interactive=False).delete_webhook_url()
        print("Alert webhook URL removed from the keyring and turned off.")
    _notify_engine(home)
    return 0


# ----------------------------------------------------------------------------- status


def _store_view(home: Home) -> dict:
    """Per connector: state, backlog and counters, read from the store (works with or without an engine)."""
    if not home.store_file.exists():
        return {}
    from tui_currents.status import connector_status

    return connector_status(home)


def cmd_status(args: argparse.Namespace) -> int:
    from tui_currents.status import engine_status

    home = _home(args)
    cfg = config.load(home)
    view = _store_view(home)
    report = engine_status(home, cfg, view)
    if args.json:
        _print_json(report)
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
    print(
        _table(rows, ["Connector", "State", "Backlog", "Oldest", "Delivered", "Dead letters", "Last error"])
    )
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


# ----------------------------------------------------------------------------- run, demo, tui


def cmd_run(args: argparse.Namespace) -> int:
    from tui_currents.engine import Engine, EngineOptions
    from tui_currents.outbox_home import open_outbox
    from tui_currents.service import run_service

    home, secrets = _engine_home_and_secrets(args)
    config.load(home)  # a config with problems stops here, in one message, before anything starts
    # A damaged, empty or read-only store is said in one line (StoreUnavailable) before the engine starts.
    open_outbox(home).close()
    _setup_logging(home, verbose=args.verbose, to_stderr=True, log_format=args.log_format)
    options = EngineOptions(
        receiver_host=args.host,
        receiver_port=args.port,
        demo=args.demo,
        demo_rate=args.demo_rate if args.demo else None,
    )
    engine = Engine(home, secrets, options)
    asyncio.run(run_service(engine, metrics_port=args.metrics_port))
    return 0


def _engine_home_and_secrets(args: argparse.Namespace):
    if getattr(args, "demo", False) or args.command == "demo":
        from tui_currents import demo_setup
        from tui_currents.demo_setup import default_demo_home, demo_secrets

        home = Home.resolve(args.home or os.environ.get("TUI_CURRENTS_HOME") or default_demo_home())
        if getattr(args, "reset", False):
            _reset_demo(home)
        fresh = not home.config_file.exists()
        home.ensure()
        if fresh:  # only a home the demo itself fills is ever marked as the demo's
            demo_setup.mark_demo_home(home)
        return home, demo_secrets(home)
    home = _home(args)
    home.ensure()
    return home, _secrets(home, interactive=True)


def _reset_demo(home: Home) -> None:
    """`demo --reset`: empty the demo home, unless the demo runs there now or it is not a demo home."""
    from tui_currents import demo_setup

    if not home.root.exists():
        return
    if home.store_file.exists() and demo_setup.is_demo_home(home):
        from tui_currents.control import Control

        ctl = Control(home.store_file)
        try:
            presence = ctl.presence()
        finally:
            ctl.close()
        if presence and presence.alive():
            raise EngineRunning(f"the demo runs in {home.root} now (pid {presence.pid}); quit it, then reset")
    demo_setup.reset(home)  # a ValueError (exit 2) for a home that is not the demo's


def cmd_tui(args: argparse.Namespace) -> int:
    from tui_currents.tui.app import run_app

    home, secrets = _engine_home_and_secrets(args)
    _setup_logging(home, verbose=getattr(args, "verbose", False), to_stderr=False)
    demo = args.command == "demo"
    return run_app(home, secrets, demo=demo, demo_rate=getattr(args, "demo_rate", None))


# ----------------------------------------------------------------------------- import


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

    home = _home(args)
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


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tui-currents",
        description="Forward Braze Currents engagement events to Segment.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--home",
        help="folder for config, store and logs (default: TUI_CURRENTS_HOME or the "
        "user's config/data folders)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="open the TUI with a demo workspace and a local Segment sandbox")
    demo.add_argument("--demo-rate", type=float, default=50.0, help="demo events per second (default 50)")
    demo.add_argument("--reset", action="store_true", help="empty the demo home first, to start afresh")
    demo.set_defaults(func=cmd_tui)

    run = sub.add_parser("run", help="run the engine headless (receiver and delivery) until SIGINT/SIGTERM")
    run.add_argument(
        "--demo", action="store_true", help="demo workspace, generator and local Segment sandbox"
    )
    run.add_argument("--demo-rate", type=float, default=50.0, help="demo events per second (default 50)")
    run.add_argument("--host", help="receiver address for this run (default from config: 127.0.0.1)")
    run.add_argument("--port", type=int, help="receiver port for this run")
    run.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus /metrics on this port for this run (default from config: 9750; 0 picks one)",
    )
    run.add_argument(
        "--log-format", choices=["human", "json"], help="log lines as text or JSON objects (default: [logs])"
    )
    run.set_defaults(func=cmd_run)

    imp = sub.add_parser("import", help="import Currents Avro files (exports copied or synced to a folder)")
    imp.add_argument("path")
    imp.add_argument("--workspace", required=True)
    imp.add_argument("--since", help="only events at or after this ISO-8601 time")
    imp.add_argument("--until", help="only events before this ISO-8601 time")
    imp.add_argument("--event-type", action="append", help="only these event types, groups or categories")
    imp.add_argument("--dry-run", action="store_true", help="report what would be sent, queue nothing")
    imp.set_defaults(func=cmd_import)

    events = sub.add_parser("events", help="list the event catalog")
    events.add_argument("--json", action="store_true")
    events.set_defaults(func=cmd_events)

    ws = sub.add_parser("workspace", help="Braze workspaces (one receiver path and token each)")
    ws_sub = ws.add_subparsers(dest="action", required=True, metavar="ACTION")
    ws_add = ws_sub.add_parser("add", help="add a workspace; a receiver token is generated unless given")
    ws_add.add_argument("name")
    ws_add.add_argument(
        "--receiver-token-stdin", action="store_true", help="read the receiver token from stdin"
    )
    ws_list = ws_sub.add_parser("list", help="list the workspaces and whether each has a token")
    ws_list.add_argument("--json", action="store_true")
    ws_token = ws_sub.add_parser("token", help="print a workspace's receiver token (terminal only)")
    ws_token.add_argument("name")
    ws_rm = ws_sub.add_parser("remove", help="remove a workspace and its token")
    ws_rm.add_argument("name")
    ws.set_defaults(func=cmd_workspace)

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

    sand = sub.add_parser(
        "sandbox", help="run a local Segment stand-in on 127.0.0.1 and show what it accepts (for testing)"
    )
    from tui_currents.sandbox_options import add_arguments as sandbox_arguments

    sandbox_arguments(sand)
    sand.set_defaults(func=cmd_sandbox)

    smtp = sub.add_parser("smtp", help="the SMTP password for alert emails (settings are in [smtp])")
    smtp_sub = smtp.add_subparsers(dest="action", required=True, metavar="ACTION")
    smtp_sub.add_parser("password", help="store the SMTP password, read from stdin")
    smtp_sub.add_parser("forget-password", help="remove the stored SMTP password")
    smtp.set_defaults(func=cmd_smtp)

    service = sub.add_parser("service", help="run tui-currents as a systemd service")
    service_sub = service.add_subparsers(dest="action", required=True, metavar="ACTION")
    unit = service_sub.add_parser(
        "unit", help="print a systemd unit (Type=notify) for this installation and home"
    )
    unit.add_argument(
        "--user", action="store_true", help="a user unit (systemctl --user) rather than a system one"
    )
    unit.add_argument(
        "--passphrase-file", help="where systemd reads the keyring passphrase from (LoadCredential=)"
    )
    service.set_defaults(func=cmd_service)

    alerts = sub.add_parser("alerts", help="where alerts go besides e-mail (settings are in [alerts])")
    alerts_sub = alerts.add_subparsers(dest="action", required=True, metavar="ACTION")
    alerts_sub.add_parser("webhook", help="store the alert webhook's URL, read from stdin, and turn it on")
    alerts_sub.add_parser("forget-webhook", help="remove the stored webhook URL and turn the webhook off")
    alerts.set_defaults(func=cmd_alerts)

    status = sub.add_parser("status", help="connector states, counters, backlog and last errors")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    add_cluster_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Everything this process writes (config, store, logs, exports) is private to the user.
    os.umask(0o077)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args.command = "tui"
        args.func = cmd_tui
    from tui_currents.outbox import StoreUnavailable
    from tui_currents.secrets import SecretsUnavailable

    try:
        return int(args.func(args) or 0)
    except (UsageError, config.ConfigError, ValueError) as exc:
        print(f"tui-currents: {exc}", file=sys.stderr)
        return 2
    except KeyError as exc:  # config.connector(name) for an unknown name
        print(f"tui-currents: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    except (SecretsUnavailable, EngineRunning) as exc:
        print(f"tui-currents: {exc}", file=sys.stderr)
        return 1
    except StoreUnavailable as exc:  # damaged, empty, read-only, a full disk: what happened, kept, to do
        print(f"tui-currents: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `tui-currents events | head`: the reader left; say nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        import errno

        if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC) or not exc.filename:
            raise
        # A file of the home cannot be written (a read-only filesystem, another user's folder, a full disk).
        print(
            f"tui-currents: could not write {exc.filename}: {exc.strerror}. Nothing was changed; make the "
            "home folder writable by this user, with free space (or choose another with --home).",
            file=sys.stderr,
        )
        return 1
    except Exception as exc:
        from tui_currents.engine import EngineLocked

        if isinstance(exc, EngineLocked):
            print(f"tui-currents: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
