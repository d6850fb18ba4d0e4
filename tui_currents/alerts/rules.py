"""The alert rules: a pure state machine, one step per check, per connector and kind of alert.

`step(kind, memory, reading, now, thresholds)` takes what is remembered about one kind of alert for one
connector and that connector's figures now, and returns the new memory and whether an alert or a recovery
is due. No I/O: the monitor reads the store, records what this decides and sends the emails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum

import orjson

from tui_currents.outbox import Backlog, ConnectorState, ConnectorStatus, DeadLetter

HOUR = 3600.0
DAY = 86_400.0
LOOK_BACK = 200  # at most this many new dead letters are looked at to tell when the first came

DELIVERING = frozenset({ConnectorStatus.RUNNING, ConnectorStatus.IDLE})


class AlertKind(StrEnum):
    """What an alert is about (one alert of each kind per connector at a time)."""

    CREDENTIALS = "credentials rejected"
    BACKLOG = "backlog waiting"
    RETENTION = "nearing expiry"
    DEAD_LETTERS = "dead letters"
    RECEIVER_TOKEN = "receiver token unreadable"  # Braze's events for the workspace are answered 503


class Phase(StrEnum):
    """Whether an alert tells that a condition began or that it cleared."""

    ALERT = "alert"  # the condition began
    RECOVERY = "recovery"  # the condition cleared


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When alerts fire; every duration in seconds."""

    backlog_age: float = HOUR  # the oldest waiting event is older than this
    retention_warning: float = 0.8  # ...or older than this fraction of the connector's retention_days
    rate_limit: float = 30 * 60.0  # at most one alert per kind and connector within this
    dead_letter_quiet: float = HOUR  # dead letters are over after this long without a new one
    give_up_after: float = DAY  # an email not sent within this is given up (and logged)
    receiver_token_grace: float = 60.0  # a receiver token unreadable for less than this mails no one


@dataclass(slots=True)
class Memory:
    """What is remembered about one kind of alert for one connector between checks (and restarts)."""

    active: bool = False  # the condition held at the last check
    since: float | None = None  # when it began
    alerted: bool = False  # an alert went out for this episode (so a recovery is owed)
    last_alert_at: float | None = None  # for the rate limit, across episodes
    mark: int | None = None  # credentials: delivered counter while rejected; dead letters: counter last seen
    last_rise_at: float | None = None  # dead letters: when the counter last rose
    episode_start: int = 0  # dead letters: the counter when this episode began

    def to_json(self) -> str:
        """This memory as JSON text (as stored)."""
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str) -> Memory:
        """A memory from its JSON text; unknown keys are ignored."""
        data = orjson.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _no_dead_letters(n: int) -> Sequence[DeadLetter]:
    return ()


