"""The store: one SQLite file (WAL) holding the outbox, dead letters, counters, connector states and the tail.

It is the only state shared between the parts of the program and between processes: the engine writes,
the TUI and `status` read, from the same process or another one.

Choices worth knowing:

- One transaction per received batch (`commit`): outbox segments, dead letters, counters and tail lines
  land together or not at all. A source acknowledges Braze only after `commit` returned.
- The outbox stores a batch's queued messages of one connector as ONE row, a segment (see segments.py):
  their bodies end to end and a small index of messageIds, event types and sizes. Appending a row is far
  cheaper than updating a b-tree per message, which is what a row per message with a unique index on
  random ids costs. Per-message state that differs from "waiting, never tried" lives in small side
  tables: done marks of a partly sent segment (`outbox_progress`) and attempts/retry times
  (`outbox_retries`, written only on failures).
- Leases are kept in memory by the engine's Store (one engine per home, by its lock file): they end when
  it ends, and a message is never leased twice while its lease runs. A lease only reads, on a connection
  of its own, so it never waits for a commit (or another program's write) to end; the in-memory state it
  relies on (leases, done segments) changes only once the transaction behind the change has committed.
- Duplicates collapse on (connector, messageId): the writer keeps the ids each connector has queued or
  recently delivered as 64-bit keys in memory (segments.KnownIds), built from the segments' indexes on
  first use and brought up to date with what other processes (an import, a requeue) committed, inside
  the commit's write lock. A segment whose messages are all delivered drops its bodies and stays as the
  memory of its ids for `delivered_window_days` (7 by default: Braze retries for about 5 days at most and
  keeps queued events for 7) and at most about `delivered_window_max` remembered ids (250,000 by default),
  oldest segments first. A duplicate arriving later than the window is sent again under the same
  messageId, which Segment itself drops within its ~24-hour deduplication window. Dead-lettered messages
  are not remembered: the same event sent again is queued again.
- Backlog size per connector is kept in a small summary table updated in the same transactions, so
  `backlog()` costs the same with ten messages queued or ten million.
- The tail is append-only, a stored row per commit and connector holding many lines: received events
  (with their Segment message) or a later change of fate (delivered, dead letter, queued again) of the
  messages it names. Lines are numbered without gaps across rows (a row's seq is its first line's
  number), so a reader polling `tail(after=n)` gets exactly the lines after the last one it saw. About the
  last `tail_keep` lines are kept.
- Disk full, read-only files, I/O errors and a lock held too long raise `StoreUnavailable` with a message a
  person can act on; the transaction is rolled back and the store works again once the cause is gone.
- One connection per Store for writes and reads, shared by threads behind a lock (and one more for
  leases); readers in other processes open their own (`readonly=True`). Only the engine (one per home,
  by its lock file) leases and delivers.
- A store of the first schema (a row per message) is upgraded in place on opening, keeping every waiting
  message, its attempts, and the ids remembered as delivered.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import orjson

from tui_currents import segments
from tui_currents.paths import PRIVATE_FILE_MODE, touch_private
from tui_currents.received import Received
from tui_currents.segments import KnownIds, Segment, key_of

if TYPE_CHECKING:
    from tui_currents.mapping import Outcome

# Counter names, per (connector, event type). `dead_lettered` includes the expired ones; `expired` says
# how many of them were dead-lettered for age. `received` counts every event handed to a connector.
RECEIVED = "received"
NOT_SELECTED = "not_selected"
ANONYMOUS = "anonymous"
UNSUPPORTED = "unsupported"
QUEUED = "queued"
DUPLICATE = "duplicate"
DELIVERED = "delivered"
RETRIED = "retried"
DEAD_LETTERED = "dead_lettered"
EXPIRED = "expired"
REQUEUED = "requeued"
COUNTER_NAMES = (
    RECEIVED, NOT_SELECTED, ANONYMOUS, UNSUPPORTED, QUEUED, DUPLICATE,
    DELIVERED, RETRIED, DEAD_LETTERED, EXPIRED, REQUEUED,
)  # fmt: skip

# Fates in the tail beyond mapping's Fate values ("queued", "not selected", "anonymous", "unsupported",
# "rejected").
TAIL_DUPLICATE = "duplicate"
TAIL_DELIVERED = "delivered"
TAIL_DEAD_LETTER = "dead letter"
DUPLICATE_REASON = "already queued or delivered for this connector"
REQUEUED_REASON = "requeued from the dead letters"

# mapping.Fate value -> counter name (a queued message found to be a duplicate moves to DUPLICATE).
_FATE_COUNTER = {
    "queued": QUEUED,
    "not selected": NOT_SELECTED,
    "anonymous": ANONYMOUS,
    "unsupported": UNSUPPORTED,
    "rejected": DEAD_LETTERED,
}

DAY = 86_400.0
DEFAULT_TAIL_KEEP = 20_000
DEFAULT_DELIVERED_WINDOW_DAYS = 7.0
DEFAULT_DELIVERED_WINDOW_MAX = 250_000
BUSY_TIMEOUT_SECONDS = 10.0
PAGE_SIZE = 16_384  # larger pages make each b-tree insert cheaper for rows of about 1 KB
_CHUNK = 500  # ids per IN (...) list and rows per maintenance transaction

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    connector TEXT NOT NULL,
    enqueued_at REAL NOT NULL,
    messages INTEGER NOT NULL,
    ids BLOB NOT NULL,
    bodies BLOB,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_waiting ON outbox (connector, seq) WHERE finished_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_finished ON outbox (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS outbox_progress (
    seq INTEGER PRIMARY KEY,
    waiting INTEGER NOT NULL,
    done BLOB
);

CREATE TABLE IF NOT EXISTS outbox_retries (
    seq INTEGER NOT NULL,
    item INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    retry_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    PRIMARY KEY (seq, item)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS backlog (
    connector TEXT PRIMARY KEY,
    messages INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    dead_letters INTEGER NOT NULL DEFAULT 0,
    remembered INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    connector TEXT NOT NULL,
    message_id TEXT,
    event_type TEXT NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    event BLOB,
    message BLOB
);
CREATE INDEX IF NOT EXISTS dead_letters_connector ON dead_letters (connector, id);

CREATE TABLE IF NOT EXISTS counters (
    connector TEXT NOT NULL,
    event_type TEXT NOT NULL,
    name TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (connector, event_type, name)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS connector_states (
    connector TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS tail (
    seq INTEGER PRIMARY KEY,
    lines INTEGER NOT NULL,
    at REAL NOT NULL,
    connector TEXT NOT NULL,
    source TEXT,
    fate TEXT,
    reason TEXT,
    entries BLOB NOT NULL,
    messages BLOB
);
"""


# ------------------------------------------------------------------------------------------------ errors


