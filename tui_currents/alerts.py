"""Alert emails to a connector's contact: a rejected write key, events waiting too long, dead letters.

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

An alert goes out at most once per kind and connector within `Thresholds.rate_limit` (30 minutes by
default), and one recovery email follows when its condition clears. What was decided is kept in two small
tables of the store's SQLite file (`alerts`: every alert and recovery with its email status;
`alert_state`: what each connector's conditions were at the last check), written in one transaction, so
an engine restart neither forgets nor resends. An email that could not be sent stays "pending" and is
tried again at the next tick (given up after `Thresholds.give_up_after`). Without SMTP settings every alert
is still logged (one line, logger "tui_currents.alerts") and recorded for the TUI (`recent_alerts`).

Emails never hold a write key, token or password: they are written from counts, times and states, and
every text is also passed through the log's secret mask before it is stored or sent.
"""

from __future__ import annotations

import asyncio
import email.policy
import logging
import shlex
import smtplib
import socket
import sqlite3
import ssl
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from tui_currents.config import LOOPBACK_HOSTS, MAX_RETENTION_DAYS, Config, Connector, SmtpSettings
from tui_currents.logs import mask
from tui_currents.paths import touch_private
from tui_currents.store import DEAD_LETTERED, DELIVERED, Backlog, ConnectorState, ConnectorStatus, Store

if TYPE_CHECKING:
    from tui_currents.secrets import Secrets

log = logging.getLogger("tui_currents.alerts")

SUBJECT_PREFIX = "[tui-currents]"
HOUR = 3600.0
DAY = 86_400.0
KEEP_ALERTS = 1000  # rows kept in the alerts table (pending ones are never pruned)
BUSY_TIMEOUT_SECONDS = 10.0
MAX_QUOTED_ERROR_CHARS = 300
WRAP = 76  # columns of an email's text
COMMAND_INDENT = "    "
# No folding of long subjects (the default policy folds some of them before their first word).
EMAIL_POLICY = email.policy.SMTP.clone(max_line_length=998)

