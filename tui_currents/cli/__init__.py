"""The `tui-currents` command: the TUI, the headless engine, imports and scripted configuration.

Exit codes: 0 ok; 1 a runtime failure (printed as one line); 2 a usage or validation error (one line on
stderr saying what to fix). `--json` outputs are stable: keys are only ever added.

A package by command group: each module has its commands and a `register(sub)` that adds their parsers;
`register_commands` below is the one place the groups are registered.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tui_currents import __version__, config
from tui_currents.cli import (
    connectors,
    dead_letters,
    engine_commands,
    events,
    imports,
    sandbox_command,
    setup_commands,
    status_command,
    workspaces,
)
from tui_currents.cli.common import EngineRunning, Subparsers, UsageError
from tui_currents.cluster.commands import add_cluster_parser

__all__ = ["EngineRunning", "UsageError", "build_parser", "main", "register_commands"]


def register_commands(sub: Subparsers) -> None:
    """Every command group, in the order `--help` lists them."""
    engine_commands.register(sub)
    imports.register(sub)
    events.register(sub)
    workspaces.register(sub)
    connectors.register(sub)
    dead_letters.register(sub)
    sandbox_command.register(sub)
    setup_commands.register(sub)
    status_command.register(sub)
    add_cluster_parser(sub)


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
    register_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Everything this process writes (config, store, logs, exports) is private to the user.
    os.umask(0o077)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args.command = "tui"
        args.func = engine_commands.cmd_tui
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
