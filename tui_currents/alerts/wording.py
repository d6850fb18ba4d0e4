"""The words of alert emails: a subject and a plain-text body per kind of alert and phase.

Written from counts, times and states only (never a write key, token or password), and passed through
the log's secret mask all the same. No I/O: everything comes in a `Facts`.
"""

from __future__ import annotations

import shlex
import textwrap
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from tui_currents.alerts.rules import (
    DAY,
    DELIVERING,
    LOOK_BACK,
    AlertKind,
    Memory,
    Phase,
    Reading,
    Thresholds,
)
from tui_currents.config import MAX_RETENTION_DAYS, Connector
from tui_currents.logs import mask
from tui_currents.outbox import ConnectorStatus
from tui_currents.secrets import PASSPHRASE_ENV

SUBJECT_PREFIX = "[tui-currents]"
MAX_QUOTED_ERROR_CHARS = 300
WRAP = 76  # columns of an email's text
COMMAND_INDENT = "    "


@dataclass(frozen=True, slots=True)
class Facts:
    """What an alert's words are written from: the connector, its reading, the rules' memory after the
    check that raised it, and the time of that check."""

    connector: Connector
    reading: Reading
    memory: Memory
    now: float
    thresholds: Thresholds


def compose(kind: AlertKind, phase: Phase, facts: Facts, host_name: str) -> tuple[str, str]:
    """The (subject, body) of an alert or recovery, masked."""
    headline, paragraphs = _WRITERS[(kind, phase)](facts)
    subject = mask(f"{SUBJECT_PREFIX} Connector '{facts.connector.name}': {headline}")
    body = "\n\n".join(_wrap(p) for p in paragraphs) + f"\n\n-- \nSent by tui-currents on {host_name}.\n"
    return subject, mask(body)


def headline(subject: str) -> str:
    """A subject without its prefix (for a log line)."""
    return subject.removeprefix(SUBJECT_PREFIX).strip()


def _waiting(reading: Reading, now: float) -> str:
    backlog = reading.backlog
    if not backlog.messages:
        return "No events are waiting in its outbox."
    text = f"Waiting in its outbox: {_count(backlog.messages, 'event')} ({_size(backlog.bytes)})"
    if backlog.oldest_enqueued_at is not None:
        age = now - backlog.oldest_enqueued_at
        text += f"; the oldest was received {_duration(age)} ago ({_when(backlog.oldest_enqueued_at)})"
    return text + "."


def _state_line(reading: Reading) -> str:
    state = reading.state
    if state is None:
        return "The engine has not reported a state for this connector yet."
    text = f"The connector's state: {state.state}"
    text += f" ({state.detail})." if state.detail else "."
    if state.last_error:
        at = f" ({_when(state.last_error_at)})" if state.last_error_at else ""
        text += f" Last error{at}: {_quote(state.last_error)}"
    return text


def _hint(connector: Connector, reading: Reading) -> str:
    """What to do, from the connector's state."""
    name = connector.name
    state = reading.state_name
    if state == ConnectorStatus.CREDENTIALS_REJECTED:
        return "Segment rejects the write key: " + _save_key(name)
    if state == ConnectorStatus.NO_WRITE_KEY:
        return "The connector has no write key: " + _save_key(name)
    if state == ConnectorStatus.PAUSED:
        until = reading.state.paused_until if reading.state else None
        if until:
            return (
                f"Delivery is paused until {_when(until)} (Segment asked to wait, or it was paused by "
                "hand); it resumes by itself. To resume a paused connector now:\n"
                f"{COMMAND_INDENT}tui-currents connector resume {_arg(name)}"
            )
        return (
            "The connector is paused. Resume it with\n"
            f"{COMMAND_INDENT}tui-currents connector resume {_arg(name)}"
        )
    if state == ConnectorStatus.BACKING_OFF:
        return (
            "Sending failed (see the last error above) and is retried by itself. Check that this machine "
            "reaches Segment (the connector's region or endpoint) and Segment's status page."
        )
    if state in DELIVERING:
        return (
            "Delivery runs but does not keep up with the events arriving. Check `tui-currents status`; "
            "sending more batches at once can help:\n"
            f"{COMMAND_INDENT}tui-currents connector edit {_arg(name)} --max-in-flight 8"
        )
    return (
        "Events do not seem to be delivered at all. Check that the engine runs (`tui-currents run`, or "
        "the tui-currents console) and read its log; `tui-currents status` shows each connector's state."
    )


