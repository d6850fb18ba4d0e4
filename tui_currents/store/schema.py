"""The store file's schema, its upgrade from older versions, settings and the SQL shared by its parts."""

from __future__ import annotations

import sqlite3
from contextlib import suppress
from dataclasses import dataclass

from tui_currents import segments

DEFAULT_TAIL_KEEP = 20_000
DEFAULT_DELIVERED_WINDOW_DAYS = 7.0
DEFAULT_DELIVERED_WINDOW_MAX = 250_000
BUSY_TIMEOUT_SECONDS = 10.0
PAGE_SIZE = 16_384  # larger pages make each b-tree insert cheaper for rows of about 1 KB
CHUNK = 500  # ids per IN (...) list and rows per maintenance transaction


# Small tables beside the outbox, written by consoles and the engine's side tasks through
# side_connection.connect, which creates them (and only them) in a file no store has set up yet.
SIDE_TABLES = """CREATE TABLE IF NOT EXISTS engine_commands (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    args TEXT NOT NULL,
    taken_at REAL
);

CREATE TABLE IF NOT EXISTS engine_presence (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pid INTEGER NOT NULL,
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    receiver TEXT,
    demo INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS receiver_problems (
    workspace TEXT PRIMARY KEY,
    problem TEXT NOT NULL,
    since REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS webhook_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last INTEGER
);
"""

# 3 only added tables (the alert tables, and SIDE_TABLES) to SCHEMA: a file of version 2 gets them by running
# SCHEMA again (every statement is IF NOT EXISTS). 4 added `tail.segments`: a received-events row names the
# outbox segments holding its queued messages' bodies instead of holding a copy in `messages` (each body is
# written once); rows written before keep their copy in `messages`. 4 also added `counter_log` (see
# store/counter_log.py). 5 added `forgotten_ids`, the ids leaving the duplicate window (see forgotten_log.py).
# 6 added `outbox_bodies`: a segment's bodies in a row of their own, so that marking the segment finished
# (`outbox.finished_at`) rewrites a small row rather than every page of its bodies (SQLite writes a changed
# row whole); segments written before keep theirs in `outbox.bodies`, read where they are.
SCHEMA_VERSION = 6
SCHEMA = (
    """
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

CREATE TABLE IF NOT EXISTS outbox_bodies (
    seq INTEGER PRIMARY KEY,
    bodies BLOB NOT NULL
);

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

CREATE TABLE IF NOT EXISTS forgotten_ids (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    after_outbox INTEGER NOT NULL,
    connector TEXT NOT NULL,
    ids BLOB NOT NULL
);

CREATE TABLE IF NOT EXISTS counter_log (
    id INTEGER PRIMARY KEY,
    counts BLOB NOT NULL
);

CREATE TABLE IF NOT EXISTS tail (
    seq INTEGER PRIMARY KEY,
    lines INTEGER NOT NULL,
    at REAL NOT NULL,
    connector TEXT NOT NULL,
    source TEXT,
    fate TEXT,
    reason TEXT,
    entries BLOB NOT NULL,
    messages BLOB,
    segments TEXT
);

CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    connector TEXT NOT NULL,
    kind TEXT NOT NULL,
    phase TEXT NOT NULL,
    since REAL,
    recipient TEXT,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    email TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    sent_at REAL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS alerts_pending ON alerts (id) WHERE email = 'pending';

CREATE TABLE IF NOT EXISTS alert_state (
    connector TEXT NOT NULL,
    kind TEXT NOT NULL,
    memory TEXT NOT NULL,
    PRIMARY KEY (connector, kind)
) WITHOUT ROWID;
"""
    + SIDE_TABLES
)


INSERT_OUTBOX = "INSERT INTO outbox (connector, enqueued_at, messages, ids) VALUES (?, ?, ?, ?)"
INSERT_BODIES = "INSERT INTO outbox_bodies (seq, bodies) VALUES (?, ?)"
# A segment's bodies: in their own row, or, for a segment written before schema 6, in its outbox row.
SEGMENT_BODIES = "coalesce((SELECT b.bodies FROM outbox_bodies b WHERE b.seq = outbox.seq), outbox.bodies)"
INSERT_TAIL = (
    "INSERT INTO tail (seq, lines, at, connector, source, fate, reason, entries, segments)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_DEAD = (
    "INSERT INTO dead_letters (connector, message_id, event_type, reason, at, attempts, event, message)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
BUMP_COUNTER = (
    "INSERT INTO counters (connector, event_type, name, n) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (connector, event_type, name) DO UPDATE SET n = n + excluded.n"
)


@dataclass(slots=True)
class BacklogChange:
    """A change to one connector's row of the backlog summary table (see `BUMP_BACKLOG`)."""

    messages: int = 0
    bytes: int = 0
    dead_letters: int = 0
    remembered: int = 0  # ids of delivered messages kept for the duplicate window

    def row(self, connector: str) -> tuple[str, int, int, int, int]:
        return (connector, self.messages, self.bytes, self.dead_letters, self.remembered)


BUMP_BACKLOG = (
    "INSERT INTO backlog (connector, messages, bytes, dead_letters, remembered) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (connector) DO UPDATE SET messages = messages + excluded.messages,"
    " bytes = bytes + excluded.bytes, dead_letters = dead_letters + excluded.dead_letters,"
    " remembered = remembered + excluded.remembered"
)
INSERT_RETRY = "INSERT INTO outbox_retries (seq, item, attempts, retry_at, last_error) VALUES (?, ?, ?, ?, ?)"
TAIL_COLUMNS = "seq, lines, at, connector, source, fate, reason, entries, messages, segments"
DEAD_COLUMNS = "id, connector, message_id, event_type, reason, at, attempts, event, message"
LEASE_KEPT = "The messages stay queued and are sent later."
SEGMENTS_CACHED = 8  # parsed segments kept for the next lease or delivery (a lease reads whole segments)


def create_or_upgrade(db: sqlite3.Connection) -> None:
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
        if not has_tail_segments(db):  # a tail table from before version 4
            db.execute("ALTER TABLE tail ADD COLUMN segments TEXT")
        if version == 1:
            _copy_v1_outbox(db)
            db.execute("DROP TABLE outbox_v1")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        with suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise


def has_outbox_bodies(db: sqlite3.Connection) -> bool:
    """Whether the file has the `outbox_bodies` table (version 6 on; a console may read an older file)."""
    found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox_bodies'")
    return found.fetchone() is not None


def has_tail_segments(db: sqlite3.Connection) -> bool:
    """Whether the tail table has the `segments` column (version 4 on; a console may read an older file)."""
    return any(row[1] == "segments" for row in db.execute("PRAGMA table_info(tail)"))


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
                seq = db.execute(INSERT_OUTBOX, (connector, chunk[0][4], len(chunk), index)).lastrowid
                db.execute(INSERT_BODIES, (seq, b"".join(r[2] for r in chunk)))
                db.executemany(
                    INSERT_RETRY,
                    [(seq, i, r[5], r[6], r[7]) for i, r in enumerate(chunk) if r[5] or r[6]],
                )