class StoreUnavailable(Exception):
    """The store could not be written or read (disk full, read-only, I/O error, locked too long).

    `cause` is a short name of what went wrong ("disk full", "I/O error", "read-only", "locked",
    "cannot open", "damaged", "out of memory"); the message says what was kept and what to do.
    """

    def __init__(self, message: str, *, cause: str, path: Path):
        super().__init__(message)
        self.cause = cause
        self.path = path


_LOCKED = (
    "locked",
    "another program kept it locked for more than {busy:g} s",
    "Close any other program holding the file (a database browser, a backup tool) and retry.",
)
# primary SQLite result code -> (cause, what happened, what to do)
_CAUSES = {
    13: ("disk full", "the disk holding it is full", "Free some disk space; the store resumes by itself."),
    10: (
        "I/O error",
        "the disk reported an input/output error",
        "Check the disk; the store resumes by itself once it answers again.",
    ),
    8: (
        "read-only",
        "the file or its folder is read-only",
        "Make the file and its folder writable by this user.",
    ),
    5: _LOCKED,
    6: _LOCKED,
    14: (
        "cannot open",
        "the file could not be opened",
        "Check that the folder exists and belongs to this user.",
    ),
    11: ("damaged", "the file is damaged", "Restore it from a backup or move it aside to start afresh."),
    26: ("damaged", "the file is not a database", "Move it aside to start afresh."),
    7: ("out of memory", "the system ran out of memory", "Free some memory and retry."),
}


def _unavailable(
    exc: sqlite3.Error, path: Path, doing: str, kept: str, busy: float = BUSY_TIMEOUT_SECONDS
) -> StoreUnavailable | None:
    """A StoreUnavailable for an operational failure, or None for an error that is a bug."""
    code = getattr(exc, "sqlite_errorcode", None)
    cause = None if code is None else _CAUSES.get(code & 0xFF)
    if cause is None:
        return None
    short, what, todo = cause
    what = what.format(busy=busy)
    return StoreUnavailable(f"Could not {doing} in {path}: {what}. {kept} {todo}", cause=short, path=path)


# -------------------------------------------------------------------------------------------- data types


class ConnectorStatus(StrEnum):
    """What a connector's delivery is doing, in words for people."""

    RUNNING = "running"
    IDLE = "idle"  # nothing to send
    PAUSED = "paused"  # Segment asked to wait (Retry-After), or the user paused the connector
    BACKING_OFF = "backing off"  # after a failed attempt, until `paused_until`
    CREDENTIALS_REJECTED = "credentials rejected"  # 401/403: waiting for another write key
    NO_WRITE_KEY = "no write key"  # nothing to send with: waiting for a write key
    DISABLED = "disabled"
    STOPPED = "stopped"


@dataclass(slots=True)
class ConnectorState:
    """A connector's delivery state as the engine last wrote it (readable from any process)."""

    state: str
    detail: str = ""
    since: float = 0.0  # when `state` began
    last_error: str | None = None
    last_error_at: float | None = None
    paused_until: float | None = None  # end of a pause or backoff
    warning: str | None = None  # e.g. the oldest queued event nears the retention limit

    def to_json(self) -> str:
        """This state as a JSON object (text)."""
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> ConnectorState:
        """A state from `to_json` output; unknown keys (from a newer version) are ignored."""
        data = orjson.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What one `commit` did with its items."""

    received: int = 0
    queued: int = 0
    duplicates: int = 0
    filtered: int = 0  # not selected, anonymous, unsupported
    dead_lettered: int = 0  # rejected by the mapping
    duplicates_by_type: dict[str, int] | None = None  # event type -> duplicates (None when there are none)


class OutboxRow(NamedTuple):
    """One leased message: `body` is the exact Segment message JSON to send. A tuple: a lease makes
    thousands of them, and a tuple is made several times faster than a frozen dataclass."""

    seq: int
    message_id: str
    event_type: str
    body: bytes
    bytes: int
    attempts: int
    enqueued_at: float


@dataclass(frozen=True, slots=True)
class Backlog:
    """A connector's outbox at a glance: messages waiting (and their bytes), since when, dead letters."""

    messages: int
    bytes: int
    oldest_enqueued_at: float | None
    dead_letters: int


@dataclass(frozen=True, slots=True)
class TailRow:
    """One row of the tail feed.

    `update=False`: an event as it was received, with its fate then and, when queued, its Segment message.
    `update=True`: a later fate of the event with the same connector and message_id ("delivered",
    "dead letter" with the reason, or "queued" again after a requeue); `segment_event`, `user` and
    `message` are None. Update rows written together share one seq.
    """

    seq: int
    at: float
    connector: str
    event_type: str
    segment_event: str | None
    user: str | None
    fate: str
    reason: str | None
    message_id: str | None
    source: str | None
    update: bool
    message: bytes | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that will not be sent unless requeued, and why."""

    id: int
    connector: str
    message_id: str | None
    event_type: str
    reason: str
    at: float
    attempts: int
    event: bytes | None  # the Currents record as received (JSON), when known
    message: bytes | None  # the Segment message (JSON), when the event was mapped


# -------------------------------------------------------------------------------------------------- store


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _chunks(items: Sequence, size: int = _CHUNK) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(n: int) -> str:
    return ",".join("?" * n)


_INSERT_OUTBOX = "INSERT INTO outbox (connector, enqueued_at, messages, ids, bodies) VALUES (?, ?, ?, ?, ?)"
_INSERT_TAIL = (
    "INSERT INTO tail (seq, lines, at, connector, source, fate, reason, entries, messages)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_DEAD = (
    "INSERT INTO dead_letters (connector, message_id, event_type, reason, at, attempts, event, message)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_BUMP_COUNTER = (
    "INSERT INTO counters (connector, event_type, name, n) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (connector, event_type, name) DO UPDATE SET n = n + excluded.n"
)
_BUMP_BACKLOG = (
    "INSERT INTO backlog (connector, messages, bytes, dead_letters, remembered) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (connector) DO UPDATE SET messages = messages + excluded.messages,"
    " bytes = bytes + excluded.bytes, dead_letters = dead_letters + excluded.dead_letters,"
    " remembered = remembered + excluded.remembered"
)
_INSERT_RETRY = (
    "INSERT INTO outbox_retries (seq, item, attempts, retry_at, last_error) VALUES (?, ?, ?, ?, ?)"
)
_TAIL_COLUMNS = "seq, lines, at, connector, source, fate, reason, entries, messages"
_DEAD_COLUMNS = "id, connector, message_id, event_type, reason, at, attempts, event, message"
_LEASE_KEPT = "The messages stay queued and are sent later."
_SEGMENTS_CACHED = 8  # parsed segments kept for the next lease or delivery (a lease reads whole segments)


def _create_or_upgrade(db: sqlite3.Connection) -> None:
    """Create the tables, or bring a store of the first schema (an outbox row per message) to this one,
    keeping every waiting message, its attempts, and the ids remembered as delivered. One transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version >= SCHEMA_VERSION:  # another process did it meanwhile
            db.execute("COMMIT")
            return
        if version == 1:
            for statement in ("DROP INDEX outbox_waiting", "DROP INDEX outbox_delivered", "DROP TABLE tail",
                              "ALTER TABLE outbox RENAME TO outbox_v1"):  # fmt: skip
                db.execute(statement)
        for statement in SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        if version == 1:
            _copy_v1_outbox(db)
            db.execute("DROP TABLE outbox_v1")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        with suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise


