"""The store: one SQLite file (WAL) holding the outbox, dead letters, counters, connector states and the tail.

It is the only state shared between the parts of the program and between processes: the engine writes,
the TUI and `status` read, from the same process or another one.

Choices worth knowing:

- One transaction per received batch (`commit`): outbox segments, dead letters, counters and tail lines
  land together or not at all. A source acknowledges Braze only after `commit` returned.
- The outbox stores a batch's queued messages of one connector as ONE row, a segment (see segments.py):
  a small index of messageIds, event types and sizes, and beside it, in a row of its own (`outbox_bodies`,
  so that marking the segment done does not write them again), their bodies end to end. Appending a row is far
  cheaper than updating a b-tree per message, which is what a row per message with a unique index on
  random ids costs. Per-message state that differs from "waiting, never tried" lives in small side
  tables: done marks of a partly sent segment (`outbox_progress`) and attempts/retry times
  (`outbox_retries`, written only on failures).
- Leases are kept in memory by the engine's Store (one engine per home, by its lock file): they end when
  it ends, and a message is never leased twice while its lease runs. A lease only reads, on a connection
  of its own, so it never waits for a commit (or another program's write) to end; the in-memory state it
  relies on (leases, done segments) changes only once the transaction behind the change has committed.
- Duplicates collapse on (connector, messageId): the writer keeps the ids each connector has queued or
  recently delivered as 64-bit keys in memory (segments.KnownIds), built from the segments' indexes on first
  use and brought up to date inside the commit's write lock with what other processes did since: the
  segments they committed (an import, a requeue) and the ids they logged as leaving the window
  (dead-lettered, or dropped with their segment, e.g. by the delivery process: `forgotten_log`), read from
  where the last catch-up stopped, in the order they happened. A segment whose messages are all delivered
  drops its bodies (once the tail no longer names it) and stays as the memory of its ids for
  `delivered_window_days` (7 by default: Braze retries for about 5 days at most and keeps queued events for
  7) and at most about `delivered_window_max` remembered ids (250,000 by default), oldest segments first. A
  duplicate arriving later than the window is sent again under the same messageId, which Segment itself
  drops within its ~24-hour deduplication window. Dead-lettered messages are not remembered: the same event
  sent again is queued again.
- Counters are upserted in the commit that changes them; a commit changing very many (a workspace with
  many connectors) logs them as one row instead, folded in every few such commits (`counter_log`).
- Backlog size per connector is kept in a small summary table updated in the same transactions, so
  `backlog()` costs the same with ten messages queued or ten million.
- The tail is append-only, a stored row per commit and connector holding many lines: received events
  or a later change of fate (delivered, dead letter, queued again) of the messages it names. A row of
  received events names the outbox segments holding its queued messages (each body is written once, in
  its segment); a done segment keeps its bodies while a kept tail row names it. Lines are
  numbered without gaps across rows (a row's seq is its first line's number), so a reader polling
  `tail(after=n)` gets exactly the lines after the last one it saw. About the last `tail_keep` lines are
  kept.
- The write-ahead log is copied into the database file by a thread of the writing process shortly after
  commits (`checkpointer`), not inside the commit that passes SQLite's threshold; the log stays bounded.
- Disk full, read-only files, I/O errors and a lock held too long raise `StoreUnavailable` with a message a
  person can act on; the transaction is rolled back and the store works again once the cause is gone.
- One connection per Store for writes and reads, shared by threads behind a lock (and one more for
  leases); readers in other processes open their own (`readonly=True`). Only the engine (one per home,
  by its lock file) leases and delivers.
- A store of the first schema (a row per message) is upgraded in place on opening, keeping every waiting
  message, its attempts, and the ids remembered as delivered.

The package is split by role: `schema` (tables, upgrades, shared SQL), `errors` (SQLite failures in
words), `base` (connection, transactions, in-memory delivery state), `checkpointer` (the log into the
file), `writer` (commits), `reader` (leases), `ledger` (delivered / retry / release / dead-letter / expire
marks), `tail`, `dead_letters`, `observation` (backlog, states, counters), `counter_log`, `forgotten_log`
(ids leaving the duplicate window), `alert_log` (alerts, their email status, the alert rules' memory).
`Store` is all of them together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tui_currents.outbox import (
    ANONYMOUS,
    COUNTER_NAMES,
    DAY,
    DEAD_LETTERED,
    DEAD_LETTERS_DROPPED,
    DEFAULT_DEAD_LETTER_EVENT_BYTES,
    DEFAULT_DEAD_LETTERS_MAX,
    DEFAULT_DEAD_LETTERS_PER_REQUEST,
    DELIVERED,
    DUPLICATE,
    DUPLICATE_REASON,
    EXPIRED,
    NOT_CREATED,
    NOT_FORWARDABLE,
    NOT_SELECTED,
    QUEUED,
    RECEIVED,
    REQUEUED,
    REQUEUED_REASON,
    RETRIED,
    TAIL_DEAD_LETTER,
    TAIL_DELIVERED,
    TAIL_DUPLICATE,
    UNSUPPORTED,
    Backlog,
    CommitResult,
    ConnectorState,
    ConnectorStatus,
    DeadLetter,
    DeadLetterCaps,
    Outbox,
    OutboxRow,
    StoreUnavailable,
    TailRow,
)
from tui_currents.store.alert_log import AlertLog
from tui_currents.store.dead_letter_caps import bounded_event
from tui_currents.store.dead_letters import DeadLetterBox
from tui_currents.store.ledger import Ledger
from tui_currents.store.observation import Observation
from tui_currents.store.schema import (
    BUSY_TIMEOUT_SECONDS,
    DEFAULT_DELIVERED_WINDOW_DAYS,
    DEFAULT_DELIVERED_WINDOW_MAX,
    DEFAULT_TAIL_KEEP,
    SCHEMA_VERSION,
)

__all__ = [
    "ANONYMOUS",
    "BUSY_TIMEOUT_SECONDS",
    "Backlog",
    "COUNTER_NAMES",
    "CommitResult",
    "ConnectorState",
    "ConnectorStatus",
    "DAY",
    "DEAD_LETTERED",
    "DEAD_LETTERS_DROPPED",
    "DEFAULT_DEAD_LETTERS_MAX",
    "DEFAULT_DEAD_LETTERS_PER_REQUEST",
    "DEFAULT_DEAD_LETTER_EVENT_BYTES",
    "DEFAULT_DELIVERED_WINDOW_DAYS",
    "DEFAULT_DELIVERED_WINDOW_MAX",
    "DEFAULT_TAIL_KEEP",
    "DELIVERED",
    "DUPLICATE",
    "DUPLICATE_REASON",
    "DeadLetter",
    "DeadLetterCaps",
    "EXPIRED",
    "NOT_CREATED",
    "NOT_FORWARDABLE",
    "NOT_SELECTED",
    "Outbox",
    "OutboxRow",
    "QUEUED",
    "RECEIVED",
    "REQUEUED",
    "REQUEUED_REASON",
    "RETRIED",
    "SCHEMA_VERSION",
    "Store",
    "StoreUnavailable",
    "TAIL_DEAD_LETTER",
    "TAIL_DELIVERED",
    "TAIL_DUPLICATE",
    "TailRow",
    "UNSUPPORTED",
    "bounded_event",
]


class Store(Ledger, DeadLetterBox, Observation, AlertLog):
    """The SQLite store. Thread-safe (one connection behind a lock); open it once per process.

    `synchronous`: "FULL" makes every commit durable across power loss; "NORMAL" (in WAL mode) survives a
    crash of the program but may lose the last commits on power loss, for more speed.
    `readonly=True` opens an existing store for reading only (consoles in another process).
    `busy_timeout`: how long to wait for another process's write lock before StoreUnavailable("locked").
    """


if TYPE_CHECKING:  # the type checker holds Store to the contract

    def _is_an_outbox(store: Store) -> Outbox:
        return store
