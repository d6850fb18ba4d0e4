"""What every command shares: the home, the keyring, one-line errors, tables and JSON output."""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from tui_currents import config
from tui_currents.paths import Home

# The object `add_subparsers` returns, which each command group's `register` adds its parsers to.
Subparsers = argparse._SubParsersAction


class UsageError(Exception):
    """A problem the user fixes by changing the command line or the input (exit code 2)."""


class EngineRunning(Exception):
    """The command cannot be done while an engine runs on the home (exit code 1)."""


def home_of(args: argparse.Namespace) -> Home:
    return Home.resolve(args.home)


def open_secrets(home: Home, *, interactive: bool):
    """Open the keyring; on a server without one, ask for the encrypted file's passphrase on a terminal."""
    from tui_currents.secrets import Secrets, SecretsUnavailable

    try:
        return Secrets(home)
    except SecretsUnavailable:
        if not (interactive and sys.stdin.isatty()):
            raise
        return Secrets(home, backend="file", passphrase=ask_passphrase(home))


PASSPHRASE_TRIES = 3


def ask_passphrase(home: Home) -> str:
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


def read_secret_from_stdin(what: str) -> str:
    from tui_currents.secrets import read_secret_from_stdin

    try:
        return read_secret_from_stdin()
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}") from None


def notify_engine(home: Home) -> None:
    """Ask a running engine to reload (keys are not in the config file, so it cannot see them change)."""
    if not home.store_file.exists():
        return
    from tui_currents.control import RELOAD, Control

    ctl = Control(home.store_file)
    try:
        ctl.post(RELOAD)
    finally:
        ctl.close()


def print_json(value: object) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def setup_logging(home: Home, *, verbose: bool, to_stderr: bool, log_format: str | None = None) -> None:
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