def _kept_for(connector: Connector) -> str:
    return (
        f"Waiting events are kept for {_count(connector.retention_days, 'day')} (the connector's "
        "retention_days); older ones move to the dead letters, from which they can still be sent again."
    )


# One writer per (kind, phase): (headline for the subject, paragraphs of the body).


def _credentials_alert(f: Facts) -> tuple[str, list[str]]:
    c, r, m, now = f.connector, f.reading, f.memory, f.now
    first = (
        f"Segment rejected the write key of connector '{c.name}' (Braze workspace '{c.workspace}') on "
        f"{_when(m.since or now)}, so tui-currents stopped sending this connector's events to Segment."
    )
    if r.state and r.state.last_error:
        first += f" Segment's answer: {_quote(r.state.last_error)}"
    kept = (
        "What is kept: nothing is lost yet. "
        + _waiting(r, now)
        + " Events from Braze keep being received and queued, and all of them are delivered as soon as "
        "a new write key is saved. " + _kept_for(c)
    )
    todo = (
        "What to do: copy the write key of the Segment source this connector sends to (in Segment: the "
        "source's Settings, API Keys) and " + _save_key(c.name) + " Delivery resumes within seconds."
    )
    after = "You will get one more email when Segment accepts the write key again."
    return "Segment rejected the write key", [first, kept, todo, after]


def _credentials_recovery(f: Facts) -> tuple[str, list[str]]:
    c, r, m, now = f.connector, f.reading, f.memory, f.now
    first = (
        f"Segment accepts the write key of connector '{c.name}' again ({_when(now)}); it had been "
        f"rejected since {_when(m.since or now)} ({_duration(now - (m.since or now))})."
    )
    return "Segment accepts the write key again", [first, _waiting(r, now) + " Delivery continues."]


def _backlog_alert(f: Facts) -> tuple[str, list[str]]:
    c, r, now = f.connector, f.reading, f.now
    limit = _duration(f.thresholds.backlog_age)
    first = (
        f"Events of connector '{c.name}' (Braze workspace '{c.workspace}') have waited more than {limit} "
        f"to be sent to Segment. {_waiting(r, now)}"
    )
    kept = "What is kept: every waiting event stays in the outbox until Segment accepts it. " + _kept_for(c)
    todo = "What to do: " + _hint(c, r)
    after = "You will get one more email when the backlog has caught up."
    return f"events have waited more than {limit}", [first, _state_line(r), kept, todo, after]


def _backlog_recovery(f: Facts) -> tuple[str, list[str]]:
    c, r, m, now = f.connector, f.reading, f.memory, f.now
    first = (
        f"Connector '{c.name}' has caught up: events had been waiting since {_when(m.since or now)}. "
        + _waiting(r, now)
    )
    return "the backlog has caught up", [first]