def _copy_v1_outbox(db: sqlite3.Connection) -> None:
    connectors = [r[0] for r in db.execute("SELECT DISTINCT connector FROM outbox_v1")]
    for connector in connectors:
        for delivered in (False, True):
            rows = db.execute(
                "SELECT message_id, event_type, body, bytes, enqueued_at, attempts, retry_at, last_error,"
                " delivered_at FROM outbox_v1 WHERE connector = ?"
                f" AND delivered_at IS {'NOT NULL' if delivered else 'NULL'} ORDER BY seq",
                (connector,),
            ).fetchall()
            for start in range(0, len(rows), 1000):
                chunk = rows[start : start + 1000]
                index = segments.pack_index([(r[0], r[1], r[3]) for r in chunk])
                if delivered:
                    db.execute(
                        "INSERT INTO outbox (connector, enqueued_at, messages, ids, finished_at)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (connector, chunk[0][4], len(chunk), index, max(r[8] for r in chunk)),
                    )
                    continue
                seq = db.execute(
                    _INSERT_OUTBOX, (connector, chunk[0][4], len(chunk), index, b"".join(r[2] for r in chunk))
                ).lastrowid
                db.executemany(
                    _INSERT_RETRY,
                    [(seq, i, r[5], r[6], r[7]) for i, r in enumerate(chunk) if r[5] or r[6]],
                )


def _free_from(done: int, leased: dict[int, float], now: float) -> int | None:
    """The position from which every message of a segment is free to lease, when all those before it are
    done or leased, in that order (the usual state: a segment is leased front to back); else None."""
    start = done.bit_length()
    if done != (1 << start) - 1:
        return None
    if leased:
        if min(leased) != start or max(leased) != start + len(leased) - 1 or min(leased.values()) <= now:
            return None
        start += len(leased)
    return start


def _tail_lines(row: tuple) -> Iterator[TailRow]:
    """The lines of one stored tail row."""
    seq, _, at, connector, source, fate, reason, entries, messages = row
    if fate is None:  # received events, each with its own fate and, when queued, its message
        offset = 0
        for i, (event_type, segment_event, user, line_fate, line_reason, message_id, size) in enumerate(
            orjson.loads(entries)
        ):
            message = None
            if size:
                if messages is not None:
                    message = messages[offset : offset + size]
                offset += size
            yield TailRow(seq + i, at, connector, event_type, segment_event, user, line_fate, line_reason,
                          message_id, source, False, message)  # fmt: skip
    else:
        for i, (event_type, message_id) in enumerate(orjson.loads(entries)):
            yield TailRow(
                seq + i, at, connector, event_type, None, None, fate, reason, message_id, None, True, None
            )