SCHEMA = """
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


class AlertKind(StrEnum):
    """What an alert is about (one alert of each kind per connector at a time)."""

    CREDENTIALS = "credentials rejected"
    BACKLOG = "backlog waiting"
    RETENTION = "nearing expiry"
    DEAD_LETTERS = "dead letters"


class Phase(StrEnum):
    ALERT = "alert"  # the condition began
    RECOVERY = "recovery"  # the condition cleared


class EmailStatus(StrEnum):
    """Where an alert's email stands."""

    PENDING = "pending"  # to be sent; tried again at every tick until sent or given up
    SENT = "sent"
    NOT_EMAILED = "not emailed"  # no SMTP server configured (or no contact email): logged and recorded only
    GAVE_UP = "gave up"  # could not be sent within Thresholds.give_up_after


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When alerts fire; every duration in seconds."""

    backlog_age: float = HOUR  # the oldest waiting event is older than this
    retention_warning: float = 0.8  # ...or older than this fraction of the connector's retention_days
    rate_limit: float = 30 * 60.0  # at most one alert per kind and connector within this
    dead_letter_quiet: float = HOUR  # dead letters are over after this long without a new one
    give_up_after: float = DAY  # an email not sent within this is given up (and logged)


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


_ALERT_COLUMNS = (
    "id, at, connector, kind, phase, since, recipient, subject, body, email, attempts, sent_at, last_error"
)


def _alert(row: tuple) -> Alert:
    return Alert(
        row[0], row[1], row[2], AlertKind(row[3]), Phase(row[4]), row[5], row[6], row[7], row[8],
        EmailStatus(row[9]), row[10], row[11], row[12],
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------- sending


class SendFailed(Exception):
    """An alert email could not be sent. The message says why in plain words and never holds a password.

    `affects_all`: the server cannot be used at all right now (unreachable, login refused), so the other
    pending emails are not tried in this round either.
    """

    def __init__(self, message: str, *, affects_all: bool):
        super().__init__(message)
        self.affects_all = affects_all


class SmtpSender:
    """Sends alert emails through the configured SMTP server with the standard library's smtplib.

    `password_provider` is asked for the password at each send (so a changed password is picked up), only
    when a user name is configured. `ssl_context` defaults to the system's trusted certificates with host
    name checks; tests pass one that trusts their own certificate.
    """

    def __init__(
        self,
        settings: SmtpSettings,
        password_provider: Callable[[], str | None] | None = None,
        *,
        timeout: float = 20.0,
        ssl_context: ssl.SSLContext | None = None,
    ):
        self.settings = settings
        self._password_provider = password_provider
        self.timeout = timeout
        self._ssl_context = ssl_context

    def __repr__(self) -> str:
        s = self.settings
        return f"<SmtpSender {s.host}:{s.port} {s.security} user={s.username!r}>"

    @property
    def server(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()

    def send(self, message: EmailMessage) -> None:
        """Send one email (one connection each). Raises SendFailed with a message a person can act on."""
        s = self.settings
        password = None
        try:
            if s.username:
                if s.security == "none" and s.host not in LOOPBACK_HOSTS:
                    raise SendFailed(
                        f"refusing to send the SMTP password unencrypted to {s.host}; set [smtp] security "
                        "to 'starttls' or 'ssl' in the config",
                        affects_all=True,
                    )
                password = self._password()
            client = self._connect()
            try:
                if s.username:
                    client.login(s.username, password or "")
                client.send_message(message)
            finally:
                with suppress(smtplib.SMTPException, OSError):
                    client.quit()
                client.close()
        except SendFailed:
            raise
        except Exception as exc:
            raise SendFailed(_scrub(self._explain(exc), password), affects_all=_affects_all(exc)) from None

    def _password(self) -> str:
        if self._password_provider is None:
            raise SendFailed(
                "an SMTP user name is set but no SMTP password can be read; store the SMTP password in "
                "the keyring, or remove [smtp] username if the server needs no login",
                affects_all=True,
            )
        try:
            password = self._password_provider()
        except Exception as exc:  # the keyring's own message could be long; its type is enough here
            raise SendFailed(
                f"the SMTP password could not be read from the keyring ({type(exc).__name__}); check that "
                "the keyring is available to this program",
                affects_all=True,
            ) from None
        if not password:
            raise SendFailed(
                f"[smtp] username is {self.settings.username!r} but no SMTP password is stored in the "
                "keyring; store it, or remove the username if the server needs no login",
                affects_all=True,
            )
        return password

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if s.security == "ssl":
            return smtplib.SMTP_SSL(s.host, s.port, timeout=self.timeout, context=self._context())
        client = smtplib.SMTP(s.host, s.port, timeout=self.timeout)
        try:
            if s.security == "starttls":
                client.ehlo()
                if not client.has_extn("starttls"):
                    raise SendFailed(
                        f"the SMTP server {self.server} does not offer STARTTLS; set [smtp] security to "
                        "'ssl' if it expects TLS from the start (usually port 465)",
                        affects_all=True,
                    )
                client.starttls(context=self._context())
                client.ehlo()
        except BaseException:
            client.close()
            raise
        return client

    def _explain(self, exc: Exception) -> str:
        server = self.server
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return (
                f"the SMTP server {server} refused the login of {self.settings.username!r} "
                f"({_reply(exc.smtp_code, exc.smtp_error)}); check [smtp] username and the SMTP password "
                "stored in the keyring"
            )
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            refused = "; ".join(f"{who}: {_reply(*answer)}" for who, answer in exc.recipients.items())
            return f"the SMTP server {server} refused the recipient ({refused}); check the contact email"
        if isinstance(exc, smtplib.SMTPSenderRefused):
            return (
                f"the SMTP server {server} refused the sender {self.settings.from_address!r} "
                f"({_reply(exc.smtp_code, exc.smtp_error)}); check [smtp] from_address"
            )
        if isinstance(exc, smtplib.SMTPResponseException):
            return f"the SMTP server {server} answered {_reply(exc.smtp_code, exc.smtp_error)}"
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return f"the SMTP server {server} does not support a needed feature ({exc})"
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return f"the SMTP server {server} closed the connection unexpectedly"
        if isinstance(exc, smtplib.SMTPException):
            return f"the SMTP server {server} failed: {exc}"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return (
                f"the SMTP server {server}'s TLS certificate was not accepted "
                f"({exc.verify_message or exc.reason}); check [smtp] host"
            )
        if isinstance(exc, ssl.SSLError):
            return (
                f"TLS with the SMTP server {server} failed ({exc.reason or type(exc).__name__}); check "
                "[smtp] security: 'ssl' for servers that expect TLS at once (465), 'starttls' otherwise"
            )
        if isinstance(exc, TimeoutError | socket.timeout):
            return f"the SMTP server {server} did not answer within {self.timeout:g} s"
        if isinstance(exc, socket.gaierror):
            return (
                f"the SMTP server's host name {self.settings.host!r} could not be resolved; check [smtp] host"
            )
        if isinstance(exc, OSError):
            why = exc.strerror or type(exc).__name__
            return f"could not reach the SMTP server {server} ({why}); check [smtp] host and port"
        return f"sending through the SMTP server {server} failed ({type(exc).__name__})"


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(str(text).split())}"[:MAX_QUOTED_ERROR_CHARS]


def _affects_all(exc: Exception) -> bool:
    # A refused recipient or message concerns that email only; anything else means the server is unusable.
    return not isinstance(exc, smtplib.SMTPRecipientsRefused | smtplib.SMTPDataError)


def _scrub(text: str, password: str | None) -> str:
    if password:
        text = text.replace(password, "[secret]")
    return mask(text)


def smtp_sender_for(config: Config, secrets: Secrets | None) -> SmtpSender | None:
    """The sender for a config's [smtp] settings (the password read from `secrets` at each send), or None
    when no SMTP server is configured."""
    if config.smtp is None:
        return None
    return SmtpSender(config.smtp, secrets.get_smtp_password if secrets is not None else None)


# --------------------------------------------------------------------------------------------- deciding


@dataclass(slots=True)
class _Memory:
    """What is remembered about one kind of alert for one connector between checks (and restarts)."""

    active: bool = False  # the condition held at the last check
    since: float | None = None  # when it began
    alerted: bool = False  # an alert went out for this episode (so a recovery is owed)
    last_alert_at: float | None = None  # for the rate limit, across episodes
    mark: int | None = None  # credentials: delivered counter while rejected; dead letters: counter last seen
    last_rise_at: float | None = None  # dead letters: when the counter last rose
    episode_start: int = 0  # dead letters: the counter when this episode began

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str) -> _Memory:
        data = orjson.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True, slots=True)
class _Reading:
    """One connector's figures from the store at one check."""

    state: ConnectorState | None
    backlog: Backlog
    delivered: int
    dead_lettered: int

    @property
    def state_name(self) -> str | None:
        return self.state.state if self.state else None


