"""Alert emails to a connector's contact: a rejected write key, events waiting too long, dead letters, an
unreadable receiver token.

The engine calls `AlertMonitor.tick(config)` every few seconds (from a thread). Each tick reads the store's
current readings for every configured connector and decides, per connector and per kind of alert:

- "credentials rejected": the connector's state is "credentials rejected" (Segment answered 401/403). It
  clears once the state is "running" or "idle" again and Segment has accepted a batch since (the
  delivered counter rose) or nothing is waiting.
- "backlog waiting": the oldest event in the outbox has waited longer than `Thresholds.backlog_age`
  (1 hour by default) while the connector is enabled and not paused. It clears when the oldest waiting
  event is younger than half that (so a backlog hovering at the limit does not flap) or none waits.
- "nearing expiry": the oldest event has waited `Thresholds.retention_warning` (80 % by default) of the
  connector's retention_days, after which it would move to the dead letters. Raised even for a paused
  connector: events are about to be lost.
- "dead letters": the connector's dead_lettered counter rose. It clears after
  `Thresholds.dead_letter_quiet` (1 hour by default) without new dead letters.
- "receiver token unreadable": the engine cannot read the receiver token of the connector's workspace
  (it records why in the store's `receiver_problems` table), so Braze's events for it are answered 503.
  Raised for every enabled connector of the workspace, paused ones too, once the problem has lasted
  `Thresholds.receiver_token_grace` (1 minute by default: a blip mails no one); it clears when the token
  can be read again.

An alert goes out at most once per kind and connector within `Thresholds.rate_limit` (30 minutes by
default), and one recovery email follows when its condition clears. What was decided is kept in two small
tables of the store's SQLite file, owned by the store (`store/alert_log.py`: `alerts`, every alert and
recovery with its email status; `alert_state`, what each connector's conditions were at the last check),
written in one transaction, so an engine restart neither forgets nor resends. An email that could not be
sent stays "pending" and is tried again at the next tick (given up after `Thresholds.give_up_after`).
Without SMTP settings every alert is still logged (one line, logger "tui_currents.alerts") and recorded
for the TUI (`recent_alerts`).

Emails never hold a write key, token or password: they are written from counts, times and states, and
every text is also passed through the log's secret mask before it is stored or sent.

The package by role: `rules` (the conditions above as a pure state machine: a connector's reading and
the previous memory in, the new memory and the alert or recovery to raise out), `wording` (subjects and
bodies), `smtp` (the SMTP sender), `records` (alerts as recorded, and readers for the TUI and `status`),
`monitor` (reads the store, steps the rules, records, sends what is pending through its sender).
"""

from tui_currents.alerts.monitor import AlertMonitor, AlertSender
from tui_currents.alerts.records import Alert, EmailStatus, open_alerts, recent_alerts
from tui_currents.alerts.rules import AlertKind, Phase, Thresholds
from tui_currents.alerts.smtp import SendFailed, SmtpSender, smtp_sender_for

__all__ = [
    "Alert",
    "AlertKind",
    "AlertMonitor",
    "AlertSender",
    "EmailStatus",
    "Phase",
    "SendFailed",
    "SmtpSender",
    "Thresholds",
    "open_alerts",
    "recent_alerts",
    "smtp_sender_for",
]
