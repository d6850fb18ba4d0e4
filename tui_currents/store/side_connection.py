"""A short connection to the store's file for its small side tables (engine commands, the webhook's cursor).

Consoles in other processes and the engine's side tasks use these tables without a whole `Store`. They open
the file the same way the store does: private to the user, the store's page size, busy timeout and WAL,
and SQLite's failures in words. Only the side tables are created here (`schema.SIDE_TABLES`): the outbox's
tables, and any upgrade of them, are the store's own business when it opens the file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tui_currents.outbox import StoreUnavailable
from tui_currents.paths import touch_private
from tui_currents.store.errors import READ_ONLY, refuse_if_empty, unavailable
from tui_currents.store.schema import BUSY_TIMEOUT_SECONDS, PAGE_SIZE, SIDE_TABLES


def connect(path: Path, doing: str, kept: str = "Nothing was changed.") -> sqlite3.Connection:
    """An autocommit connection to the store file at `path`, with the side tables in place.

    Raises StoreUnavailable (one line for people, saying it could not `doing`) when the file cannot be
    opened or written (read-only, damaged, empty, a full disk)."""
    refuse_if_empty(path)
    try:
        touch_private(path)  # private to the user before SQLite creates it with the umask's mode
    except OSError as exc:
        raise StoreUnavailable(
            f"Could not {doing} in {path}: {exc.strerror or exc} (read-only, or another user's). {kept} "
            f"{READ_ONLY.todo}",
            cause=READ_ONLY.name,
            path=path,
        ) from None
    db: sqlite3.Connection | None = None
    try:
        db = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        db.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # only takes effect on a new file, as the store's
        db.execute("PRAGMA journal_mode = WAL")
        db.executescript(SIDE_TABLES)
        return db
    except sqlite3.Error as exc:
        if db is not None:
            db.close()
        err = unavailable(exc, path, doing, kept)
        if err is None:
            raise
        raise err from exc