_DELIVERING = frozenset({ConnectorStatus.RUNNING, ConnectorStatus.IDLE})


class AlertMonitor:
    """Decides, records, logs and emails a connector's alerts; see the module's docstring.

    `store_path` is the store's SQLite file; the alert tables are created in it. Pass the engine's open
    `store` to read through it; otherwise the monitor opens its own. `sender` is an SmtpSender, or None when
    no SMTP server is configured (alerts are then logged and recorded only); the engine may replace
    `monitor.sender` after a config change. `clock` gives the time (seconds since the epoch). Thread-safe;
    `tick` is meant to be called from a worker thread.
    """

    def __init__(
        self,
        store_path: Path | str,
        *,
        sender: SmtpSender | None,
        clock: Callable[[], float] = time.time,
        thresholds: Thresholds | None = None,
        store: Store | None = None,
        host_name: str | None = None,
    ):
        self.path = Path(store_path)
        self.sender = sender
        self.clock = clock
        self.thresholds = thresholds or Thresholds()
        self.host_name = host_name or socket.gethostname()
        self._own_store = store is None
        self._store = store if store is not None else Store(self.path)  # creates the store's own tables
        self._lock = threading.RLock()
        self._last_failure: str | None = None  # the last send failure logged (not repeated every tick)
        self._last_check_error: str | None = None
        touch_private(self.path)
        self._db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the monitor's connection (and its own store, if it opened one)."""
        with self._lock:
            self._db.close()
            if self._own_store:
                self._store.close()

    def __enter__(self) -> AlertMonitor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the engine's entry points

    def tick(self, config: Config) -> list[Alert]:
        """One round: `check` then `send_pending`. Never raises: problems are logged. Returns the new
        alerts and recoveries."""
        with self._lock:
            new: list[Alert] = []
            try:
                new = self.check(config)
                self._last_check_error = None
            except Exception as exc:
                if str(exc) != self._last_check_error:  # once while the same problem lasts
                    self._last_check_error = str(exc)
                    log.error("alerts: could not check the connectors (tried again at each check): %s", exc)
            try:
                self.send_pending()
            except Exception as exc:
                log.error("alerts: could not send the pending alert emails: %s", exc)
            return new

    async def run(self, config_provider: Callable[[], Config | None], interval: float = 10.0) -> None:
        """Tick every `interval` seconds, in a worker thread, until cancelled. `config_provider` returns
        the current config (None skips a round)."""
        while True:
            config = config_provider()
            if config is not None:
                await asyncio.to_thread(self.tick, config)
            await asyncio.sleep(interval)

    # ------------------------------------------------------------------ deciding and recording

    def check(self, config: Config) -> list[Alert]:
        """Read the store, decide which alerts begin or end, and record them (pending an email when a
        sender is set and the connector has a contact email). Returns them, oldest first."""
        with self._lock:
            now = self.clock()
            memories = {
                (connector, kind): _Memory.from_json(text)
                for connector, kind, text in self._db.execute(
                    "SELECT connector, kind, memory FROM alert_state"
                )
            }
            states = self._store.states()
            changed: dict[tuple[str, str], _Memory] = {}
            rows: list[tuple] = []
            for connector in config.connectors:
                reading = self._read(connector.name, states)
                for kind in AlertKind:
                    key = (connector.name, kind.value)
                    memory = memories.get(key)
                    fresh = memory is None
                    memory = memory or _Memory()
                    before = memory.to_json()
                    phase = self._step(kind, memory, connector, reading, now)
                    if phase is not None:
                        rows.append(self._compose(kind, phase, connector, reading, memory, now))
                    if fresh or memory.to_json() != before:
                        changed[key] = memory
            names = {c.name for c in config.connectors}
            gone = [key for key in memories if key[0] not in names]
            return self._record(rows, changed, gone)

    def _read(self, name: str, states: dict[str, ConnectorState]) -> _Reading:
        totals = self._store.counter_totals(name)
        return _Reading(
            state=states.get(name),
            backlog=self._store.backlog(name),
            delivered=totals.get(DELIVERED, 0),
            dead_lettered=totals.get(DEAD_LETTERED, 0),
        )

    def _step(
        self, kind: AlertKind, memory: _Memory, connector: Connector, reading: _Reading, now: float
    ) -> Phase | None:
        """Move one condition on by one check: True holds, False cleared, None cannot tell (keep)."""
        backlog = reading.backlog
        age = None if backlog.oldest_enqueued_at is None else now - backlog.oldest_enqueued_at
        since: float | None = None
        holds: bool | None
        if kind is AlertKind.CREDENTIALS:
            if reading.state_name == ConnectorStatus.CREDENTIALS_REJECTED:
                holds = True
                since = (reading.state.since or now) if reading.state else now
                memory.mark = reading.delivered
            elif not memory.active:
                holds = False
            elif reading.state_name in _DELIVERING and (
                reading.delivered > (memory.mark or 0) or backlog.messages == 0
            ):
                holds = False  # Segment accepted a batch since (or there is nothing left to prove it with)
            else:
                holds = None  # paused, disabled, or not yet tried with the new key
        elif kind is AlertKind.BACKLOG:
            limit = self.thresholds.backlog_age
            if age is None or age < (limit / 2 if memory.active else limit):
                holds = False
            elif connector.active:
                holds, since = True, backlog.oldest_enqueued_at
            else:
                holds = None  # the user paused or disabled it: waiting is expected
        elif kind is AlertKind.RETENTION:
            warn_at = connector.retention_days * DAY * self.thresholds.retention_warning
            holds = age is not None and age >= warn_at
            since = backlog.oldest_enqueued_at
        else:  # dead letters: the counter rose, and it stays an episode until it has been quiet a while
            count = reading.dead_lettered
            if memory.mark is None or count < memory.mark:
                memory.mark = count  # first sight (older dead letters are not news) or the store was reset
                holds = memory.active and self._dead_letters_recent(memory, now)
            elif count > memory.mark:
                if not memory.active:
                    memory.episode_start = memory.mark
                    since = self._first_new_dead_letter(connector.name, count - memory.mark, now)
                memory.mark = count
                memory.last_rise_at = now
                holds = True
            else:
                holds = memory.active and self._dead_letters_recent(memory, now)
        return self._advance(memory, holds, since, now)

    def _first_new_dead_letter(self, name: str, new: int, now: float) -> float:
        """When the first of the `new` newest dead letters came (now, when there are too many to look)."""
        if new > 200:
            return now
        letters = self._store.dead_letters(name, limit=new)
        return min([now, *(letter.at for letter in letters)])

    def _dead_letters_recent(self, memory: _Memory, now: float) -> bool:
        return (
            memory.last_rise_at is not None and now - memory.last_rise_at < self.thresholds.dead_letter_quiet
        )

    def _advance(self, memory: _Memory, holds: bool | None, since: float | None, now: float) -> Phase | None:
        if holds is True:
            if not memory.active:
                memory.active, memory.since, memory.alerted = True, since or now, False
            if not memory.alerted:
                last = memory.last_alert_at
                # A clock set back counts as the window having passed rather than silencing alerts.
                if last is None or now < last or now - last >= self.thresholds.rate_limit:
                    memory.alerted, memory.last_alert_at = True, now
                    return Phase.ALERT
            return None
        if holds is False and memory.active:
            owed = memory.alerted
            memory.active, memory.alerted = False, False
            return Phase.RECOVERY if owed else None  # an alert held back by the rate limit owes nothing
        return None

    def _record(
        self, rows: list[tuple], changed: dict[tuple[str, str], _Memory], gone: list[tuple[str, str]]
    ) -> list[Alert]:
        db = self._db
        if not rows and not changed and not gone:
            return []
        alerts: list[Alert] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO alert_state (connector, kind, memory) VALUES (?, ?, ?)"
                " ON CONFLICT (connector, kind) DO UPDATE SET memory = excluded.memory",
                [(*key, memory.to_json()) for key, memory in changed.items()],
            )
            db.executemany("DELETE FROM alert_state WHERE connector = ? AND kind = ?", gone)
            for row in rows:
                cursor = db.execute(
                    "INSERT INTO alerts (at, connector, kind, phase, since, recipient, subject, body, email)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                alerts.append(_alert((cursor.lastrowid, *row, 0, None, None)))
            if rows:
                db.execute(
                    "DELETE FROM alerts WHERE email != 'pending' AND id <= (SELECT max(id) FROM alerts) - ?",
                    (KEEP_ALERTS,),
                )
            db.execute("COMMIT")
        except BaseException:
            with suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        for alert in alerts:
            self._log(alert)
        return alerts

    def _log(self, alert: Alert) -> None:
        if alert.email is EmailStatus.PENDING:
            how = f"emailing {alert.recipient}"
        elif self.sender is None:
            how = "not emailed: no SMTP server is configured ([smtp] in the config)"
        else:
            how = "not emailed: the connector has no contact email"
        subject = alert.subject.removeprefix(SUBJECT_PREFIX).strip()
        level = logging.WARNING if alert.phase is Phase.ALERT else logging.INFO
        log.log(level, "%s: %s (%s)", alert.phase.value, subject, how)

    # ------------------------------------------------------------------ sending

    def send_pending(self) -> int:
        """Email the pending alerts, oldest first; returns how many were sent. A failure is logged (once
        while it lasts) and the email stays pending for the next round; one the server cannot take at all
        stops the round. Emails pending longer than `Thresholds.give_up_after` are given up."""
        with self._lock:
            now = self.clock()
            for alert in self._pending(before=now - self.thresholds.give_up_after):
                self._db.execute("UPDATE alerts SET email = ? WHERE id = ?", (EmailStatus.GAVE_UP, alert.id))
                log.error(
                    "alerts: gave up emailing %r to %s after %d attempts over %s; last error: %s",
                    alert.subject, alert.recipient, alert.attempts,
                    _duration(self.thresholds.give_up_after), alert.last_error or "none",
                )  # fmt: skip
            sender = self.sender
            if sender is None:
                return 0
            sent = 0
            for alert in self._pending():
                message = self._message(alert, sender.settings)
                try:
                    sender.send(message)
                except SendFailed as failed:
                    reason = str(failed)
                    self._db.execute(
                        "UPDATE alerts SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                        (reason, alert.id),
                    )
                    if reason != self._last_failure:
                        self._last_failure = reason
                        log.error(
                            "alerts: could not email %r to %s: %s. It stays recorded and is sent again "
                            "at the next check.",
                            alert.subject, alert.recipient, reason,
                        )  # fmt: skip
                    if failed.affects_all:
                        break
                    continue
                self._db.execute(
                    "UPDATE alerts SET email = ?, attempts = attempts + 1, sent_at = ?, last_error = NULL"
                    " WHERE id = ?",
                    (EmailStatus.SENT, self.clock(), alert.id),
                )
                sent += 1
                if self._last_failure is not None:
                    self._last_failure = None
                    log.info("alerts: the SMTP server %s takes alert emails again", sender.server)
                log.info("alerts: emailed %r to %s", alert.subject, alert.recipient)
            return sent

    def _pending(self, *, before: float | None = None) -> list[Alert]:
        sql = f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE email = 'pending'"
        params: tuple = ()
        if before is not None:
            sql += " AND at < ?"
            params = (before,)
        return [_alert(row) for row in self._db.execute(sql + " ORDER BY id", params)]

    def _message(self, alert: Alert, settings: SmtpSettings) -> EmailMessage:
        message = EmailMessage(policy=EMAIL_POLICY)
        message["Subject"] = alert.subject
        message["From"] = settings.from_address
        message["To"] = alert.recipient or ""
        message["Date"] = formatdate(alert.at, localtime=False)
        domain = settings.from_address.rpartition("@")[2] or None
        message["Message-ID"] = make_msgid(f"tui-currents.alert{alert.id}", domain=domain)
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: vacation responders stay quiet
        message.set_content(alert.body)
        return message

    # ------------------------------------------------------------------ writing

    def _compose(
        self,
        kind: AlertKind,
        phase: Phase,
        connector: Connector,
        reading: _Reading,
        memory: _Memory,
        now: float,
    ) -> tuple:
        write = _WRITERS[(kind, phase)]
        headline, paragraphs = write(self, connector, reading, memory, now)
        subject = mask(f"{SUBJECT_PREFIX} Connector '{connector.name}': {headline}")
        body = (
            "\n\n".join(_wrap(p) for p in paragraphs)
            + f"\n\n-- \nSent by tui-currents on {self.host_name}.\n"
        )
        body = mask(body)
        recipient = connector.contact_email or None
        email = EmailStatus.PENDING if self.sender is not None and recipient else EmailStatus.NOT_EMAILED
        return (
            now,
            connector.name,
            kind.value,
            phase.value,
            memory.since,
            recipient,
            subject,
            body,
            email.value,
        )

    def _waiting(self, reading: _Reading, now: float) -> str:
        backlog = reading.backlog
        if not backlog.messages:
            return "No events are waiting in its outbox."
        text = f"Waiting in its outbox: {_count(backlog.messages, 'event')} ({_size(backlog.bytes)})"
        if backlog.oldest_enqueued_at is not None:
            age = now - backlog.oldest_enqueued_at
            text += f"; the oldest was received {_duration(age)} ago ({_when(backlog.oldest_enqueued_at)})"
        return text + "."

    def _state_line(self, reading: _Reading) -> str:
        state = reading.state
        if state is None:
            return "The engine has not reported a state for this connector yet."
        text = f"The connector's state: {state.state}"
        text += f" ({state.detail})." if state.detail else "."
        if state.last_error:
            at = f" ({_when(state.last_error_at)})" if state.last_error_at else ""
            text += f" Last error{at}: {_quote(state.last_error)}"
        return text

    def _hint(self, connector: Connector, reading: _Reading) -> str:
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
        if state in _DELIVERING:
            return (
                "Delivery runs but does not keep up with the events arriving. Check `tui-currents status`; "
                "sending more batches at once can help:\n"
                f"{COMMAND_INDENT}tui-currents connector edit {_arg(name)} --max-in-flight 8"
            )
        return (
            "Events do not seem to be delivered at all. Check that the engine runs (`tui-currents run`, or "
            "the tui-currents console) and read its log; `tui-currents status` shows each connector's state."
        )

    def _kept_for(self, connector: Connector) -> str:
        return (
            f"Waiting events are kept for {_count(connector.retention_days, 'day')} (the connector's "
            "retention_days); older ones move to the dead letters, from which they can still be sent again."
        )

    # One writer per (kind, phase): (headline for the subject, paragraphs of the body).

    def _credentials_alert(self, c: Connector, r: _Reading, m: _Memory, now: float) -> tuple[str, list[str]]:
        first = (
            f"Segment rejected the write key of connector '{c.name}' (Braze workspace '{c.workspace}') on "
            f"{_when(m.since or now)}, so tui-currents stopped sending this connector's events to Segment."
        )
        if r.state and r.state.last_error:
            first += f" Segment's answer: {_quote(r.state.last_error)}"
        kept = (
            "What is kept: nothing is lost yet. "
            + self._waiting(r, now)
            + " Events from Braze keep being received and queued, and all of them are delivered as soon as "
            "a new write key is saved. " + self._kept_for(c)
        )
        todo = (
            "What to do: copy the write key of the Segment source this connector sends to (in Segment: the "
            "source's Settings, API Keys) and " + _save_key(c.name) + " Delivery resumes within seconds."
        )
        after = "You will get one more email when Segment accepts the write key again."
        return "Segment rejected the write key", [first, kept, todo, after]

    def _credentials_recovery(
        self, c: Connector, r: _Reading, m: _Memory, now: float
    ) -> tuple[str, list[str]]:
        first = (
            f"Segment accepts the write key of connector '{c.name}' again ({_when(now)}); it had been "
            f"rejected since {_when(m.since or now)} ({_duration(now - (m.since or now))})."
        )
        return "Segment accepts the write key again", [first, self._waiting(r, now) + " Delivery continues."]

    def _backlog_alert(self, c: Connector, r: _Reading, m: _Memory, now: float) -> tuple[str, list[str]]:
        limit = _duration(self.thresholds.backlog_age)
        first = (
            f"Events of connector '{c.name}' (Braze workspace '{c.workspace}') have waited more than {limit} "
            f"to be sent to Segment. {self._waiting(r, now)}"
        )
        kept = (
            "What is kept: every waiting event stays in the outbox until Segment accepts it. "
            + self._kept_for(c)
        )
        todo = "What to do: " + self._hint(c, r)
        after = "You will get one more email when the backlog has caught up."
        return f"events have waited more than {limit}", [first, self._state_line(r), kept, todo, after]

    def _backlog_recovery(self, c: Connector, r: _Reading, m: _Memory, now: float) -> tuple[str, list[str]]:
        first = (
            f"Connector '{c.name}' has caught up: events had been waiting since {_when(m.since or now)}. "
            + self._waiting(r, now)
        )
        return "the backlog has caught up", [first]

    def _retention_alert(self, c: Connector, r: _Reading, m: _Memory, now: float) -> tuple[str, list[str]]:
        oldest = r.backlog.oldest_enqueued_at or now
        expires = oldest + c.retention_days * DAY
        left = expires - now
        headline = (
            f"waiting events expire in {_duration(left)}" if left > 0 else "waiting events are expiring"
        )
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
            + self._hint(c, r)
            + f"\nTo keep events longer meanwhile:\n{COMMAND_INDENT}tui-currents connector edit "
            + f"{_arg(c.name)} --retention-days {min(c.retention_days * 2, MAX_RETENTION_DAYS)}"
        )
        after = "You will get one more email when no waiting event is this close to expiring."
        return headline, [first, self._state_line(r), kept, todo, after]

    def _retention_recovery(self, c: Connector, r: _Reading, m: _Memory, now: float) -> tuple[str, list[str]]:
        first = (
            f"No event waiting in the outbox of connector '{c.name}' is close to its expiry any more. "
            + self._waiting(r, now)
        )
        return "waiting events are no longer near expiry", [first]

    def _dead_letters_alert(self, c: Connector, r: _Reading, m: _Memory, now: float) -> tuple[str, list[str]]:
        new = max(0, r.dead_lettered - m.episode_start)
        first = (
            f"{_count(new, 'event')} of connector '{c.name}' (Braze workspace '{c.workspace}') moved to the "
            f"dead letters since {_when(m.since or now)}. They will not be sent to Segment unless they are "
            "sent again."
        )
        recent = self._store.dead_letters(c.name, limit=max(1, min(new, 200)))
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
            f"{_duration(self.thresholds.dead_letter_quiet)}."
        )
        return "events are going to the dead letters", [p for p in (first, why, kept, todo, after) if p]

    def _dead_letters_recovery(
        self, c: Connector, r: _Reading, m: _Memory, now: float
    ) -> tuple[str, list[str]]:
        quiet = _duration(self.thresholds.dead_letter_quiet)
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


