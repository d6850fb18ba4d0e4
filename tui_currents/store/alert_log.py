"""The alert log: every alert and recovery with its email status, and what the alert rules remember.

Two tables of the store's file (their schema is in `schema.py`): `alerts`, a row per alert or recovery
with where its email stands, and `alert_state`, the rules' memory per connector and kind of alert (JSON
text; only its `alerted` flag is read here, to tell which alerts are still open). Kinds, phases and
email statuses are plain text here; `tui_currents.alerts` gives them their types.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tui_currents.store.base import StoreBase

PENDING = "pending"  # an email to send; tried again at every check until sent or given up
SENT = "sent"
GAVE_UP = "gave up"
ANOTHER_INSTANCE = "sent by another instance"  # a cluster's alert: the instance that claimed it sends it
KEEP_ALERTS = 1000  # rows kept in the alerts table (pending ones are never pruned)

_COLUMNS = (
    "id, at, connector, kind, phase, since, recipient, subject, body, email, attempts, sent_at, last_error"
)
_KEPT = "The alert is decided again at the next check."


@dataclass(frozen=True, slots=True)
class NewAlert:
    """An alert or recovery to record."""

    at: float  # when it was decided
    connector: str
    kind: str
    phase: str
    since: float | None  # when the condition began
    recipient: str | None  # the connector's contact email at the time
    subject: str
    body: str
    email: str  # PENDING, or why no email goes out


@dataclass(frozen=True, slots=True)
class AlertRecord(NewAlert):
    """An alert or recovery as recorded."""

    id: int = 0
    attempts: int = 0  # email attempts so far
    sent_at: float | None = None
    last_error: str | None = None  # why the last attempt failed


def _record(row: Sequence[Any]) -> AlertRecord:
    (id_, at, connector, kind, phase, since, recipient, subject, body, email, attempts, sent_at, error) = row
    return AlertRecord(
        at, connector, kind, phase, since, recipient, subject, body, email, id_, attempts, sent_at, error
    )


def _no_table(exc: sqlite3.Error) -> bool:
    # A store opened read-only that no engine of this version has opened yet has no alert tables.
    return isinstance(exc, sqlite3.OperationalError) and "no such table" in str(exc)


class AlertLog(StoreBase):
    """Records alerts and their email status, and keeps the alert rules' memory between checks."""

    def _read_alerts(self, sql: str, params: Sequence[object] = ()) -> list[AlertRecord]:
        try:
            return [_record(row) for row in self._read(sql, params)]
        except sqlite3.OperationalError as exc:
            if _no_table(exc):
                return []
            raise

    def alert_memories(self) -> dict[tuple[str, str], str]:
        """{(connector, kind): memory} as the last check left it."""
        rows = self._read("SELECT connector, kind, memory FROM alert_state")
        return {(connector, kind): memory for connector, kind, memory in rows}

    def record_alerts(
        self,
        alerts: Sequence[NewAlert],
        memories: Mapping[tuple[str, str], str],
        forget: Iterable[tuple[str, str]] = (),
    ) -> list[AlertRecord]:
        """Record new alerts, the rules' changed memories and the (connector, kind) pairs to forget, in
        one transaction (so a restart neither forgets nor resends). Returns the alerts as recorded."""
        recorded: list[AlertRecord] = []
        with self._write("record alerts", _KEPT) as db:
            db.executemany(
                "INSERT INTO alert_state (connector, kind, memory) VALUES (?, ?, ?)"
                " ON CONFLICT (connector, kind) DO UPDATE SET memory = excluded.memory",
                [(*key, memory) for key, memory in memories.items()],
            )
            db.executemany("DELETE FROM alert_state WHERE connector = ? AND kind = ?", list(forget))
            for a in alerts:
                row = (a.at, a.connector, a.kind, a.phase, a.since, a.recipient, a.subject, a.body, a.email)
                cursor = db.execute(
                    "INSERT INTO alerts (at, connector, kind, phase, since, recipient, subject, body, email)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                recorded.append(_record((cursor.lastrowid, *row, 0, None, None)))
            if alerts:
                db.execute(
                    "DELETE FROM alerts WHERE email != ? AND id <= (SELECT max(id) FROM alerts) - ?",
                    (PENDING, KEEP_ALERTS),
                )
        return recorded

    def pending_alerts(self, *, before: float | None = None) -> list[AlertRecord]:
        """Alerts whose email is still to be sent, oldest first; only those decided before `before`."""
        sql = f"SELECT {_COLUMNS} FROM alerts WHERE email = ?"
        params: tuple[object, ...] = (PENDING,)
        if before is not None:
            sql += " AND at < ?"
            params = (PENDING, before)
        return self._read_alerts(sql + " ORDER BY id", params)

    def alert_sent(self, alert_id: int, at: float) -> None:
        """Mark an alert's email sent."""
        with self._write("mark an alert email sent", "It may be sent once more.") as db:
            db.execute(
                "UPDATE alerts SET email = ?, attempts = attempts + 1, sent_at = ?, last_error = NULL"
                " WHERE id = ?",
                (SENT, at, alert_id),
            )

    def alert_send_failed(self, alert_id: int, reason: str) -> None:
        """Count a failed attempt to email an alert, and why it failed; the email stays pending."""
        with self._write("record a failed alert email", "The email stays pending.") as db:
            db.execute(
                "UPDATE alerts SET attempts = attempts + 1, last_error = ? WHERE id = ?", (reason, alert_id)
            )

    def alert_given_up(self, alert_id: int) -> None:
        """Stop trying to email an alert."""
        with self._write("give up an alert email", "It is tried again at the next check.") as db:
            db.execute("UPDATE alerts SET email = ? WHERE id = ?", (GAVE_UP, alert_id))

    def recent_alerts(self, limit: int = 50, *, connector: str | None = None) -> list[AlertRecord]:
        """The newest alerts and recoveries, newest first; [] before the first."""
        sql = f"SELECT {_COLUMNS} FROM alerts"
        params: tuple[object, ...] = ()
        if connector is not None:
            sql += " WHERE connector = ?"
            params = (connector,)
        return self._read_alerts(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))

    def open_alerts(self) -> list[AlertRecord]:
        """The alerts whose condition has not cleared yet, newest first. (An alert of a connector whose
        memory was forgotten, i.e. removed from the config, is no longer open.)"""
        return self._read_alerts(
            f"SELECT {_COLUMNS} FROM alerts AS a"
            " WHERE id IN (SELECT max(id) FROM alerts GROUP BY connector, kind) AND phase = 'alert'"
            " AND EXISTS (SELECT 1 FROM alert_state AS s WHERE s.connector = a.connector AND s.kind = a.kind"
            " AND json_extract(s.memory, '$.alerted') = 1)"
            " ORDER BY id DESC"
        )
