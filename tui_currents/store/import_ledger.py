"""The imported-files table in the store's file: how far the Avro import got through each file.

An import remembers each file by content hash (sha256), workspace and filters, and, to skip hashing an
unchanged file, by identity (path, size, modification time). It writes a file's resume point right after
each committed chunk, so a stopped import resumes there (see `tui_currents.sources.avro_import`).

The table is opened the way the store's other side tables are (`side_connection`: private file, busy
timeout, WAL, SQLite's failures in words). A dry run only reads: it opens the file read-only and takes a
missing file or table as an empty ledger.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from tui_currents.store.errors import refuse_if_empty, unavailable
from tui_currents.store.schema import BUSY_TIMEOUT_SECONDS
from tui_currents.store.side_connection import connect

LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS imported_files (
    sha256 TEXT NOT NULL,
    workspace TEXT NOT NULL,
    filters TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    records_done INTEGER NOT NULL,
    complete INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (sha256, workspace, filters)
);
CREATE INDEX IF NOT EXISTS imported_files_identity ON imported_files (path, size, mtime_ns);
"""
_KEPT = (
    "The events imported so far are stored. Run the import again once fixed: it resumes, and events "
    "already stored collapse as duplicates."
)


class FileIdentity(NamedTuple):
    """Where and as what a file was seen: a file unchanged since has the content hash recorded then."""

    path: Path  # resolved
    size: int
    mtime_ns: int


class ImportState(NamedTuple):
    """How far an import of one file's content got."""

    records_done: int
    complete: bool


class ImportLedger:
    """The imported-files table. `readonly=True` (dry runs) never writes, not even to create the table.

    SQLite's failures raise StoreUnavailable with what happened and what to do, like the store's own."""

    def __init__(self, db_path: Path, *, readonly: bool = False):
        self.path = db_path
        self.readonly = readonly
        self._db: sqlite3.Connection | None = None
        if readonly:
            self._db = _open_readonly(db_path)
            return
        db = connect(db_path, "open the imported-files table", _KEPT)
        try:
            with self._guard("create the imported-files table"):
                db.executescript(LEDGER_SCHEMA)
        except BaseException:
            db.close()
            raise
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            err = unavailable(exc, self.path, doing, _KEPT)
            if err is None:
                raise
            raise err from exc

    def sha256_by_identity(self, identity: FileIdentity, workspace: str, filters: str) -> str | None:
        """The content hash recorded for this exact file (path, size, mtime), if any."""
        if self._db is None:
            return None
        with self._guard("read the imported-files table"):
            row = self._db.execute(
                "SELECT sha256 FROM imported_files WHERE path = ? AND size = ? AND mtime_ns = ?"
                " AND workspace = ? AND filters = ?",
                (str(identity.path), identity.size, identity.mtime_ns, workspace, filters),
            ).fetchone()
        return row[0] if row else None

    def state(self, sha256: str, workspace: str, filters: str) -> ImportState | None:
        """How far this content was imported for this workspace and filters; None if never started."""
        if self._db is None:
            return None
        with self._guard("read the imported-files table"):
            row = self._db.execute(
                "SELECT records_done, complete FROM imported_files"
                " WHERE sha256 = ? AND workspace = ? AND filters = ?",
                (sha256, workspace, filters),
            ).fetchone()
        return ImportState(int(row[0]), bool(row[1])) if row else None

    def record(
        self,
        sha256: str,
        workspace: str,
        filters: str,
        identity: FileIdentity,
        *,
        records_done: int,
        complete: bool,
    ) -> None:
        """Remember how far this file was imported (and where it was last seen). Never for a dry run."""
        if self.readonly or self._db is None:
            return
        path, size, mtime_ns = identity
        with self._guard(f"note how far {path} was imported"):
            self._db.execute(
                "INSERT INTO imported_files (sha256, workspace, filters, path, size, mtime_ns, records_done,"
                " complete, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (sha256, workspace, filters) DO UPDATE SET path = excluded.path,"
                " size = excluded.size, mtime_ns = excluded.mtime_ns,"
                " records_done = max(records_done, excluded.records_done), complete = excluded.complete,"
                " updated_at = excluded.updated_at",
                (sha256, workspace, filters, str(path), size, mtime_ns, records_done, int(complete),
                 time.time()),
            )  # fmt: skip


def _open_readonly(path: Path) -> sqlite3.Connection | None:
    """A read-only connection to the table, or None when there is no file or no table yet."""
    if not path.exists():
        return None
    refuse_if_empty(path)
    db: sqlite3.Connection | None = None
    try:
        uri = f"{path.absolute().as_uri()}?mode=ro"
        db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        found = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'imported_files'"
        ).fetchone()
    except sqlite3.Error as exc:
        if db is not None:
            db.close()
        err = unavailable(exc, path, "read the imported-files table", "Nothing was changed.")
        if err is None:
            raise
        raise err from exc
    if not found:
        db.close()
        return None
    return db