@dataclass(frozen=True, slots=True)
class Reading:
    """One connector's figures at one check, and the two settings of the connector the rules use."""

    state: ConnectorState | None
    backlog: Backlog
    delivered: int  # the delivered counter
    dead_lettered: int  # the dead_lettered counter
    active: bool = True  # enabled and not paused by the user (waiting is then expected)
    retention_days: int = 30
    # The connector's n newest dead letters: looked up only when new ones begin an episode (and for the
    # alert's wording), so a check costs no more than the counters while nothing happens.
    newest_dead_letters: Callable[[int], Sequence[DeadLetter]] = _no_dead_letters
    enabled: bool = True  # enabled at all (paused or not): the receiver takes its workspace's events for it
    # Why the running engine cannot read the receiver token of the connector's workspace, and since when
    # (None while it can): Braze's requests for the workspace are answered 503 meanwhile.
    token_problem: str | None = None
    token_problem_since: float | None = None

    @property
    def state_name(self) -> str | None:
        """The connector's state, or None before the engine reported one."""
        return self.state.state if self.state else None


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of one check of one kind of alert: the memory to keep, and what to raise (if any)."""

    memory: Memory
    phase: Phase | None


def step(kind: AlertKind, memory: Memory, reading: Reading, now: float, thresholds: Thresholds) -> Step:
    """Move one condition on by one check. `memory` is left as it was; the new one is in the result."""
    memory = replace(memory)
    holds, since = _holds(kind, memory, reading, now, thresholds)
    return Step(memory, _advance(memory, holds, since, now, thresholds))


def _holds(
    kind: AlertKind, memory: Memory, reading: Reading, now: float, thresholds: Thresholds
) -> tuple[bool | None, float | None]:
    """Whether the condition holds (True), cleared (False) or cannot be told (None), and since when.
    Updates the memory's kind-specific marks."""
    backlog = reading.backlog
    age = None if backlog.oldest_enqueued_at is None else now - backlog.oldest_enqueued_at
    if kind is AlertKind.CREDENTIALS:
        if reading.state_name == ConnectorStatus.CREDENTIALS_REJECTED:
            memory.mark = reading.delivered
            return True, (reading.state.since or now) if reading.state else now
        if not memory.active:
            return False, None
        if reading.state_name in DELIVERING and (
            reading.delivered > (memory.mark or 0) or backlog.messages == 0
        ):
            return False, None  # Segment accepted a batch since (or there is nothing left to prove it with)
        return None, None  # paused, disabled, or not yet tried with the new key
    if kind is AlertKind.BACKLOG:
        limit = thresholds.backlog_age
        if age is None or age < (limit / 2 if memory.active else limit):  # half: no flapping at the limit
            return False, None
        if reading.active:
            return True, backlog.oldest_enqueued_at
        return None, None  # the user paused or disabled it: waiting is expected
    if kind is AlertKind.RECEIVER_TOKEN:  # raised even for a paused connector: its events are refused too
        if reading.token_problem is None:
            return False, None
        if not reading.enabled:
            return None, None  # it takes no events: nothing is refused for it
        began = reading.token_problem_since or now
        # A blip shorter than the grace mails no one. A start recorded just after `now` was taken is still
        # in the grace; one far ahead means the clock was set back, which counts as the grace having passed.
        if memory.active or abs(now - began) >= thresholds.receiver_token_grace:
            return True, began
        return None, None
    if kind is AlertKind.RETENTION:  # raised even for a paused connector: events are about to be lost
        warn_at = reading.retention_days * DAY * thresholds.retention_warning
        return age is not None and age >= warn_at, backlog.oldest_enqueued_at
    # Dead letters: the counter rose, and it stays an episode until it has been quiet a while.
    count = reading.dead_lettered
    recent = memory.last_rise_at is not None and now - memory.last_rise_at < thresholds.dead_letter_quiet
    if memory.mark is None or count < memory.mark:
        memory.mark = count  # first sight (older dead letters are not news) or the store was reset
        return memory.active and recent, None
    if count > memory.mark:
        since = None
        if not memory.active:
            memory.episode_start = memory.mark
            since = _first_new_dead_letter(reading, count - memory.mark, now)
        memory.mark = count
        memory.last_rise_at = now
        return True, since
    return memory.active and recent, None


def _first_new_dead_letter(reading: Reading, new: int, now: float) -> float:
    """When the first of the `new` newest dead letters came (now, when there are too many to look)."""
    if new > LOOK_BACK:
        return now
    return min([now, *(letter.at for letter in reading.newest_dead_letters(new))])


def _advance(
    memory: Memory, holds: bool | None, since: float | None, now: float, thresholds: Thresholds
) -> Phase | None:
    if holds is True:
        if not memory.active:
            memory.active, memory.since, memory.alerted = True, since or now, False
        if not memory.alerted:
            last = memory.last_alert_at
            # A clock set back counts as the window having passed rather than silencing alerts.
            if last is None or now < last or now - last >= thresholds.rate_limit:
                memory.alerted, memory.last_alert_at = True, now
                return Phase.ALERT
        return None
    if holds is False and memory.active:
        owed = memory.alerted
        memory.active, memory.alerted = False, False
        return Phase.RECOVERY if owed else None  # an alert held back by the rate limit owes nothing
    return None