_Writer = Callable[[AlertMonitor, Connector, _Reading, _Memory, float], tuple[str, list[str]]]
_WRITERS: dict[tuple[AlertKind, Phase], _Writer] = {
    (AlertKind.CREDENTIALS, Phase.ALERT): AlertMonitor._credentials_alert,
    (AlertKind.CREDENTIALS, Phase.RECOVERY): AlertMonitor._credentials_recovery,
    (AlertKind.BACKLOG, Phase.ALERT): AlertMonitor._backlog_alert,
    (AlertKind.BACKLOG, Phase.RECOVERY): AlertMonitor._backlog_recovery,
    (AlertKind.RETENTION, Phase.ALERT): AlertMonitor._retention_alert,
    (AlertKind.RETENTION, Phase.RECOVERY): AlertMonitor._retention_recovery,
    (AlertKind.DEAD_LETTERS, Phase.ALERT): AlertMonitor._dead_letters_alert,
    (AlertKind.DEAD_LETTERS, Phase.RECOVERY): AlertMonitor._dead_letters_recovery,
}


# ------------------------------------------------------------------------------------------- words


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


# -------------------------------------------------------------------------------------------- reading


@contextmanager
def _reader(db_path: Path | str) -> Iterator[sqlite3.Connection | None]:
    path = Path(db_path)
    if not path.exists():
        yield None
        return
    db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_SECONDS)
    try:
        yield db
    finally:
        db.close()


