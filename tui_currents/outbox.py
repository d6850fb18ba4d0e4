"""The outbox contract: what the engine, delivery, the sources, status and the TUI may ask of the queue.

Everything above the queue depends on this module only; `tui_currents.store` (SQLite, one machine) is the
first implementation. The guarantees of each call are written on the `Outbox` protocol below and in
docs/ARCHITECTURE.md ("The outbox contract"). The data types here are what crosses the seam.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol, Self

import orjson

if TYPE_CHECKING:
    from tui_currents.mapping import Outcome
    from tui_currents.received import Received

DAY = 86_400.0

# Counter names, per (connector, event type). `dead_lettered` includes the expired ones; `expired` says
# how many of them were dead-lettered for age. `received` counts every event handed to a connector.
RECEIVED = "received"
NOT_SELECTED = "not_selected"
ANONYMOUS = "anonymous"
UNSUPPORTED = "unsupported"
NOT_FORWARDABLE = "not_forwardable"  # a known type sent deliberately never (catalog reason)
QUEUED = "queued"
DUPLICATE = "duplicate"
DELIVERED = "delivered"
RETRIED = "retried"
DEAD_LETTERED = "dead_lettered"
EXPIRED = "expired"
REQUEUED = "requeued"
DEAD_LETTERS_DROPPED = "dead_letters_dropped"  # dead letters not kept: over a cap (see DeadLetterCaps)
COUNTER_NAMES = (
    RECEIVED, NOT_SELECTED, ANONYMOUS, UNSUPPORTED, NOT_FORWARDABLE, QUEUED, DUPLICATE,
    DELIVERED, RETRIED, DEAD_LETTERED, EXPIRED, REQUEUED, DEAD_LETTERS_DROPPED,
)  # fmt: skip

# Fates in the tail beyond mapping's Fate values ("queued", "not selected", "anonymous", "unsupported",
# "rejected").
TAIL_DUPLICATE = "duplicate"
TAIL_DELIVERED = "delivered"
TAIL_DEAD_LETTER = "dead letter"
DUPLICATE_REASON = "already queued or delivered for this connector"

# mapping.Fate value -> counter name (a queued message found to be a duplicate moves to DUPLICATE).
FATE_COUNTER = {
    "queued": QUEUED,
    "not selected": NOT_SELECTED,
    "anonymous": ANONYMOUS,
    "unsupported": UNSUPPORTED,
    "not forwardable": NOT_FORWARDABLE,
    "rejected": DEAD_LETTERED,
}
REQUEUED_REASON = "requeued from the dead letters"


# ---------------------------------------------------------------------------------------------------- errors


NOT_CREATED = "not created"  # StoreUnavailable.cause for a store no engine has created yet (not a fault)


class StoreUnavailable(Exception):
    """The store could not be written or read (disk full, read-only, I/O error, locked too long).

    `cause` is a short name of what went wrong ("disk full", "I/O error", "read-only", "locked",
    "cannot open", "damaged", "empty" (a truncated file), "out of memory", or NOT_CREATED: no engine created
    it yet, which is no fault); the message says what was kept and what to do.
    """

    def __init__(self, message: str, *, cause: str, path: Path):
        super().__init__(message)
        self.cause = cause
        self.path = path


# ------------------------------------------------------------------------------------------------ data types


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
    filtered: int = 0  # not selected, anonymous, unsupported, not forwardable
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


DEFAULT_DEAD_LETTERS_PER_REQUEST = 1_000
DEFAULT_DEAD_LETTERS_MAX = 100_000
DEFAULT_DEAD_LETTER_EVENT_BYTES = 16_384


@dataclass(frozen=True, slots=True)
class DeadLetterCaps:
    """Bounds on the dead letters (config.toml's [dead_letters]): a flood of bad events must not fill the
    disk. `per_request`: dead letters one commit keeps of its rejected events (the rest are dropped);
    `total`: dead letters kept in all (the oldest are dropped); `event_bytes`: a raw event stored larger
    than this is cut and marked (see `bounded_event`). Every drop is counted (DEAD_LETTERS_DROPPED)."""

    per_request: int = DEFAULT_DEAD_LETTERS_PER_REQUEST
    total: int = DEFAULT_DEAD_LETTERS_MAX
    event_bytes: int = DEFAULT_DEAD_LETTER_EVENT_BYTES


# -------------------------------------------------------------------------------------------- the contract


class Outbox(Protocol):
    """The queue between the sources and delivery, with what people see of it.

    At-least-once: a message acknowledged by `commit` is delivered, dead-lettered with a reason, or still
    waiting; never silently dropped. A message can be sent more than once (after a crash between a send
    and its `delivered` mark), always under the same messageId, which Segment deduplicates.
    Every call raises `StoreUnavailable` when the queue cannot be read or written (disk full, I/O error,
    read-only, locked); nothing is half-done then.
    """

    # The bounds on the dead letters, replaced when the configuration changes (applied from the next call).
    dead_letter_caps: DeadLetterCaps

    def commit(
        self, batch: Sequence[tuple[str, Outcome]] | Received, *, source: str, now: float | None = None
    ) -> CommitResult:
        """Durable when it returns: only then may the source be acknowledged. All of the batch or none
        (outbox messages, dead letters for rejected events, counters, tail lines). The batch is left
        unchanged, so a failed commit can be retried with it. A messageId already waiting or recently
        delivered for the same connector is counted a duplicate and not queued again."""
        ...

    def lease(
        self, connector: str, *, max_messages: int, max_bytes: int, lease_seconds: float,
        now: float | None = None,
    ) -> list[OutboxRow]:  # fmt: skip
        """The connector's next due messages, in queue order, each owned by the caller until it marks it
        or `lease_seconds` pass (then it is due again: a crashed owner's messages are sent again). The
        first message comes even when alone larger than `max_bytes`, so the caller can dead-letter it."""
        ...

    def release_leases(self, connector: str | None = None) -> int:
        """Every message leased by this holder is due again (its delivery stopped); returns how many."""
        ...

    def release(self, connector: str, seqs: Sequence[int], *, retry_at: float = 0.0) -> None:
        """Leased messages given back unsent, due again at `retry_at`, with no attempt counted."""
        ...

    def delivered(self, connector: str, seqs: Sequence[int], *, now: float | None = None) -> int:
        """Segment accepted these leased messages: they leave the queue (their ids remembered for the
        duplicate window). Not fsynced at once: lost on a power cut, they are sent again under the same
        messageId. Returns how many were still waiting."""
        ...

    def retry_later(
        self, connector: str, seqs: Sequence[int], *, retry_at: float, error: str, count_attempt: bool = True
    ) -> None:
        """A send worth retrying failed: due again at `retry_at`; the attempt counts unless Segment asked
        for the wait (Retry-After)."""
        ...

    def dead_letter(
        self, connector: str, seqs: Sequence[int], *, reason: str, now: float | None = None
    ) -> int:
        """Durable when it returns: these messages leave the queue for the dead letters, with `reason`."""
        ...

    def expire(
        self, connector: str, *, older_than: float, now: float | None = None, limit: int | None = None
    ) -> int:
        """Messages queued before `older_than` (and not leased) go to the dead letters as expired."""
        ...

    def dead_letter_queued(self, connector: str, *, reason: str, now: float | None = None) -> int:
        """Durable when it returns: every message waiting for the connector and not leased goes to the dead
        letters with `reason` (a removed connector leaves nothing behind unseen). Returns how many."""
        ...

    def backlog(self, connector: str) -> Backlog:
        """Messages and bytes waiting, the oldest's enqueue time, and the dead letters, at a glance."""
        ...

    def set_state(self, connector: str, state: ConnectorState) -> None:
        """Record a connector's delivery state for every reader (display only: not fsynced)."""
        ...

    def states(self) -> dict[str, ConnectorState]:
        """Every connector's last recorded state."""
        ...

    def counters(self, connector: str | None = None) -> dict[str, dict[str, dict[str, int]]]:
        """{connector: {event type: {counter name: n}}}; the names are this module's constants."""
        ...

    def counter_totals(self, connector: str | None = None) -> dict[str, int]:
        """Counters summed over event types: {counter name: n}."""
        ...

    def tail(
        self, *, after: int = 0, limit: int = 1000, connector: str | None = None, messages: bool = True
    ) -> list[TailRow]:
        """Tail lines after line `after`, oldest first (only a recent window is kept)."""
        ...

    def tail_last_seq(self) -> int:
        """The newest tail line's number (0 when empty)."""
        ...

    def dead_letters(
        self, connector: str | None = None, *, limit: int = 100, before: int | None = None
    ) -> list[DeadLetter]:
        """Dead letters, newest first; page with `before` = the last id seen."""
        ...

    def requeue(
        self, connector: str | None = None, ids: Sequence[int] | None = None, *, now: float | None = None
    ) -> int:
        """Durable when it returns: dead letters back in the queue (attempts reset). Those without a Segment
        message (rejected while mapping) stay. Returns how many were requeued."""
        ...

    def export_dead_letters(
        self, path: Path | str, connector: str | None = None, ids: Iterable[int] | None = None
    ) -> int:
        """Dead letters as JSON lines in a private file (0600), fsynced; returns how many."""
        ...

    def close(self) -> None:
        """Release the queue's resources; the leases held end."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None:
        """`close`."""
        ...
