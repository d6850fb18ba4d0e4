"""Alerts as recorded in the store's alert log, typed, and the readers the TUI and `status` use."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from tui_currents.alerts.rules import AlertKind, Phase
from tui_currents.store import Store, alert_log
from tui_currents.store.alert_log import AlertRecord


class EmailStatus(StrEnum):
    """Where an alert's email stands."""

    PENDING = alert_log.PENDING  # to be sent; tried again at every tick until sent or given up
    SENT = alert_log.SENT
    NOT_EMAILED = "not emailed"  # no SMTP server configured (or no contact email): logged and recorded only
    GAVE_UP = alert_log.GAVE_UP  # could not be sent within Thresholds.give_up_after
    ANOTHER_INSTANCE = alert_log.ANOTHER_INSTANCE  # on a cluster: sent (email and webhook) by the claimer


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert or recovery as recorded (and emailed, when SMTP is configured)."""

    id: int
    at: float  # when it was decided
    connector: str
    kind: AlertKind
    phase: Phase
    since: float | None  # when the condition began
    recipient: str | None  # the connector's contact email at the time
    subject: str
    body: str
    email: EmailStatus
    attempts: int = 0  # email attempts so far
    sent_at: float | None = None
    last_error: str | None = None  # why the last attempt failed

    @classmethod
    def from_record(cls, r: AlertRecord) -> Alert:
        """The typed alert of a row of the store's alert log."""
        return cls(
            r.id, r.at, r.connector, AlertKind(r.kind), Phase(r.phase), r.since, r.recipient, r.subject,
            r.body, EmailStatus(r.email), r.attempts, r.sent_at, r.last_error,
        )  # fmt: skip


def recent_alerts(db_path: Path | str, limit: int = 50, *, connector: str | None = None) -> list[Alert]:
    """The newest alerts and recoveries, newest first (for the TUI and `status`); [] before the first.
    Opens the store's file read-only, from any process."""
    if not Path(db_path).exists():
        return []
    with Store(db_path, readonly=True) as store:
        return [Alert.from_record(r) for r in store.recent_alerts(limit, connector=connector)]


def open_alerts(db_path: Path | str) -> list[Alert]:
    """The alerts whose condition has not cleared yet, newest first: what needs someone now. (An alert
    of a connector removed from the config is no longer open.)"""
    if not Path(db_path).exists():
        return []
    with Store(db_path, readonly=True) as store:
        return [Alert.from_record(r) for r in store.open_alerts()]