def _retention_alert(f: Facts) -> tuple[str, list[str]]:
    c, r, now = f.connector, f.reading, f.now
    oldest = r.backlog.oldest_enqueued_at or now
    expires = oldest + c.retention_days * DAY
    left = expires - now
    headline = f"waiting events expire in {_duration(left)}" if left > 0 else "waiting events are expiring"
    first = (
        f"The oldest event waiting in the outbox of connector '{c.name}' (Braze workspace "
        f"'{c.workspace}') was received {_duration(now - oldest)} ago ({_when(oldest)}). Events are kept "
        f"for {_count(c.retention_days, 'day')}, so "
        + (
            f"it moves to the dead letters on {_when(expires)} unless it is delivered by then."
            if left > 0
            else "waiting events are moving to the dead letters as they reach that age."
        )
        + f" Waiting in all: {_count(r.backlog.messages, 'event')} ({_size(r.backlog.bytes)})."
    )
    kept = (
        "What is kept: expired events are not deleted. They move to the dead letters with the reason "
        '"expired", from which they can be sent again (tui-currents console: Dead letters, r or R).'
    )
    todo = (
        "What to do: "
        + _hint(c, r)
        + f"\nTo keep events longer meanwhile:\n{COMMAND_INDENT}tui-currents connector edit "
        + f"{_arg(c.name)} --retention-days {min(c.retention_days * 2, MAX_RETENTION_DAYS)}"
    )
    after = "You will get one more email when no waiting event is this close to expiring."
    return headline, [first, _state_line(r), kept, todo, after]


def _retention_recovery(f: Facts) -> tuple[str, list[str]]:
    c, r, now = f.connector, f.reading, f.now
    first = (
        f"No event waiting in the outbox of connector '{c.name}' is close to its expiry any more. "
        + _waiting(r, now)
    )
    return "waiting events are no longer near expiry", [first]


def _dead_letters_alert(f: Facts) -> tuple[str, list[str]]:
    c, r, m, now = f.connector, f.reading, f.memory, f.now
    new = max(0, r.dead_lettered - m.episode_start)
    first = (
        f"{_count(new, 'event')} of connector '{c.name}' (Braze workspace '{c.workspace}') moved to the "
        f"dead letters since {_when(m.since or now)}. They will not be sent to Segment unless they are "
        "sent again."
    )
    recent = r.newest_dead_letters(max(1, min(new, LOOK_BACK)))
    reasons = Counter(letter.reason for letter in recent)
    lines = [f"  {n:>6,} x {_quote(reason)}" for reason, n in reasons.most_common(5)]
    why = "Most frequent reasons among the newest:\n" + "\n".join(lines) if lines else ""
    kept = (
        f"What is kept: every dead letter keeps the event as Braze sent it and, when it could be mapped, "
        f"its Segment message. Dead letters kept for this connector: {r.backlog.dead_letters:,}."
    )
    todo = (
        "What to do: fix the cause given above (a write key, the destination, the event data), then "
        "open the tui-currents console, Dead letters, and send them again: r for one, R for all; e "
        "exports them to a JSON-lines file. Events that could not become a Segment message cannot be "
        "sent again; their export shows what Braze sent."
    )
    after = (
        "You will get one more email once no new dead letters have come for "
        f"{_duration(f.thresholds.dead_letter_quiet)}."
    )
    return "events are going to the dead letters", [p for p in (first, why, kept, todo, after) if p]


def _dead_letters_recovery(f: Facts) -> tuple[str, list[str]]:
    c, r, m, now = f.connector, f.reading, f.memory, f.now
    quiet = _duration(f.thresholds.dead_letter_quiet)
    total = max(0, r.dead_lettered - m.episode_start)
    last = m.last_rise_at or now
    first_at = m.since or last
    period = (
        f"between {_when(first_at)} and {_when(last)}"
        if _when(first_at) != _when(last)
        else f"around {_when(last)}"
    )
    first = (
        f"No new dead letters for connector '{c.name}' for {quiet}. In all, {_count(total, 'event')} "
        f"moved to the dead letters {period}. Dead letters kept for this connector: "
        f"{r.backlog.dead_letters:,}."
    )
    return f"no new dead letters for {quiet}", [first]