def _no_table(exc: sqlite3.OperationalError) -> bool:
    return "no such table" in str(exc)


def recent_alerts(db_path: Path | str, limit: int = 50, *, connector: str | None = None) -> list[Alert]:
    """The newest alerts and recoveries, newest first (for the TUI and `status`); [] before the first.
    Opens the store's file read-only, from any process."""
    sql = f"SELECT {_ALERT_COLUMNS} FROM alerts"
    params: tuple = ()
    if connector is not None:
        sql += " WHERE connector = ?"
        params = (connector,)
    with _reader(db_path) as db:
        if db is None:
            return []
        try:
            rows = db.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()
        except sqlite3.OperationalError as exc:
            if _no_table(exc):
                return []
            raise
    return [_alert(row) for row in rows]


def open_alerts(db_path: Path | str) -> list[Alert]:
    """The alerts whose condition has not cleared yet, newest first: what needs someone now. (An alert
    of a connector removed from the config is no longer open.)"""
    sql = (
        f"SELECT {_ALERT_COLUMNS} FROM alerts AS a"
        " WHERE id IN (SELECT max(id) FROM alerts GROUP BY connector, kind) AND phase = 'alert'"
        " AND EXISTS (SELECT 1 FROM alert_state AS s WHERE s.connector = a.connector AND s.kind = a.kind"
        " AND json_extract(s.memory, '$.alerted') = 1)"
        " ORDER BY id DESC"
    )
    with _reader(db_path) as db:
        if db is None:
            return []
        try:
            rows = db.execute(sql).fetchall()
        except sqlite3.OperationalError as exc:
            if _no_table(exc):
                return []
            raise
    return [_alert(row) for row in rows]


__all__ = [
    "Alert",
    "AlertKind",
    "AlertMonitor",
    "EmailStatus",
    "Phase",
    "SendFailed",
    "SmtpSender",
    "Thresholds",
    "open_alerts",
    "recent_alerts",
    "smtp_sender_for",
]
