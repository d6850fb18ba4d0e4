"""The store: one SQLite file (WAL) holding the outbox, dead letters, counters, connector states and the tail.

It is the only state shared between the parts of the program and between processes: the engine writes,
the TUI and `status` read, from the same process or another one.

Choices worth knowing:

- One transaction per received batch (`commit`): outbox rows, dead letters, counters and tail rows land
  together or not at all. A source acknowledges Braze only after `commit` returned.
- Duplicates collapse on (connector, messageId) through one unique index on the outbox. A delivered
  message is not deleted at once: its row drops its body and stays as a memory of the messageId, so a
  duplicate that Braze sends after delivery is counted and not sent again. Those memories are kept for
  `delivered_window_days` (7 by default: Braze retries for about 5 days at most and keeps queued events
  for 7) and at most `delivered_window_max` of them for the whole store (250,000 by default), whichever
  bound is reached first; the oldest go first. The count bound is there because the index is keyed by
  random ids: the bigger it is, the more of it each commit rewrites (at 300,000 remembered ids enqueueing
  runs at about half the speed of an empty store). A duplicate arriving later than the window is sent
  again under the same messageId, which Segment itself drops within its ~24-hour deduplication window.
- Leasing walks a connector's waiting messages in seq order through a partial index that holds only
  undelivered rows, so it reads the rows it returns plus the few in flight or backing off ahead of them; it
  never sorts or loads the backlog. A lease is a time stamp on the row (`leased_until`): if the program
  dies the lease runs out, and `release_leases()` at start makes everything due again at once.
- Backlog size per connector is kept in a small summary table updated in the same transactions, so
  `backlog()` costs the same with ten messages queued or ten million.
- The tail is append-only. Received events are one row each (with the Segment message). A later change of
  fate (delivered, dead letter, queued again) is appended as an update row naming the messages it applies
  to: one stored row per event type per batch, which `tail()` expands into one `TailRow(update=True)` per
  message. So a reader polling `tail(after=seq)` sees fate changes as they happen, and delivering a batch
  of 2,500 costs a handful of small rows, not 2,500. Only the last `tail_keep` stored rows are kept (pruned
  by seq range every few thousand rows).
- Disk full, read-only files, I/O errors and a lock held too long raise `StoreUnavailable` with a message a
  person can act on; the transaction is rolled back and the store works again once the cause is gone.
- One connection per Store, shared by threads behind a lock; readers in other processes open their own
  (`readonly=True`). Only the engine (one per home, by its lock file) leases and delivers.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from tui_currents.paths import PRIVATE_FILE_MODE, touch_private

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

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    connector TEXT NOT NULL,
    message_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    body BLOB,
    bytes INTEGER NOT NULL,
    enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    retry_at REAL NOT NULL DEFAULT 0,
    leased_until REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    delivered_at REAL,
    UNIQUE (connector, message_id)
);
CREATE INDEX IF NOT EXISTS outbox_waiting ON outbox (connector) WHERE delivered_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_delivered ON outbox (delivered_at) WHERE delivered_at IS NOT NULL;

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
    at REAL NOT NULL,
    connector TEXT NOT NULL,
    event_type TEXT NOT NULL,
    segment_event TEXT,
    user TEXT,
    fate TEXT NOT NULL,
    reason TEXT,
    message_id TEXT,
    source TEXT,
    message BLOB,
    message_ids BLOB
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


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One leased message: `body` is the exact Segment message JSON to send."""

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