def _receiver_token_alert(f: Facts) -> tuple[str, list[str]]:
    c, r, m, now = f.connector, f.reading, f.memory, f.now
    first = (
        f"Since {_when(m.since or now)}, tui-currents cannot read the receiver token of Braze workspace "
        f"'{c.workspace}', so every request Braze sends for it (the events of connector '{c.name}') is "
        'answered 503 ("try again later").'
    )
    if r.token_problem:
        first += f" The keyring's answer: {_quote(r.token_problem)}"
    kept = (
        "What is kept: nothing is acknowledged to Braze meanwhile, so nothing is lost yet. Braze keeps the "
        "refused events and sends them again with growing pauses, but only for a limited time (a problem "
        "lasting days makes Braze drop new events). " + _waiting(r, now)
    )
    todo = (
        "What to do: put the keyring file back (from a backup), or, if it is now written with another "
        f"passphrase, restart the service with that passphrase ({PASSPHRASE_ENV}). The receiver reads "
        "the token again by itself within seconds of the file being readable. Check with\n"
        f"{COMMAND_INDENT}tui-currents status"
    )
    after = "You will get one more email when the receiver token can be read again."
    return "Braze's events are refused (receiver token unreadable)", [first, kept, todo, after]


def _receiver_token_recovery(f: Facts) -> tuple[str, list[str]]:
    c, r, m, now = f.connector, f.reading, f.memory, f.now
    first = (
        f"The receiver token of Braze workspace '{c.workspace}' can be read again ({_when(now)}); Braze's "
        f"events for connector '{c.name}' had been answered 503 since {_when(m.since or now)} "
        f"({_duration(now - (m.since or now))}). Braze sends the refused events again by itself; they are "
        "received and delivered as usual."
    )
    return "the receiver token can be read again", [first, _waiting(r, now)]


def _save_key(name: str) -> str:
    return (
        "save a new write key with\n"
        f"{COMMAND_INDENT}tui-currents connector edit {_arg(name)} --write-key-stdin\n"
        "(paste the key, then press Ctrl-D), or in the tui-currents console: select the connector and "
        "edit it."
    )


def _wrap(paragraph: str) -> str:
    """Wrap a paragraph for a plain-text email; indented lines (commands, lists) are kept whole so they
    can be copied."""
    return "\n".join(
        line
        if line.startswith(" ")
        else textwrap.fill(line, WRAP, break_long_words=False, break_on_hyphens=False)
        for line in paragraph.split("\n")
    )


def _arg(name: str) -> str:
    return shlex.quote(name)


def _quote(text: str) -> str:
    text = " ".join(str(text).split())
    if len(text) > MAX_QUOTED_ERROR_CHARS:
        text = text[: MAX_QUOTED_ERROR_CHARS - 1] + "…"
    return text


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _duration(seconds: float) -> str:
    """ "1 hour 5 minutes", "2 days 3 hours", "less than a minute": the two largest units."""
    total = int(max(0.0, seconds))
    if total < 60:
        return "less than a minute"
    parts = []
    for unit, size in (("day", 86_400), ("hour", 3600), ("minute", 60)):
        n, total = divmod(total, size)
        if n:
            parts.append(_count(n, unit))
    return " ".join(parts[:2])


def _size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} bytes"


_WRITERS: dict[tuple[AlertKind, Phase], Callable[[Facts], tuple[str, list[str]]]] = {
    (AlertKind.CREDENTIALS, Phase.ALERT): _credentials_alert,
    (AlertKind.CREDENTIALS, Phase.RECOVERY): _credentials_recovery,
    (AlertKind.BACKLOG, Phase.ALERT): _backlog_alert,
    (AlertKind.BACKLOG, Phase.RECOVERY): _backlog_recovery,
    (AlertKind.RETENTION, Phase.ALERT): _retention_alert,
    (AlertKind.RETENTION, Phase.RECOVERY): _retention_recovery,
    (AlertKind.DEAD_LETTERS, Phase.ALERT): _dead_letters_alert,
    (AlertKind.DEAD_LETTERS, Phase.RECOVERY): _dead_letters_recovery,
    (AlertKind.RECEIVER_TOKEN, Phase.ALERT): _receiver_token_alert,
    (AlertKind.RECEIVER_TOKEN, Phase.RECOVERY): _receiver_token_recovery,
}
