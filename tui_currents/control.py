"""Commands from a console (the TUI or the CLI in another process) to the running engine.

The engine owns delivery; other processes only write the config file and the keyring. Some changes cannot be
seen in those files (a write key replaced with the same config, a request to send test events), so consoles
leave a command in a small table of the store's database and the engine picks it up within a second.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from tui_currents.store.control_table import (
    KINDS,
    RELOAD,
    RETRY_DEAD_LETTERS,
    SEND_TEST_EVENTS,
    Command,
    Control,
    Presence,
)

__all__ = [
    "KINDS",
    "RELOAD",
    "RETRY_DEAD_LETTERS",
    "SEND_TEST_EVENTS",
    "Command",
    "Control",
    "Presence",
    "engine_lock_holder",
]


def engine_lock_holder(lock_file: Path) -> int | None:
    """The pid written in the home's engine lock file while an engine holds the lock, else None.

    A live engine whose heartbeat cannot be written (a full disk) still holds its lock: this tells it
    apart from a stopped one. The probe takes a shared lock for an instant and lets it go at once."""
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
