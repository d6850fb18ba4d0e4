"""The part of the store every other part builds on: the connection, write transactions, error mapping."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Self

from tui_currents import segments
from tui_currents.outbox import NOT_CREATED, DeadLetterCaps, StoreUnavailable
from tui_currents.paths import touch_private
from tui_currents.segments import KnownIds, Segment
from tui_currents.store.checkpointer import BACKSTOP_PAGES, SMALL_COMMIT_BYTES, Checkpointer
from tui_currents.store.errors import READ_ONLY, refuse_if_empty, unavailable
from tui_currents.store.schema import (
    BUMP_COUNTER,
    BUSY_TIMEOUT_SECONDS,
    DEFAULT_DELIVERED_WINDOW_DAYS,
    DEFAULT_DELIVERED_WINDOW_MAX,
    DEFAULT_TAIL_KEEP,
    PAGE_SIZE,
    SCHEMA_VERSION,
    SEGMENT_BODIES,
    SEGMENTS_CACHED,
    create_or_upgrade,
)


class StoreBase:
    """The connection, its locks and error mapping, and the in-memory delivery state every part shares."""

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "FULL",
        readonly: bool = False,
        tail_keep: int = DEFAULT_TAIL_KEEP,
        delivered_window_days: float = DEFAULT_DELIVERED_WINDOW_DAYS,
        delivered_window_max: int = DEFAULT_DELIVERED_WINDOW_MAX,
        busy_timeout: float = BUSY_TIMEOUT_SECONDS,
        dead_letter_caps: DeadLetterCaps | None = None,
    ):
        self.path = Path(path)
        self.dead_letter_caps = dead_letter_caps or DeadLetterCaps()  # may be replaced on a config reload
        self.busy_timeout = busy_timeout
        self.readonly = readonly
        self.tail_keep = max(1, tail_keep)
        self.delivered_window_days = delivered_window_days
        self.delivered_window_max = max(0, delivered_window_max)
        sync = synchronous.upper()
        if sync not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        self._lock = threading.RLock()  # the connection, and every write
        # The in-memory delivery state (leases, parsed segments). Taken after `_lock` when both are needed.
        self._lease_lock = threading.RLock()
        self._reader: sqlite3.Connection | None = None  # leases read on their own connection
        self._synchronous = sync
        self._tail_since_prune = self.tail_keep  # prune at the first write: a previous run may have left more
        self._known: KnownIds | None = None  # the duplicate check, built at the first commit
        self._bodies_in_outbox: bool | None = None  # whether segments from before schema 6 keep bodies there
        # connector -> segment seq -> position -> end of its lease
        self._leases: dict[str, dict[int, dict[int, float]]] = {}
        self._segments: dict[int, Segment] = {}  # parsed waiting segments, a few
        # Changes to the in-memory state (leases, known ids) that must wait for the transaction to commit.
        self._after_commit: list[Callable[[], None]] = []
        # Copies the log into the database file beside the commits rather than inside one (see checkpointer).
        self._checkpointer = None if readonly else Checkpointer(self.path, sync)
        try:
            if readonly:
                if not self.path.exists():
                    raise StoreUnavailable(
                        f"There is no store at {self.path} yet: the engine creates it when it first runs.",
                        cause=NOT_CREATED,
                        path=self.path,
                    )
                target: str | Path = f"{self.path.absolute().as_uri()}?mode=ro"
            else:
                refuse_if_empty(self.path)
                try:
                    touch_private(self.path)  # SQLite gives its -wal and -shm files the database file's mode
                except OSError as exc:
                    raise StoreUnavailable(
                        f"Could not open the store {self.path}: {exc.strerror or exc} (the file or its "
                        "folder is read-only, or belongs to another user). Nothing was changed. Make the "
                        "file and its folder writable by this user.",
                        cause=READ_ONLY.name,
                        path=self.path,
                    ) from None
                target = self.path
            self._db = sqlite3.connect(
                target,
                uri=readonly,
                timeout=busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=256,
            )
            if not readonly:
                self._db.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # only takes effect on a new file
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute(f"PRAGMA synchronous = {sync}")
                self._db.execute("PRAGMA journal_size_limit = 67108864")  # trim the WAL back to 64 MB
                self._db.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
                # 8 MB: the b-trees are small (a row per segment); bodies are read once, in overflow pages.
                self._db.execute("PRAGMA cache_size = -8000")
                # Some builds zero every freed page (secure_delete ON), which writes each delivered body
                # a second time; FAST still zeroes deleted content in the pages a transaction writes
                # anyway, and freed pages are soon reused by new segments (measured: 6.3 -> 3.9 KB written
                # to disk per event, and 12% more throughput).
                self._db.execute("PRAGMA secure_delete = FAST")
                if self._db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    create_or_upgrade(self._db)
            elif self._db.execute("PRAGMA user_version").fetchone()[0] == 0:
                refuse_if_empty(self.path)
                self._db.close()
                raise StoreUnavailable(
                    f"There is no store at {self.path} yet: the engine creates it when it first runs.",
                    cause=NOT_CREATED,
                    path=self.path,
                )
        except sqlite3.Error as exc:
            err = unavailable(exc, self.path, "open the store", "Nothing was changed.", busy_timeout)
            if err is None:
                raise
            if err.cause == "cannot open" and not os.access(self.path.parent, os.W_OK):
                # SQLite cannot make its -wal/-shm files: the folder (or its filesystem) is read-only.
                raise StoreUnavailable(
                    f"Could not open the store {self.path}: its folder is read-only (a read-only filesystem, "
                    "or another user's folder). Nothing was changed. Make the folder writable by this user.",
                    cause=READ_ONLY.name,
                    path=self.path,
                ) from exc
            raise err from exc

    def __repr__(self) -> str:
        return f"<Store {self.path}{' read-only' if self.readonly else ''}>"

    def close(self) -> None:
        """Close the connections (after an optimize, for the next run's query plans)."""
        if self._checkpointer is not None:
            self._checkpointer.close()
        with self._lock, self._lease_lock:
            if self._reader is not None:
                self._reader.close()
            if not self.readonly:
                with suppress(sqlite3.Error):
                    self._db.execute("PRAGMA optimize")
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _write(
        self, doing: str, kept: str, *, durable: bool = True, size: int = SMALL_COMMIT_BYTES
    ) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking the write lock at once; rolled back whole on any error.

        `durable=False` is for bookkeeping whose loss on a power cut costs only a harmless resend (delivered
        marks, retry times, states): it skips the fsync that FULL would do for this commit. The next durable
        commit's fsync of the log covers it anyway, and a crash of the program alone loses nothing either
        way (WAL). `size`: about how many bytes it writes (for when to copy the log into the file)."""
        self._refuse_if_readonly(doing, kept)  # SQLite would only refuse at the first change
        with self._lock:
            db = self._db
            relaxed = not durable and self._synchronous != "NORMAL"
            try:
                if relaxed:
                    db.execute("PRAGMA synchronous = NORMAL")
                db.execute("BEGIN IMMEDIATE")
                self._after_commit.clear()
                yield db
                db.execute("COMMIT")
                if self._checkpointer is not None:
                    self._checkpointer.nudge(size)
                with self._lease_lock:
                    for action in self._after_commit:
                        action()
            except BaseException as exc:
                self._after_commit.clear()
                if db.in_transaction:
                    # SQLite may have rolled back already (it does so itself on some I/O errors).
                    with suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    err = unavailable(exc, self.path, doing, kept, self.busy_timeout)
                    if err is not None:
                        raise err from exc
                raise
            finally:
                if relaxed:
                    with suppress(sqlite3.Error):
                        db.execute(f"PRAGMA synchronous = {self._synchronous}")

    def _refuse_if_readonly(self, doing: str, kept: str) -> None:
        if self.readonly:
            raise StoreUnavailable(
                f"Could not {doing} in {self.path}: it was opened read-only. {kept}",
                cause=READ_ONLY.name,
                path=self.path,
            )

    @contextmanager
    def _failures_as_unavailable(self, doing: str, kept: str) -> Iterator[None]:
        """SQLite's operational failures as StoreUnavailable, with what was being done and what was kept."""
        try:
            yield
        except sqlite3.Error as exc:
            err = unavailable(exc, self.path, doing, kept, self.busy_timeout)
            if err is None:
                raise
            raise err from exc

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The connection for reads, with SQLite's operational failures as StoreUnavailable."""
        with self._lock, self._failures_as_unavailable("read the store", "Nothing was changed."):
            yield self._db

    def _read(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self._reading() as db:
            return db.execute(sql, params).fetchall()

    @staticmethod
    def _bump(db: sqlite3.Connection, counts: dict[tuple[str, str, str], int]) -> None:
        rows = [(*key, n) for key, n in counts.items() if n]
        if rows:
            db.executemany(BUMP_COUNTER, rows)

    # ------------------------------------------------------------------------------ parsed segments

    def _segment(self, db: sqlite3.Connection, seq: int, connector: str) -> Segment | None:
        """A waiting segment of this connector, parsed, from a small cache."""
        cached = self._segments.get(seq)
        if cached is not None:
            return cached if cached.connector == connector else None
        row = db.execute(
            f"SELECT enqueued_at, ids, {SEGMENT_BODIES} FROM outbox"
            " WHERE seq = ? AND connector = ? AND finished_at IS NULL",
            (seq, connector),
        ).fetchone()
        if row is None:
            return None
        found = Segment.parse(seq, connector, row[0], row[1], row[2] or b"")
        self._keep_segment(found)
        return found

    def _progress(self, db: sqlite3.Connection, seq: int) -> tuple[int | None, int]:
        """(messages still waiting or None when untouched, done marks) of a segment."""
        row = db.execute("SELECT waiting, done FROM outbox_progress WHERE seq = ?", (seq,)).fetchone()
        return (None, 0) if row is None else (row[0], segments.marks_from(row[1]))

    def _drop_segment(self, seq: int) -> None:
        self._segments.pop(seq, None)

    def _keep_segment(self, segment: Segment) -> None:
        with self._lease_lock:
            if len(self._segments) >= SEGMENTS_CACHED:
                self._segments.pop(next(iter(self._segments)))
            self._segments[segment.seq] = segment

    # ------------------------------------------------------------------------------------- leases

    def _unlease(self, connector: str, addresses: Sequence[int]) -> None:
        by_seq = self._leases.get(connector)
        if by_seq:
            for seq, items in segments.by_segment(addresses).items():
                self._unlease_items(by_seq, seq, items)

    @staticmethod
    def _unlease_items(by_seq: dict[int, dict[int, float]], seq: int, items: Iterable[int]) -> None:
        held = by_seq.get(seq)
        if held:
            for item in items:
                held.pop(item, None)
            if not held:
                del by_seq[seq]