class Store:
    """The SQLite store. Thread-safe (one connection behind a lock); open it once per process.

    `synchronous`: "FULL" makes every commit durable across power loss; "NORMAL" (in WAL mode) survives a
    crash of the program but may lose the last commits on power loss, for more speed.
    `readonly=True` opens an existing store for reading only (consoles in another process).
    `busy_timeout`: how long to wait for another process's write lock before StoreUnavailable("locked").
    """

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
    ):
        self.path = Path(path)
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
        # connector -> segment seq -> position -> end of its lease
        self._leases: dict[str, dict[int, dict[int, float]]] = {}
        self._segments: dict[int, Segment] = {}  # parsed waiting segments, a few
        # Changes to the in-memory state (leases, known ids) that must wait for the transaction to commit.
        self._after_commit: list[Callable[[], None]] = []
        try:
            if readonly:
                if not self.path.exists():
                    raise StoreUnavailable(
                        f"There is no store at {self.path} yet: the engine creates it when it first runs.",
                        cause="cannot open",
                        path=self.path,
                    )
                target: str | Path = f"{self.path.absolute().as_uri()}?mode=ro"
            else:
                touch_private(self.path)  # SQLite gives its -wal and -shm files the database file's mode
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
                # 8 MB: the b-trees are small (a row per segment); bodies are read once, in overflow pages.
                self._db.execute("PRAGMA cache_size = -8000")
                # Some builds zero every freed page (secure_delete ON), which writes each delivered body
                # a second time; FAST still zeroes deleted content in the pages a transaction writes
                # anyway, and freed pages are soon reused by new segments (measured: 6.3 -> 3.9 KB written
                # to disk per event, and 12% more throughput).
                self._db.execute("PRAGMA secure_delete = FAST")
                if self._db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    _create_or_upgrade(self._db)
        except sqlite3.Error as exc:
            err = _unavailable(exc, self.path, "open the store", "Nothing was changed.", busy_timeout)
            if err is None:
                raise
            raise err from exc

    def __repr__(self) -> str:
        return f"<Store {self.path}{' read-only' if self.readonly else ''}>"

    def close(self) -> None:
        """Close the connections (after an optimize, for the next run's query plans)."""
        with self._lock, self._lease_lock:
            if self._reader is not None:
                self._reader.close()
            if not self.readonly:
                with suppress(sqlite3.Error):
                    self._db.execute("PRAGMA optimize")
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --------------------------------------------------------------------------------------- plumbing

    @contextmanager
    def _write(self, doing: str, kept: str, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking the write lock at once; rolled back whole on any error.

        `durable=False` is for bookkeeping whose loss on a power cut costs only a harmless resend (delivered
        marks, retry times, states): it skips the fsync that FULL would do for this commit. The next durable
        commit's fsync of the log covers it anyway, and a crash of the program alone loses nothing either
        way (WAL)."""
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
                    err = _unavailable(exc, self.path, doing, kept, self.busy_timeout)
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
                cause=_CAUSES[8][0],
                path=self.path,
            )

    @contextmanager
    def _failures_as_unavailable(self, doing: str, kept: str) -> Iterator[None]:
        """SQLite's operational failures as StoreUnavailable, with what was being done and what was kept."""
        try:
            yield
        except sqlite3.Error as exc:
            err = _unavailable(exc, self.path, doing, kept, self.busy_timeout)
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
            db.executemany(_BUMP_COUNTER, rows)

    # ------------------------------------------------------------------------------------------- tail

    def _append_tail(
        self,
        db: sqlite3.Connection,
        now: float,
        connector: str,
        entries: list,
        *,
        source: str | None = None,
        fate: str | None = None,
        reason: str | None = None,
        messages: bytes | None = None,
    ) -> None:
        """One stored tail row for many lines: received events (`fate` None; each entry has its own fate
        and the size of its message in `messages`) or a later fate of messages (each entry: event type,
        messageId). Its seq is the id of its first line: line ids count up by one with no gaps."""
        if not entries:
            return
        row = db.execute("SELECT seq + lines FROM tail ORDER BY seq DESC LIMIT 1").fetchone()
        first = row[0] if row else 1
        db.execute(
            _INSERT_TAIL,
            (first, len(entries), now, connector, source, fate, reason, orjson.dumps(entries), messages),
        )
        self._tail_since_prune += len(entries)
        if self._tail_since_prune >= max(100, self.tail_keep // 10):
            self._tail_since_prune = 0
            db.execute("DELETE FROM tail WHERE seq + lines <= ?", (first + len(entries) - self.tail_keep,))

    def _append_updates(
        self, db: sqlite3.Connection, now: float, connector: str, fate: str, reason: str | None, rows: list
    ) -> None:
        """Tail lines for a later fate of messages, from (message_id, event_type) pairs."""
        self._append_tail(
            db, now, connector, [(event_type, message_id) for message_id, event_type in rows], fate=fate,
            reason=reason,
        )  # fmt: skip

    # ------------------------------------------------------------------------------------ known ids

    def _known_ids(self, db: sqlite3.Connection) -> KnownIds:
        """The duplicate check, built from the store on first use and brought up to date with segments
        other processes (an import, a requeue) committed since. Call inside a write transaction."""
        known = self._known
        building = known is None
        if building:
            known = KnownIds()
        for seq, connector, ids in db.execute(
            "SELECT seq, connector, ids FROM outbox WHERE seq > ? ORDER BY seq", (known.upto,)
        ):
            known.add_index(connector, ids)
            known.upto = seq
        if building:
            # Dead-lettered messages are not remembered: the same event sent again is queued again.
            for connector, message_id in db.execute(
                "SELECT connector, message_id FROM dead_letters WHERE message IS NOT NULL"
            ):
                known.forget(connector, (message_id,))
            self._known = known
        return known

    def _add_segment(
        self, db: sqlite3.Connection, connector: str, now: float, entries: list[tuple[str, str, int]],
        bodies: list[bytes],
    ) -> None:  # fmt: skip
        """Append queued messages as outbox segments (several when there are very many). Once the
        transaction commits, they stay parsed in memory while there is room: the next lease, in this
        process, then reads them from there instead of from the disk."""
        sizes = [entry[2] for entry in entries]
        for start, end in segments.cut(entries, sizes):
            part, blob = entries[start:end], b"".join(bodies[start:end])
            seq = db.execute(
                _INSERT_OUTBOX, (connector, now, end - start, segments.pack_index(part), blob)
            ).lastrowid
            if len(self._segments) < _SEGMENTS_CACHED:
                parsed = Segment.of(seq, connector, now, part, blob)
                self._after_commit.append(partial(self._keep_segment, parsed))

    def _keep_segment(self, segment: Segment) -> None:
        with self._lease_lock:
            if len(self._segments) >= _SEGMENTS_CACHED:
                self._segments.pop(next(iter(self._segments)))
            self._segments[segment.seq] = segment

    # ----------------------------------------------------------------------------------------- commit

    def commit(
        self,
        batch: Sequence[tuple[str, Outcome]] | Received,
        *,
        source: str,
        now: float | None = None,
    ) -> CommitResult:
        """Store one received batch in ONE transaction: outbox segments for queued events (a messageId
        already queued or recently delivered for that connector collapses into a duplicate), dead letters
        for rejected ones, counters and tail lines for all. The batch is (connector, outcome) items or
        the same already in the store's form (`Received`, e.g. built by a mapping worker). Raises
        StoreUnavailable (nothing kept) when the disk is full or failing; the caller must then not
        acknowledge the batch."""
        now = time.time() if now is None else now
        received = batch if isinstance(batch, Received) else Received.of(batch)
        tails = received.tails
        dead = [
            (connector, event_id, event_type, reason, now, 0, record, None)
            for connector, event_id, event_type, reason, record in received.dead
        ]
        kept = (
            "Nothing from this batch was saved, so it was not acknowledged and its sender can send it again."
        )
        with self._write("save received events", kept) as db:
            known = self._known_ids(db)
            added: dict[str, set[int]] = {}  # keys remembered once the transaction commits
            counts: dict[tuple[str, str, str], int] = defaultdict(int)
            backlog: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
            queued = duplicates = 0
            duplicate_types: dict[str, int] = {}
            for connector, (entries, bodies) in tails.items():
                at = [index for index, entry in enumerate(entries) if entry[3] == "queued"]
                message_keys = [key_of(entries[index][5]) for index in at]  # in the order of `bodies`
                seen = known.of(connector).among(message_keys)
                new_keys = set(message_keys)
                if not seen and len(new_keys) == len(message_keys):  # the usual batch: no duplicate
                    segment = [
                        (entries[i][5], entries[i][0], len(body)) for i, body in zip(at, bodies, strict=True)
                    ]
                    segment_bodies = bodies
                    lines = entries
                else:
                    new_keys = set()
                    segment, segment_bodies = [], []
                    lines = list(entries)  # a copy is marked: a failed commit may be retried with `entries`
                    for index, key, body in zip(at, message_keys, bodies, strict=True):
                        entry = entries[index]
                        if key in seen or key in new_keys:
                            lines[index] = [*entry[:3], TAIL_DUPLICATE, DUPLICATE_REASON, entry[5], 0]
                            counts[(connector, entry[0], QUEUED)] -= 1
                            counts[(connector, entry[0], DUPLICATE)] += 1
                            duplicates += 1
                            duplicate_types[entry[0]] = duplicate_types.get(entry[0], 0) + 1
                            continue
                        new_keys.add(key)
                        segment.append((entry[5], entry[0], len(body)))
                        segment_bodies.append(body)
                if segment:
                    self._add_segment(db, connector, now, segment, segment_bodies)
                    queued += len(segment)
                    entry_backlog = backlog[connector]
                    entry_backlog[0] += len(segment)
                    entry_backlog[1] += sum(size for _, _, size in segment)
                    added[connector] = new_keys
                self._append_tail(
                    db, now, connector, lines, source=source, messages=b"".join(segment_bodies) or None
                )
            last = db.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
            self._after_commit.append(lambda: known.remember(added, last))
            if dead:
                db.executemany(_INSERT_DEAD, dead)
                for row in dead:
                    backlog[row[0]][2] += 1
            if backlog:
                db.executemany(_BUMP_BACKLOG, [(c, *e) for c, e in backlog.items()])
            for (connector, event_type, fate), n in received.fates.items():
                counts[(connector, event_type, RECEIVED)] += n
                counts[(connector, event_type, _FATE_COUNTER.get(fate, NOT_SELECTED))] += n
            self._bump(db, counts)
        return CommitResult(
            received=received.items,
            queued=queued,
            duplicates=duplicates,
            filtered=received.items - queued - duplicates - len(dead),
            dead_lettered=len(dead),
            duplicates_by_type=duplicate_types or None,
        )

    # -------------------------------------------------------------------------------------- delivery

    def _segment(self, db: sqlite3.Connection, seq: int, connector: str) -> Segment | None:
        """A waiting segment of this connector, parsed, from a small cache."""
        cached = self._segments.get(seq)
        if cached is not None:
            return cached if cached.connector == connector else None
        row = db.execute(
            "SELECT enqueued_at, ids, bodies FROM outbox"
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

    def lease(
        self,
        connector: str,
        *,
        max_messages: int,
        max_bytes: int,
        lease_seconds: float,
        now: float | None = None,
    ) -> list[OutboxRow]:
        """Take the connector's next due messages, in queue order, for `lease_seconds`: at most
        `max_messages` and, together, at most `max_bytes` of message bodies. The first message is returned
        even when it alone is larger than `max_bytes`, so that the caller can dead-letter it.

        Leases are kept by this Store object (one engine per home leases; its death ends them all)."""
        now = time.time() if now is None else now
        rows: list[OutboxRow] = []
        budget = [max(1, max_messages), max_bytes]  # what is left to take: messages, bytes
        # A console's store could not record what becomes of the messages.
        self._refuse_if_readonly("take messages to send", _LEASE_KEPT)
        # A lease only reads, on its own connection, so it never waits for a commit (and its fsync) to end.
        # It sees a snapshot: leases and done marks change in memory only once their transaction has
        # committed, under `_lease_lock`, which a lease holds from before its snapshot to its end.
        with self._lease_lock, self._leasing() as db:
            # Walked, not fetched: a long backlog has many segments and a lease usually needs one or two.
            waiting = db.execute(
                "SELECT seq FROM outbox INDEXED BY outbox_waiting"
                " WHERE connector = ? AND finished_at IS NULL ORDER BY seq",
                (connector,),
            )
            for (seq,) in waiting:
                if not self._take(db, connector, seq, now, now + lease_seconds, budget, rows):
                    break
            waiting.close()
        return rows

    @contextmanager
    def _leasing(self) -> Iterator[sqlite3.Connection]:
        """The lease connection in one read transaction; SQLite's failures as StoreUnavailable."""
        with self._failures_as_unavailable("take messages to send", _LEASE_KEPT):
            if self._reader is None:
                self._reader = sqlite3.connect(
                    self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
                )
                self._reader.execute("PRAGMA query_only = ON")
            db = self._reader
            db.execute("BEGIN")
            try:
                yield db
            finally:
                db.execute("COMMIT")

    def _take(
        self, db: sqlite3.Connection, connector: str, seq: int, now: float, until: float, budget: list[int],
        rows: list[OutboxRow],
    ) -> bool:  # fmt: skip
        """Lease the due messages of one segment into `rows` within `budget`; False once it is spent."""
        segment = self._segment(db, seq, connector)
        if segment is None:
            return True
        _, done = self._progress(db, seq)
        retries = {
            item: (attempts, retry_at)
            for item, attempts, retry_at in db.execute(
                "SELECT item, attempts, retry_at FROM outbox_retries WHERE seq = ?", (seq,)
            )
        }
        by_seq = self._leases.setdefault(connector, {})
        leased = by_seq.setdefault(seq, {})
        try:
            start = None if retries else _free_from(done, leased, now)
            if start is not None:
                return self._take_run(segment, start, until, budget, rows, leased)
            return self._take_each(segment, done, retries, now, until, budget, rows, leased)
        finally:
            if not leased:
                del by_seq[seq]

    @staticmethod
    def _take_each(
        segment: Segment, done: int, retries: dict[int, tuple[int, float]], now: float, until: float,
        budget: list[int], rows: list[OutboxRow], leased: dict[int, float],
    ) -> bool:  # fmt: skip
        """`_take` message by message, skipping those done, leased or not due yet."""
        base = segment.seq << segments.ITEM_BITS
        for item in range(len(segment)):
            if done >> item & 1:
                continue
            held = leased.get(item)
            if held is not None and held > now:
                continue
            attempts, retry_at = retries.get(item, (0, 0.0))
            if retry_at > now:
                continue
            size = segment.sizes[item]
            if rows and size > budget[1]:
                return False
            rows.append(
                OutboxRow(
                    base | item, segment.ids[item], segment.types[item], segment.body(item), size, attempts,
                    segment.enqueued_at,
                )
            )  # fmt: skip
            leased[item] = until
            budget[0] -= 1
            budget[1] -= size
            if budget[0] <= 0 or budget[1] <= 0:
                return False
        return True

    @staticmethod
    def _take_run(
        segment: Segment, start: int, until: float, budget: list[int], rows: list[OutboxRow],
        leased: dict[int, float],
    ) -> bool:  # fmt: skip
        """`_take` for the usual segment, whose messages from `start` on are all free (see `_free_from`):
        as many of them as the budget allows, in one go. The same messages `_take_each` would pick."""
        starts = segment.offsets
        # Messages [start, end) fit while their bodies end within the byte budget; the first always goes.
        end = min(len(segment), start + budget[0], bisect_right(starts, starts[start] + budget[1]) - 1)
        if end == start and not rows and start < len(segment):
            end = start + 1
        if end == start:
            return start == len(segment)
        base = segment.seq << segments.ITEM_BITS
        bodies, enqueued_at = segment.bodies, segment.enqueued_at
        columns = zip(
            range(start, end), segment.ids[start:end], segment.types[start:end], segment.sizes[start:end],
            strict=True,
        )  # fmt: skip
        rows.extend(
            OutboxRow(base | i, message_id, type_, bodies[starts[i] : starts[i + 1]], size, 0, enqueued_at)
            for i, message_id, type_, size in columns
        )
        leased.update(dict.fromkeys(range(start, end), until))
        budget[0] -= end - start
        budget[1] -= starts[end] - starts[start]
        return end == len(segment) and budget[0] > 0 and budget[1] > 0

    def release_leases(self, connector: str | None = None) -> int:
        """Make every leased message due again (at engine start, or when its delivery is gone)."""
        with self._lease_lock:
            if connector is None:
                gone = list(self._leases.values())
                self._leases.clear()
            else:
                gone = [self._leases.pop(connector, {})]
        return sum(len(held) for by_seq in gone for held in by_seq.values())

    def _forget_ids(self, message_ids: dict[str, list[str]]) -> None:
        if self._known is not None:
            for connector, ids in message_ids.items():
                self._known.forget(connector, ids)

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

    def release(self, connector: str, seqs: Sequence[int], *, retry_at: float = 0.0) -> None:
        """Give leased messages back unsent, due again at `retry_at`, without counting an attempt."""
        if retry_at <= 0:
            with self._lease_lock:
                self._unlease(connector, seqs)
            return
        kept = "The messages stay queued and are sent again."
        with self._write("give back unsent messages", kept, durable=False) as db:
            db.executemany(
                "INSERT INTO outbox_retries (seq, item, retry_at) VALUES (?, ?, ?)"
                " ON CONFLICT (seq, item) DO UPDATE SET retry_at = excluded.retry_at",
                [(*segments.split_address(addr), retry_at) for addr in seqs],
            )
            self._after_commit.append(lambda: self._unlease(connector, seqs))

    def _still_waiting(
        self, db: sqlite3.Connection, connector: str, seqs: Sequence[int]
    ) -> Iterator[tuple[Segment, int, int, Sequence[int]]]:
        """Per segment, those of these messages still waiting (not done): (segment, messages it still has
        waiting, its done marks with these added, their positions). Segments with none are left out."""
        for seq, items in segments.by_segment(seqs).items():
            segment = self._segment(db, seq, connector)
            if segment is None:
                continue
            waiting, marks = self._progress(db, seq)
            marks, new = segments.mark(marks, items, len(segment))
            if new:
                yield segment, len(segment) if waiting is None else waiting, marks, new

    def _finish_items(
        self, db: sqlite3.Connection, connector: str, seqs: Sequence[int], now: float
    ) -> list[tuple[Segment, Sequence[int]]]:
        """Mark these waiting messages done (delivered or dead-lettered): per segment, the positions of
        those that were waiting. A segment whose every message is done drops its bodies and stays as the
        memory of its ids for the duplicate window."""
        finished_now: list[tuple[Segment, Sequence[int]]] = []
        finished = 0
        for segment, waiting, marks, new in self._still_waiting(db, connector, seqs):
            seq = segment.seq
            finished_now.append((segment, new))
            waiting -= len(new)
            if waiting <= 0:
                db.execute("UPDATE outbox SET bodies = NULL, finished_at = ? WHERE seq = ?", (now, seq))
                db.execute("DELETE FROM outbox_progress WHERE seq = ?", (seq,))
                db.execute("DELETE FROM outbox_retries WHERE seq = ?", (seq,))
                self._after_commit.append(partial(self._segments.pop, seq, None))
                finished += len(segment)
            else:
                db.execute(
                    "INSERT INTO outbox_progress (seq, waiting, done) VALUES (?, ?, ?) ON CONFLICT (seq)"
                    " DO UPDATE SET waiting = excluded.waiting, done = excluded.done",
                    (seq, waiting, segments.marks_blob(marks)),
                )
        if finished:
            db.execute(_BUMP_BACKLOG, (connector, 0, 0, 0, finished))
        self._after_commit.append(lambda: self._unlease_done(connector, finished_now))
        return finished_now

    def _unlease_done(self, connector: str, done: list[tuple[Segment, Sequence[int]]]) -> None:
        by_seq = self._leases.get(connector)
        if by_seq:
            for segment, items in done:
                self._unlease_items(by_seq, segment.seq, items)

    @staticmethod
    def _done_columns(done: list[tuple[Segment, Sequence[int]]]) -> tuple[list[str], list[str], int]:
        """(messageIds, event types, total bytes) of the messages `_finish_items` marked done."""
        ids: list[str] = []
        types: list[str] = []
        size = 0
        for segment, items in done:
            if isinstance(items, range):  # a run: slices, not a lookup per message
                ids += segment.ids[items.start : items.stop]
                types += segment.types[items.start : items.stop]
                size += segment.offsets[items.stop] - segment.offsets[items.start]
            else:
                ids += (segment.ids[i] for i in items)
                types += (segment.types[i] for i in items)
                size += sum(segment.sizes[i] for i in items)
        return ids, types, size

    def delivered(self, connector: str, seqs: Sequence[int], *, now: float | None = None) -> int:
        """Segment accepted these messages: they leave the backlog (their messageIds are remembered for the
        duplicate window), are counted and their fate is noted in the tail. Returns how many."""
        now = time.time() if now is None else now
        kept = "The messages stay queued and will be sent again; Segment drops the repeats by messageId."
        with self._write("record delivered messages", kept, durable=False) as db:
            done = self._finish_items(db, connector, seqs, now)
            if not done:
                return 0
            ids, types, size = self._done_columns(done)
            self._bump(db, {(connector, t, DELIVERED): n for t, n in Counter(types).items()})
            db.execute(_BUMP_BACKLOG, (connector, -len(ids), -size, 0, 0))
            self._append_tail(db, now, connector, list(zip(types, ids, strict=True)), fate=TAIL_DELIVERED)
            self._forget_delivered(db, now)
        return len(ids)

    def _forget_delivered(self, db: sqlite3.Connection, now: float) -> None:
        """Drop the oldest remembered deliveries beyond the window's bounds: finished segments, oldest
        first, while over the count bound or older than the time bound (a bounded number per call, so the
        window catches up over the next deliveries without long transactions)."""
        excess = db.execute("SELECT coalesce(sum(remembered), 0) FROM backlog").fetchone()[0]
        excess -= self.delivered_window_max
        cutoff = now - self.delivered_window_days * DAY
        forgotten: dict[str, int] = defaultdict(int)
        forgotten_ids: dict[str, list[str]] = defaultdict(list)
        for _ in range(64):
            row = db.execute(
                "SELECT seq, finished_at FROM outbox INDEXED BY outbox_finished"
                " WHERE finished_at IS NOT NULL ORDER BY finished_at LIMIT 1"
            ).fetchone()
            if row is None or (excess <= 0 and row[1] >= cutoff):
                break
            connector, messages, ids = db.execute(
                "DELETE FROM outbox WHERE seq = ? RETURNING connector, messages, ids", (row[0],)
            ).fetchone()
            forgotten[connector] += messages
            excess -= messages
            forgotten_ids[connector].extend(segments.index_ids(ids))
        if forgotten:
            db.executemany(_BUMP_BACKLOG, [(c, 0, 0, 0, -n) for c, n in forgotten.items()])
            self._after_commit.append(lambda: self._forget_ids(forgotten_ids))

    def retry_later(
        self,
        connector: str,
        seqs: Sequence[int],
        *,
        retry_at: float,
        error: str,
        count_attempt: bool = True,
    ) -> None:
        """A send failed in a way worth retrying: the messages are due again at `retry_at`.
        `count_attempt=False` for a wait Segment asked for (Retry-After), which is not held against them."""
        add = 1 if count_attempt else 0
        kept = "The messages stay queued and are sent again."
        with self._write("schedule a retry", kept, durable=False) as db:
            counts: dict[tuple[str, str, str], int] = defaultdict(int)
            rows = []
            for segment, _, _, new in self._still_waiting(db, connector, seqs):
                for item in new:
                    rows.append((segment.seq, item, add, retry_at, error))
                    counts[(connector, segment.types[item], RETRIED)] += 1
            db.executemany(
                _INSERT_RETRY
                + " ON CONFLICT (seq, item) DO UPDATE SET attempts = attempts + excluded.attempts,"
                " retry_at = excluded.retry_at, last_error = excluded.last_error",
                rows,
            )
            self._bump(db, counts)
            self._after_commit.append(lambda: self._unlease(connector, seqs))

    def dead_letter(
        self, connector: str, seqs: Sequence[int], *, reason: str, now: float | None = None
    ) -> int:
        """Move these outbox messages to the dead letters with `reason`; returns how many were moved."""
        now = time.time() if now is None else now
        with self._write("move messages to the dead letters", "The messages stay queued.") as db:
            return self._bury(db, connector, list(seqs), reason, now, expired=False)

    def _bury(
        self,
        db: sqlite3.Connection,
        connector: str,
        seqs: list[int],
        reason: str,
        now: float,
        *,
        expired: bool,
    ) -> int:
        attempts = {
            (seq, item): n
            for seq in segments.by_segment(seqs)
            for item, n in db.execute("SELECT item, attempts FROM outbox_retries WHERE seq = ?", (seq,))
        }
        removed = self._finish_items(db, connector, seqs, now)
        if not removed:
            return 0
        letters = [
            (connector, segment.ids[item], segment.types[item], reason, now,
             attempts.get((segment.seq, item), 0), None, segment.body(item))
            for segment, items in removed
            for item in items
        ]  # fmt: skip
        db.executemany(_INSERT_DEAD, letters)
        ids, types, size = self._done_columns(removed)
        counts = {(connector, t, DEAD_LETTERED): n for t, n in Counter(types).items()}
        if expired:
            counts.update({(connector, t, EXPIRED): n for t, n in Counter(types).items()})
        self._bump(db, counts)
        db.execute(_BUMP_BACKLOG, (connector, -len(ids), -size, len(ids), 0))
        lines = list(zip(types, ids, strict=True))
        self._append_tail(db, now, connector, lines, fate=TAIL_DEAD_LETTER, reason=reason)
        # Not remembered any more: the same event sent again is queued again.
        self._after_commit.append(lambda: self._forget_ids({connector: ids}))
        return len(ids)

    def expire(
        self, connector: str, *, older_than: float, now: float | None = None, limit: int | None = None
    ) -> int:
        """Move the connector's messages queued before `older_than` (and not in flight) to the dead letters
        with reason "expired: undeliverable for N days"; never more than `limit` in one call, if given.
        Walks the outbox from its oldest segment and stops at the first younger one, a few hundred messages
        per transaction. Returns how many were moved."""
        now = time.time() if now is None else now
        reason = f"expired: undeliverable for {max(0.0, (now - older_than) / DAY):g} days"
        moved = 0
        kept = "The messages stay queued; expiry is tried again later."
        doing = "move expired messages to the dead letters"
        no_leases: dict[int, float] = {}
        after = 0
        while limit is None or moved < limit:
            room = _CHUNK if limit is None else min(_CHUNK, limit - moved)
            # No lease may take a message while it is being found expired (locks in their usual order).
            with self._lock, self._lease_lock, self._write(doing, kept) as db:
                leased = self._leases.get(connector, {})
                row = db.execute(
                    "SELECT seq, enqueued_at FROM outbox INDEXED BY outbox_waiting"
                    " WHERE connector = ? AND finished_at IS NULL AND seq > ? ORDER BY seq LIMIT 1",
                    (connector, after),
                ).fetchone()
                if row is None or row[1] >= older_than:
                    break  # segments are queued in time order: the rest are younger
                seq = row[0]
                segment = self._segment(db, seq, connector)
                _, marks = self._progress(db, seq)
                due = []
                held_here = leased.get(seq, no_leases)
                for item in range(len(segment) if segment else 0):
                    addr = seq << segments.ITEM_BITS | item
                    held = held_here.get(item)
                    if marks >> item & 1 or (held is not None and held > now):
                        continue
                    due.append(addr)
                    if len(due) >= room:
                        break
                if len(due) < room:
                    after = seq  # nothing more to take from this one
                if due:
                    moved += self._bury(db, connector, due, reason, now, expired=True)
        return moved

    def backlog(self, connector: str) -> Backlog:
        """How many messages (and bytes) wait in the connector's outbox, since when, and its dead letters."""
        row = self._read(
            "SELECT messages, bytes, dead_letters FROM backlog WHERE connector = ?", (connector,)
        )
        oldest = self._read(
            "SELECT enqueued_at FROM outbox INDEXED BY outbox_waiting"
            " WHERE connector = ? AND finished_at IS NULL ORDER BY seq LIMIT 1",
            (connector,),
        )
        messages, size, dead = row[0] if row else (0, 0, 0)
        return Backlog(messages, size, oldest[0][0] if oldest and messages else None, dead)

    # ----------------------------------------------------------------------------------------- states

    def set_state(self, connector: str, state: ConnectorState) -> None:
        """Record a connector's delivery state for every reader."""
        kept = "The connector keeps running; only its displayed state is stale."
        with self._write("record a connector's state", kept, durable=False) as db:
            db.execute(
                "INSERT INTO connector_states (connector, state, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (connector) DO UPDATE SET state = excluded.state,"
                " updated_at = excluded.updated_at",
                (connector, state.to_json(), time.time()),
            )

    def states(self) -> dict[str, ConnectorState]:
        """Every connector's last recorded state."""
        rows = self._read("SELECT connector, state FROM connector_states ORDER BY connector")
        return {name: ConnectorState.from_json(text) for name, text in rows}

    def forget_state(self, connector: str) -> None:
        """Remove a connector's recorded state (the connector was removed)."""
        with self._write("remove a connector's state", "Nothing was changed.") as db:
            db.execute("DELETE FROM connector_states WHERE connector = ?", (connector,))

    # --------------------------------------------------------------------------------------- counters

    def counters(self, connector: str | None = None) -> dict[str, dict[str, dict[str, int]]]:
        """Counters as {connector: {event type: {name: n}}}, for one connector or all."""
        if connector is None:
            rows = self._read("SELECT connector, event_type, name, n FROM counters")
        else:
            rows = self._read(
                "SELECT connector, event_type, name, n FROM counters WHERE connector = ?", (connector,)
            )
        out: dict[str, dict[str, dict[str, int]]] = {}
        for name, event_type, counter, n in rows:
            out.setdefault(name, {}).setdefault(event_type, {})[counter] = n
        return out

    def counter_totals(self, connector: str | None = None) -> dict[str, int]:
        """Counters summed over event types: {name: n}, for one connector or all."""
        if connector is None:
            rows = self._read("SELECT name, sum(n) FROM counters GROUP BY name")
        else:
            rows = self._read(
                "SELECT name, sum(n) FROM counters WHERE connector = ? GROUP BY name", (connector,)
            )
        return {name: int(n) for name, n in rows}

    # ------------------------------------------------------------------------------------------- tail

    def tail(
        self, *, after: int = 0, limit: int = 1000, connector: str | None = None, messages: bool = True
    ) -> list[TailRow]:
        """Tail lines with an id (`seq`) greater than `after`, oldest first: about `limit` of them (lines
        stored together come together). Poll with the last seq seen; only about the last `tail_keep` lines
        are kept. `messages=False` leaves the Segment messages out (`message` None): a live view that
        shows one on demand reads far less."""
        columns = _TAIL_COLUMNS if messages else _TAIL_COLUMNS.replace("messages", "NULL")
        sql = f"SELECT {columns} FROM tail WHERE seq + lines > ?"
        params: list = [after + 1]
        if connector is not None:
            sql += " AND connector = ?"
            params.append(connector)
        out: list[TailRow] = []
        with self._reading() as db:
            # The row holding line `after + 1` starts at or before it: seek there by the primary key.
            start = db.execute(
                "SELECT coalesce(max(seq), 0) FROM tail WHERE seq <= ?", (after + 1,)
            ).fetchone()[0]
            cursor = db.execute(sql + " AND seq >= ? ORDER BY seq", (*params, start))
            for row in cursor:
                out.extend(line for line in _tail_lines(row) if line.seq > after)
                if len(out) >= limit:
                    break
            cursor.close()
        return out

    def tail_last_seq(self) -> int:
        """The newest tail line's id (0 when empty): a reader that wants only what comes next starts here."""
        return self._read("SELECT coalesce(max(seq + lines) - 1, 0) FROM tail")[0][0]

    # ----------------------------------------------------------------------------------- dead letters

    def dead_letters(
        self, connector: str | None = None, *, limit: int = 100, before: int | None = None
    ) -> list[DeadLetter]:
        """Dead letters, newest first, at most `limit`; page with `before` = the last id seen."""
        sql = f"SELECT {_DEAD_COLUMNS} FROM dead_letters WHERE id < ?"
        params: list = [before if before is not None else 2**63 - 1]
        if connector is not None:
            sql += " AND connector = ?"
            params.append(connector)
        rows = self._read(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [DeadLetter(*r) for r in rows]

    def _dead_letter_pages(self, connector: str | None, ids: Iterable[int] | None) -> Iterator[list[tuple]]:
        """Dead letter rows in id order, a few hundred at a time (never the whole table in memory)."""
        wanted = sorted(set(ids)) if ids is not None else None
        after = 0
        while True:
            if wanted is not None:
                chunk, wanted = wanted[:_CHUNK], wanted[_CHUNK:]
                if not chunk:
                    return
                sql = f"SELECT {_DEAD_COLUMNS} FROM dead_letters WHERE id IN ({_marks(len(chunk))})"
                params: list = list(chunk)
            else:
                sql = f"SELECT {_DEAD_COLUMNS} FROM dead_letters WHERE id > ?"
                params = [after]
            if connector is not None:
                sql += " AND connector = ?"
                params.append(connector)
            rows = self._read(sql + " ORDER BY id LIMIT ?", (*params, _CHUNK))
            if wanted is None:
                if not rows:
                    return
                after = rows[-1][0]
            yield rows

    def requeue(
        self, connector: str | None = None, ids: Sequence[int] | None = None, *, now: float | None = None
    ) -> int:
        """Put dead letters back into the outbox (attempts reset, queued now): those with these `ids`, or
        else those of `connector`, or else all. Dead letters without a Segment message (rejected while
        mapping) cannot be sent and stay. Returns how many were requeued."""
        now = time.time() if now is None else now
        moved = 0
        for rows in self._dead_letter_pages(connector, ids):
            letters = [DeadLetter(*r) for r in rows if r[8] is not None and r[2] is not None]
            if letters:
                with self._write("requeue dead letters", "The dead letters stay where they were.") as db:
                    moved += self._unbury(db, letters, now)
        return moved

    def _waiting_ids(self, db: sqlite3.Connection, connector: str) -> set[str]:
        """The messageIds waiting in a connector's outbox (a walk of its whole backlog: for requeues)."""
        waiting: set[str] = set()
        for seq, blob in db.execute(
            "SELECT seq, ids FROM outbox INDEXED BY outbox_waiting"
            " WHERE connector = ? AND finished_at IS NULL",
            (connector,),
        ):
            _, marks = self._progress(db, seq)
            waiting.update(m for i, m in enumerate(segments.index_ids(blob)) if not marks >> i & 1)
        return waiting

    def _unbury(self, db: sqlite3.Connection, letters: list[DeadLetter], now: float) -> int:
        backlog: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        done: dict[str, list[tuple]] = defaultdict(list)
        fresh: dict[str, tuple[list, list[bytes]]] = defaultdict(lambda: ([], []))
        waiting: dict[str, set[str]] = {}
        for d in letters:
            if db.execute("DELETE FROM dead_letters WHERE id = ?", (d.id,)).rowcount == 0:
                continue  # requeued meanwhile by someone else
            entry = backlog[d.connector]
            entry[2] -= 1
            counts[(d.connector, d.event_type, REQUEUED)] += 1
            done[d.connector].append((d.message_id, d.event_type))
            if d.connector not in waiting:
                waiting[d.connector] = self._waiting_ids(db, d.connector)
            if d.message_id in waiting[d.connector]:
                continue  # the same message is queued already (a later duplicate): it is sent once
            waiting[d.connector].add(d.message_id)
            # Remembered as delivered or not: it is sent again all the same, as asked.
            entries, bodies = fresh[d.connector]
            entries.append((d.message_id, d.event_type, len(d.message)))
            bodies.append(d.message)
            entry[0] += 1
            entry[1] += len(d.message)
        for name, (entries, bodies) in fresh.items():
            self._add_segment(db, name, now, entries, bodies)
        if backlog:
            db.executemany(_BUMP_BACKLOG, [(c, *e) for c, e in backlog.items()])
        self._bump(db, counts)
        for name, rows in done.items():
            self._append_updates(db, now, name, QUEUED, REQUEUED_REASON, rows)
        return sum(len(rows) for rows in done.values())

    def export_dead_letters(
        self, path: Path | str, connector: str | None = None, ids: Iterable[int] | None = None
    ) -> int:
        """Write dead letters as JSON lines (one object each: id, connector, message_id, event_type, reason,
        at (ISO-8601), attempts, event, message) to `path`, mode 0600; returns how many were written."""
        fd = os.open(Path(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
        os.fchmod(fd, PRIVATE_FILE_MODE)  # a file that existed keeps its old mode otherwise
        written = 0
        with os.fdopen(fd, "wb") as out:
            for rows in self._dead_letter_pages(connector, ids):
                for r in rows:
                    d = DeadLetter(*r)
                    record = {
                        "id": d.id,
                        "connector": d.connector,
                        "message_id": d.message_id,
                        "event_type": d.event_type,
                        "reason": d.reason,
                        "at": _iso(d.at),
                        "attempts": d.attempts,
                        "event": None if d.event is None else orjson.Fragment(d.event),
                        "message": None if d.message is None else orjson.Fragment(d.message),
                    }
                    out.write(orjson.dumps(record) + b"\n")
                    written += 1
            out.flush()
            os.fsync(out.fileno())
        return written