def _json_default(value: object) -> object:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _encode_record(raw: object) -> bytes:
    try:
        return orjson.dumps(raw, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        pass
    try:
        return orjson.dumps(repr(raw))
    except RecursionError:  # nested deeper than repr can go: keep what can be told of it
        return orjson.dumps(f"<a {type(raw).__name__} nested too deeply to keep>")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _chunks(items: Sequence, size: int = _CHUNK) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(n: int) -> str:
    return ",".join("?" * n)


_INSERT_OUTBOX = (
    "INSERT OR IGNORE INTO outbox (connector, message_id, event_type, body, bytes, enqueued_at)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_INSERT_TAIL = (
    "INSERT INTO tail (at, connector, event_type, segment_event, user, fate, reason, message_id, source,"
    " message, message_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
_TAIL_COLUMNS = (
    "seq, at, connector, event_type, segment_event, user, fate, reason, message_id, source, message,"
    " message_ids"
)
_DEAD_COLUMNS = "id, connector, message_id, event_type, reason, at, attempts, event, message"


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
        self._lock = threading.RLock()
        self._synchronous = sync
        self._tail_since_prune = self.tail_keep  # prune at the first write: a previous run may have left more
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
                self._db.execute("PRAGMA cache_size = -32000")  # 32 MB
                if self._db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    self._db.executescript(
                        f"BEGIN IMMEDIATE;{SCHEMA}PRAGMA user_version = {SCHEMA_VERSION};COMMIT;"
                    )
        except sqlite3.Error as exc:
            err = _unavailable(exc, self.path, "open the store", "Nothing was changed.", busy_timeout)
            if err is None:
                raise
            raise err from exc

    def __repr__(self) -> str:
        return f"<Store {self.path}{' read-only' if self.readonly else ''}>"

    def close(self) -> None:
        """Close the connection (after an optimize, for the next run's query plans)."""
        with self._lock:
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

        `durable=False` is for bookkeeping whose loss on a power cut costs only a harmless resend (leases,
        delivered marks, retry times, states): it skips the fsync that FULL would do for this commit. The
        next durable commit's fsync of the log covers it anyway, and a crash of the program alone loses
        nothing either way (WAL)."""
        with self._lock:
            db = self._db
            relaxed = not durable and self._synchronous != "NORMAL"
            try:
                if relaxed:
                    db.execute("PRAGMA synchronous = NORMAL")
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except BaseException as exc:
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

    def _read(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                err = _unavailable(
                    exc, self.path, "read the store", "Nothing was changed.", self.busy_timeout
                )
                if err is None:
                    raise
                raise err from exc

    @staticmethod
    def _bump(db: sqlite3.Connection, counts: dict[tuple[str, str, str], int]) -> None:
        rows = [(*key, n) for key, n in counts.items() if n]
        if rows:
            db.executemany(_BUMP_COUNTER, rows)

    def _append_updates(
        self, db: sqlite3.Connection, now: float, connector: str, fate: str, reason: str | None, rows: list
    ) -> None:
        """Update rows in the tail for (message_id, event_type, ...) rows: one stored row per event type."""
        by_type: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            by_type[row[1]].append(row[0])
        db.executemany(
            _INSERT_TAIL,
            [
                (now, connector, event_type, None, None, fate, reason, None, None, None, orjson.dumps(ids))
                for event_type, ids in by_type.items()
            ],
        )
        self._appended_tail(db, len(by_type))

    def _appended_tail(self, db: sqlite3.Connection, rows: int) -> None:
        """Keep the tail to its last `tail_keep` rows, pruning by seq range every tenth of that."""
        self._tail_since_prune += rows
        if self._tail_since_prune < max(100, self.tail_keep // 10):
            return
        self._tail_since_prune = 0
        last = db.execute("SELECT max(seq) FROM tail").fetchone()[0]
        if last is not None:
            db.execute("DELETE FROM tail WHERE seq <= ?", (last - self.tail_keep,))

    # ----------------------------------------------------------------------------------------- commit

    def commit(
        self, items: Sequence[tuple[str, Outcome]], *, source: str, now: float | None = None
    ) -> CommitResult:
        """Store one received batch in ONE transaction: outbox rows for queued events (a messageId already
        queued or recently delivered for that connector collapses into a duplicate), dead letters for
        rejected ones, counters and tail rows for all. Raises StoreUnavailable (nothing kept) when the
        disk is full or failing; the caller must then not acknowledge the batch."""
        now = time.time() if now is None else now
        by_fate: dict[tuple[str, str, str], int] = defaultdict(int)  # (connector, event type, fate)
        candidates: list[tuple] = []  # outbox rows to insert: the first of each (connector, messageId)
        tail: list[list] = []
        queued_at: list[int] = []  # index in `tail` of each candidate
        repeats: list[int] = []  # index in `tail` of messages repeated within this batch
        seen: set[tuple[str, str]] = set()
        dead: list[tuple] = []
        for connector, outcome in items:
            event = outcome.event
            event_type = event.event_type or ""
            fate = outcome.fate
            by_fate[(connector, event_type, fate)] += 1
            event_id = event.id
            if event_id is not None and type(event_id) is not str:
                event_id = str(event_id)
            user = event.external_user_id or event.user_id
            if user is not None and type(user) is not str:
                user = str(user)
            if fate == "queued":
                message_id = outcome.message["messageId"] if outcome.message else event_id
                body = outcome.encoded if outcome.encoded is not None else orjson.dumps(outcome.message)
                key = (connector, message_id)
                if key in seen:
                    repeats.append(len(tail))
                else:
                    seen.add(key)
                    queued_at.append(len(tail))
                    candidates.append((connector, message_id, event_type, body, len(body), now))
                tail.append(
                    [now, connector, event_type, outcome.segment_event, user, "queued", None, message_id,
                     source, body, None]
                )  # fmt: skip
                continue
            if fate == "rejected":
                dead.append(
                    (connector, event_id, event_type, outcome.reason or "rejected", now, 0,
                     _encode_record(event.raw), None)
                )  # fmt: skip
            tail.append(
                [now, connector, event_type, outcome.segment_event, user, str(fate), outcome.reason, event_id,
                 source, None, None]
            )  # fmt: skip

        kept = (
            "Nothing from this batch was saved, so it was not acknowledged and its sender can send it again."
        )
        with self._write("save received events", kept) as db:
            duplicates = list(repeats)
            backlog: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
            if candidates:
                before = db.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
                inserted = db.executemany(_INSERT_OUTBOX, candidates).rowcount
                if inserted == len(candidates):
                    for row in candidates:
                        entry = backlog[row[0]]
                        entry[0] += 1
                        entry[1] += row[4]
                else:  # some were queued or delivered before: the rows this transaction added tell which
                    new = set(db.execute("SELECT connector, message_id FROM outbox WHERE seq > ?", (before,)))
                    for row, at in zip(candidates, queued_at, strict=True):
                        if (row[0], row[1]) in new:
                            entry = backlog[row[0]]
                            entry[0] += 1
                            entry[1] += row[4]
                        else:
                            duplicates.append(at)
            if dead:
                db.executemany(_INSERT_DEAD, dead)
                for row in dead:
                    backlog[row[0]][2] += 1
            if backlog:
                db.executemany(_BUMP_BACKLOG, [(c, *e) for c, e in backlog.items()])
            counts: dict[tuple[str, str, str], int] = defaultdict(int)
            for (connector, event_type, fate), n in by_fate.items():
                counts[(connector, event_type, RECEIVED)] += n
                counts[(connector, event_type, _FATE_COUNTER.get(fate, NOT_SELECTED))] += n
            for at in duplicates:
                row = tail[at]
                row[5], row[6], row[9] = TAIL_DUPLICATE, DUPLICATE_REASON, None
                counts[(row[1], row[2], QUEUED)] -= 1
                counts[(row[1], row[2], DUPLICATE)] += 1
            db.executemany(_INSERT_TAIL, tail)
            self._appended_tail(db, len(tail))
            self._bump(db, counts)
        queued = len(candidates) + len(repeats) - len(duplicates)
        return CommitResult(
            received=len(items),
            queued=queued,
            duplicates=len(duplicates),
            filtered=len(items) - queued - len(duplicates) - len(dead),
            dead_lettered=len(dead),
        )

    # -------------------------------------------------------------------------------------- delivery

    def lease(
        self,
        connector: str,
        *,
        max_messages: int,
        max_bytes: int,
        lease_seconds: float,
        now: float | None = None,
    ) -> list[OutboxRow]:
        """Take the connector's next due messages, in seq order, for `lease_seconds`: at most `max_messages`
        and, together, at most `max_bytes` of message bodies. The first message is returned even when it
        alone is larger than `max_bytes`, so that the caller can dead-letter it."""
        now = time.time() if now is None else now
        rows: list[OutboxRow] = []
        total = 0
        kept = "The messages stay queued and are sent later."
        with self._write("take messages to send", kept, durable=False) as db:
            cursor = db.execute(
                "SELECT seq, message_id, event_type, body, bytes, attempts, enqueued_at"
                " FROM outbox INDEXED BY outbox_waiting"
                " WHERE connector = ? AND delivered_at IS NULL AND retry_at <= ? AND leased_until <= ?"
                " ORDER BY seq LIMIT ?",
                (connector, now, now, max(1, max_messages)),
            )
            for row in cursor:
                size = row[4]
                if rows and total + size > max_bytes:
                    break
                rows.append(OutboxRow(*row))
                total += size
                if total >= max_bytes:
                    break
            cursor.close()
            if rows:
                until = now + lease_seconds
                for chunk in _chunks([r.seq for r in rows]):
                    db.execute(
                        f"UPDATE outbox SET leased_until = ? WHERE seq IN ({_marks(len(chunk))})",
                        (until, *chunk),
                    )
        return rows

    def release_leases(self, connector: str | None = None) -> int:
        """Make every leased message due again (at engine start, when nothing can be in flight)."""
        kept = "The messages stay queued; their leases end by themselves."
        with self._write("release leased messages", kept, durable=False) as db:
            if connector is None:
                sql, params = "UPDATE outbox SET leased_until = 0 WHERE leased_until > 0", ()
            else:
                sql = "UPDATE outbox SET leased_until = 0 WHERE connector = ? AND leased_until > 0"
                params = (connector,)
            return db.execute(sql, params).rowcount

    def release(self, connector: str, seqs: Sequence[int], *, retry_at: float = 0.0) -> None:
        """Give leased messages back unsent, due again at `retry_at`, without counting an attempt."""
        kept = "The messages stay queued; their leases end by themselves."
        with self._write("give back unsent messages", kept, durable=False) as db:
            for chunk in _chunks(list(seqs)):
                db.execute(
                    "UPDATE outbox SET leased_until = 0, retry_at = ?"
                    f" WHERE connector = ? AND delivered_at IS NULL AND seq IN ({_marks(len(chunk))})",
                    (retry_at, connector, *chunk),
                )

    def delivered(self, connector: str, seqs: Sequence[int], *, now: float | None = None) -> int:
        """Segment accepted these messages: they leave the backlog (their messageIds are remembered for the
        duplicate window), are counted and their fate is noted in the tail. Returns how many."""
        now = time.time() if now is None else now
        kept = "The messages stay queued and will be sent again; Segment drops the repeats by messageId."
        with self._write("record delivered messages", kept, durable=False) as db:
            done: list[tuple] = []
            for chunk in _chunks(list(seqs)):
                done.extend(
                    db.execute(
                        "UPDATE outbox SET body = NULL, delivered_at = ?, leased_until = 0"
                        f" WHERE connector = ? AND delivered_at IS NULL AND seq IN ({_marks(len(chunk))})"
                        " RETURNING message_id, event_type, bytes",
                        (now, connector, *chunk),
                    ).fetchall()
                )
            if not done:
                return 0
            counts: dict[tuple[str, str, str], int] = defaultdict(int)
            for row in done:
                counts[(connector, row[1], DELIVERED)] += 1
            self._bump(db, counts)
            db.execute(_BUMP_BACKLOG, (connector, -len(done), -sum(r[2] for r in done), 0, len(done)))
            self._append_updates(db, now, connector, TAIL_DELIVERED, None, done)
            self._forget_delivered(db, now, limit=2 * len(done) + 100)
        return len(done)

    def _forget_delivered(self, db: sqlite3.Connection, now: float, *, limit: int) -> None:
        """Drop the oldest remembered deliveries beyond the window's bounds, at most `limit` at a time
        (twice the delivery rate: the window catches up without long transactions)."""
        total = db.execute("SELECT coalesce(sum(remembered), 0) FROM backlog").fetchone()[0]
        excess = total - self.delivered_window_max
        select = "SELECT seq FROM outbox INDEXED BY outbox_delivered WHERE delivered_at IS NOT NULL"
        if excess > 0:  # over the count bound: the oldest go, whatever their age
            where, params = select + " ORDER BY delivered_at LIMIT ?", (min(limit, excess),)
        else:  # within it: only those older than the time bound
            cutoff = now - self.delivered_window_days * DAY
            where, params = select + " AND delivered_at < ? ORDER BY delivered_at LIMIT ?", (cutoff, limit)
        rows = db.execute(f"DELETE FROM outbox WHERE seq IN ({where}) RETURNING connector", params).fetchall()
        if rows:
            per: dict[str, int] = defaultdict(int)
            for (name,) in rows:
                per[name] += 1
            db.executemany(_BUMP_BACKLOG, [(c, 0, 0, 0, -n) for c, n in per.items()])

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
        kept = "The messages stay queued; their leases end by themselves and they are sent again."
        with self._write("schedule a retry", kept, durable=False) as db:
            counts: dict[tuple[str, str, str], int] = defaultdict(int)
            for chunk in _chunks(list(seqs)):
                for (event_type,) in db.execute(
                    "UPDATE outbox SET attempts = attempts + ?, retry_at = ?, leased_until = 0,"
                    " last_error = ? WHERE connector = ? AND delivered_at IS NULL"
                    f" AND seq IN ({_marks(len(chunk))}) RETURNING event_type",
                    (add, retry_at, error, connector, *chunk),
                ):
                    counts[(connector, event_type, RETRIED)] += 1
            self._bump(db, counts)

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
        removed: list[tuple] = []
        for chunk in _chunks(seqs):
            removed.extend(
                db.execute(
                    "DELETE FROM outbox WHERE connector = ? AND delivered_at IS NULL"
                    f" AND seq IN ({_marks(len(chunk))})"
                    " RETURNING message_id, event_type, bytes, attempts, body",
                    (connector, *chunk),
                ).fetchall()
            )
        if not removed:
            return 0
        db.executemany(
            _INSERT_DEAD, [(connector, r[0], r[1], reason, now, r[3], None, r[4]) for r in removed]
        )
        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        for r in removed:
            counts[(connector, r[1], DEAD_LETTERED)] += 1
            if expired:
                counts[(connector, r[1], EXPIRED)] += 1
        self._bump(db, counts)
        db.execute(_BUMP_BACKLOG, (connector, -len(removed), -sum(r[2] for r in removed), len(removed), 0))
        self._append_updates(db, now, connector, TAIL_DEAD_LETTER, reason, removed)
        return len(removed)

    def expire(
        self, connector: str, *, older_than: float, now: float | None = None, limit: int | None = None
    ) -> int:
        """Move the connector's messages queued before `older_than` (and not in flight) to the dead letters
        with reason "expired: undeliverable for N days"; never more than `limit` in one call, if given.
        Walks the outbox from its oldest message and stops at the first younger one, a few hundred
        messages per transaction. Returns how many were moved."""
        now = time.time() if now is None else now
        reason = f"expired: undeliverable for {max(0.0, (now - older_than) / DAY):g} days"
        moved = 0
        after = 0
        kept = "The messages stay queued; expiry is tried again later."
        while limit is None or moved < limit:
            chunk = _CHUNK if limit is None else min(_CHUNK, limit - moved)
            with self._write("move expired messages to the dead letters", kept) as db:
                rows = db.execute(
                    "SELECT seq, enqueued_at, leased_until FROM outbox INDEXED BY outbox_waiting"
                    " WHERE connector = ? AND delivered_at IS NULL AND seq > ? ORDER BY seq LIMIT ?",
                    (connector, after, chunk),
                ).fetchall()
                due: list[int] = []
                done = len(rows) < chunk
                for seq, enqueued_at, leased_until in rows:
                    after = seq
                    if enqueued_at >= older_than:
                        done = True  # messages are queued in time order: the rest are younger
                        break
                    if leased_until <= now:
                        due.append(seq)
                if due:
                    moved += self._bury(db, connector, due, reason, now, expired=True)
            if done:
                break
        return moved

    def backlog(self, connector: str) -> Backlog:
        """How many messages (and bytes) wait in the connector's outbox, since when, and its dead letters."""
        row = self._read(
            "SELECT messages, bytes, dead_letters FROM backlog WHERE connector = ?", (connector,)
        )
        oldest = self._read(
            "SELECT enqueued_at FROM outbox INDEXED BY outbox_waiting"
            " WHERE connector = ? AND delivered_at IS NULL ORDER BY seq LIMIT 1",
            (connector,),
        )
        messages, size, dead = row[0] if row else (0, 0, 0)
        return Backlog(messages, size, oldest[0][0] if oldest else None, dead)

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

    def tail(self, *, after: int = 0, limit: int = 1000, connector: str | None = None) -> list[TailRow]:
        """Tail rows with seq greater than `after`, oldest first, from at most `limit` stored rows (an
        update row naming many messages expands into one TailRow each, all with its seq). Poll with the
        last seq seen; rows older than the last `tail_keep` stored ones are gone."""
        if connector is None:
            rows = self._read(
                f"SELECT {_TAIL_COLUMNS} FROM tail WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
            )
        else:
            rows = self._read(
                f"SELECT {_TAIL_COLUMNS} FROM tail WHERE seq > ? AND connector = ? ORDER BY seq LIMIT ?",
                (after, connector, limit),
            )
        out: list[TailRow] = []
        for (
            seq,
            at,
            name,
            event_type,
            segment_event,
            user,
            fate,
            reason,
            message_id,
            source,
            message,
            ids,
        ) in rows:
            if ids is None:
                out.append(
                    TailRow(seq, at, name, event_type, segment_event, user, fate, reason, message_id, source,
                            False, message)
                )  # fmt: skip
            else:
                out.extend(
                    TailRow(seq, at, name, event_type, None, None, fate, reason, mid, None, True, None)
                    for mid in orjson.loads(ids)
                )
        return out

    def tail_last_seq(self) -> int:
        """The newest tail seq (0 when empty): a reader that wants only what comes next starts here."""
        return self._read("SELECT coalesce(max(seq), 0) FROM tail")[0][0]

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

    def _unbury(self, db: sqlite3.Connection, letters: list[DeadLetter], now: float) -> int:
        backlog: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        done: dict[str, list[tuple]] = defaultdict(list)
        for d in letters:
            if db.execute("DELETE FROM dead_letters WHERE id = ?", (d.id,)).rowcount == 0:
                continue  # requeued meanwhile by someone else
            entry = backlog[d.connector]
            entry[2] -= 1
            counts[(d.connector, d.event_type, REQUEUED)] += 1
            done[d.connector].append((d.message_id, d.event_type))
            old = db.execute(
                "SELECT delivered_at FROM outbox WHERE connector = ? AND message_id = ?",
                (d.connector, d.message_id),
            ).fetchone()
            if old is not None and old[0] is None:
                continue  # the same message is queued already (a later duplicate): it is sent once
            size = len(d.message)
            if old is None:
                db.execute(_INSERT_OUTBOX, (d.connector, d.message_id, d.event_type, d.message, size, now))
            else:  # remembered as delivered: send it again all the same, as asked
                db.execute(
                    "UPDATE outbox SET body = ?, bytes = ?, enqueued_at = ?, attempts = 0, retry_at = 0,"
                    " leased_until = 0, last_error = NULL, delivered_at = NULL"
                    " WHERE connector = ? AND message_id = ?",
                    (d.message, size, now, d.connector, d.message_id),
                )
                entry[3] -= 1
            entry[0] += 1
            entry[1] += size
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
