"""`tui-currents workspace ...`: Braze workspaces and their receiver tokens."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tui_currents import config
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


def cmd_workspace(args: argparse.Namespace) -> int:
    home = home_of(args)
    if args.action == "list":
        cfg = config.load(home)
        secrets = open_secrets(home, interactive=True) if cfg.workspaces else None
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
            print_json(items)
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
            print(table(rows, ["Workspace", "Receiver path", "Token", "Connectors"]))
        return 0
    if args.action == "add":
        secrets = open_secrets(home, interactive=True)
        if args.receiver_token_stdin:
            token = read_secret_from_stdin("receiver token")
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
        notify_engine(home)
        return 0
    if args.action == "token":
        secrets = open_secrets(home, interactive=True)
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
        secrets = open_secrets(home, interactive=True)
        secrets.delete_receiver_token(args.name)
        print(f"Workspace {args.name!r} removed.")
        notify_engine(home)
        return 0
    raise UsageError(f"unknown workspace action {args.action!r}")


def register(sub: Subparsers) -> None:
    """Add `workspace` and its actions."""
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
