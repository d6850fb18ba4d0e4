"""SQLite's failures as StoreUnavailable, with what happened and what to do, in one place."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import NamedTuple

from tui_currents.outbox import StoreUnavailable
from tui_currents.store.schema import BUSY_TIMEOUT_SECONDS


class Cause(NamedTuple):
    """A kind of failure: its short name, what happened, and what the user can do."""

    name: str
    what: str
    todo: str


LOCKED = Cause(
    "locked",
    "another program kept it locked for more than {busy:g} s",
    "Close any other program holding the file (a database browser, a backup tool) and retry.",
)
READ_ONLY = Cause(
    "read-only", "the file or its folder is read-only", "Make the file and its folder writable by this user."
)
# SQLite's primary result codes (sqlite3.SQLITE_*) -> the cause
CAUSES = {
    sqlite3.SQLITE_FULL: Cause(
        "disk full", "the disk holding it is full", "Free some disk space; the store resumes by itself."
    ),
    sqlite3.SQLITE_IOERR: Cause(
        "I/O error",
        "the disk reported an input/output error",
        "Check the disk; the store resumes by itself once it answers again.",
    ),
    sqlite3.SQLITE_READONLY: READ_ONLY,
    sqlite3.SQLITE_BUSY: LOCKED,
    sqlite3.SQLITE_LOCKED: LOCKED,
    sqlite3.SQLITE_CANTOPEN: Cause(
        "cannot open",
        "the file could not be opened",
        "Check that the folder exists and belongs to this user.",
    ),
    sqlite3.SQLITE_CORRUPT: Cause(
        "damaged",
        "the file is damaged",
        "Restore it from a backup, or move it aside (it is kept for recovery) "
        "and run again to start a fresh store.",
    ),
    sqlite3.SQLITE_NOTADB: Cause(
        "damaged",
        "the file is not a tui-currents store (damaged or overwritten)",
        "Move it aside (it is kept for recovery) and run again to start a fresh store.",
    ),
    sqlite3.SQLITE_NOMEM: Cause(
        "out of memory", "the system ran out of memory", "Free some memory and retry."
    ),
}


def unavailable(
    exc: sqlite3.Error, path: Path, doing: str, kept: str, busy: float = BUSY_TIMEOUT_SECONDS
) -> StoreUnavailable | None:
    """A StoreUnavailable for an operational failure, or None for an error that is a bug."""
    code = getattr(exc, "sqlite_errorcode", None)
    cause = None if code is None else CAUSES.get(code & 0xFF)
    if cause is None:
        return None
    what = cause.what.format(busy=busy)
    return StoreUnavailable(
        f"Could not {doing} in {path}: {what}. {kept} {cause.todo}", cause=cause.name, path=path
    )


def refuse_if_empty(path: Path) -> None:
    """A store file of zero bytes was truncated (a store is never empty once created): say so rather than
    start afresh over it, or read it as a store with no tables."""
    try:
        empty = path.stat().st_size == 0
    except OSError:
        return
    if empty:
        raise StoreUnavailable(
            f"The store {path} is empty (0 bytes): it was truncated, so the events it held are gone. It "
            "was left as it is. Move it aside (or restore it from a backup) and run again to start a fresh "
            "store.",
            cause="empty",
            path=path,
        )
