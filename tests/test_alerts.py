"""Alert emails, against a real SMTP server on 127.0.0.1 (aiosmtpd) and a real store file.

The store's state is driven through its own API (connector states, commits of events mapped by the real
mapping module, leases and deliveries, expiry) and time through an injectable clock, so hours pass in a
test without waiting.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import itertools
import logging
import socket
import sqlite3
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests import support
from tui_currents.alerts import (
    AlertKind,
    AlertMonitor,
    EmailStatus,
    Phase,
    SendFailed,
    SmtpSender,
    Thresholds,
    open_alerts,
    recent_alerts,
    smtp_sender_for,
)
from tui_currents.config import Config, Connector, SmtpSettings, Workspace
from tui_currents.control import Control
from tui_currents.mapping import Fate, map_event, normalise
from tui_currents.paths import Home
from tui_currents.secrets import PASSPHRASE_ENV, Secrets, write_key_env_var
from tui_currents.store import ConnectorState, ConnectorStatus, Store

from .fixtures.currents_events import event

NAME = "Marketing"
CONTACT = "ops@example.com"
FROM = "alerts@example.com"
SMTP_USER = "alerts"
PASSWORD = "smtp-Pw_4f9c2e7a1b8d"  # a sentinel: it must never show up outside the SMTP login
EMAIL_SEND = "users.messages.email.Send"
T0 = 1_717_200_000.0
MINUTE = 60.0
HOUR = 3600.0
DAY = 86_400.0

_ids = itertools.count()


# ------------------------------------------------------------------------------------------------ helpers


class Clock:
    """The monitor's time, moved by hand."""

    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class Mailbox:
    """An aiosmtpd handler keeping every message it is given."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.recipients: list[list[str]] = []
        self.senders: list[str] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.raw.append(bytes(envelope.original_content or envelope.content))
        self.recipients.append(list(envelope.rcpt_tos))
        self.senders.append(envelope.mail_from)
        return "250 OK"

    def messages(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(raw, policy=email.policy.default) for raw in self.raw]

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpServer:
    """A real SMTP server on loopback that logs `alerts` in with `password`; can be stopped and restarted
    on the same port."""

    def __init__(self, *, password: str = PASSWORD, **smtp_options: object):
        self.port = free_port()
        self.password = password
        self.mailbox = Mailbox()
        self.logins: list[bool] = []
        self.options = {"auth_require_tls": False, **smtp_options}
        self._controller: Controller | None = None

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == SMTP_USER.encode()
            and auth_data.password == self.password.encode()
        )
        self.logins.append(ok)
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    def start(self) -> SmtpServer:
        self._controller = Controller(
            self.mailbox,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=self._authenticate,
            ready_timeout=5.0,
            **self.options,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def settings(self, security: str = "none") -> SmtpSettings:
        return SmtpSettings(
            host="127.0.0.1", port=self.port, from_address=FROM, username=SMTP_USER, security=security
        )


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "currents.db") as opened:
        yield opened


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_config(
    smtp_settings: SmtpSettings | None, *, retention_days: int = 30, **connector: object
) -> Config:
    return Config(
        workspaces=[Workspace("acme")],
        connectors=[
            Connector(
                name=NAME,
                workspace="acme",
                contact_email=CONTACT,
                events=[EMAIL_SEND],
                retention_days=retention_days,
                **connector,
            )
        ],
        smtp=smtp_settings,
    )


def queue(store: Store, config: Config, n: int, *, at: float) -> None:
    """Receive n email-sent events for the connector through the real mapping (all queued)."""
    connector = config.connector(NAME)
    items = []
    for _ in range(n):
        raw = event(EMAIL_SEND)
        raw["id"] = f"evt-{next(_ids):08d}"
        outcome = map_event(normalise(raw), connector.rules())
        assert outcome.fate == Fate.QUEUED, outcome.reason
        items.append((NAME, outcome))
    store.commit(items, source="test", now=at)


def reject(store: Store, config: Config, n: int, *, at: float) -> None:
    """Receive n events without an id: the mapping rejects them, so they become dead letters."""
    connector = config.connector(NAME)
    items = []
    for _ in range(n):
        raw = event(EMAIL_SEND)
        del raw["id"]
        outcome = map_event(normalise(raw), connector.rules())
        assert outcome.fate == Fate.REJECTED
        items.append((NAME, outcome))
    store.commit(items, source="test", now=at)


def deliver_all(store: Store, *, at: float) -> int:
    rows = store.lease(NAME, max_messages=10_000, max_bytes=10**9, lease_seconds=60, now=at)
    return store.delivered(NAME, [r.seq for r in rows], now=at)


def set_state(store: Store, state: str, *, since: float, **extra: object) -> None:
    store.set_state(NAME, ConnectorState(state=state, since=since, **extra))


def body(message: email.message.EmailMessage) -> str:
    """The text of an email with its line wrapping undone (phrases may be wrapped anywhere)."""
    return " ".join(message.get_content().split())


def sender_for(server: SmtpServer, **options: object) -> SmtpSender:
    return SmtpSender(server.settings(), lambda: PASSWORD, timeout=5.0, **options)


# ------------------------------------------------------------------------------------- the three alerts


def test_rejected_write_key_alerts_once_and_recovers_when_segment_accepts_a_batch(
    smtp: SmtpServer, store: Store, clock: Clock
) -> None:
    config = make_config(smtp.settings())
    monitor = AlertMonitor(store.path, sender=sender_for(smtp), clock=clock, store=store)
    assert monitor.tick(config) == []

    queue(store, config, 5, at=clock.now)
    set_state(store, ConnectorStatus.RUNNING, since=clock.now)
    assert monitor.tick(config) == [] and smtp.mailbox.raw == []

    rejected_at = clock.advance(MINUTE)
    set_state(
        store,
        ConnectorStatus.CREDENTIALS_REJECTED,
        since=rejected_at,
        last_error="401 Unauthorized: invalid write key",
        last_error_at=rejected_at,
    )
    clock.advance(10)
    new = monitor.tick(config)
    assert [(a.kind, a.phase, a.email) for a in new] == [
        (AlertKind.CREDENTIALS, Phase.ALERT, EmailStatus.PENDING)
    ]
    [message] = smtp.mailbox.messages()
    assert smtp.mailbox.recipients == [[CONTACT]] and smtp.mailbox.senders == [FROM]
    assert smtp.logins == [True]
    assert message["Subject"] == f"[tui-currents] Connector '{NAME}': Segment rejected the write key"
    text = body(message)
    assert "5 events" in text and "30 days" in text
    assert f"tui-currents connector edit {NAME} --write-key-stdin" in text
    assert "401 Unauthorized: invalid write key" in text
    assert dt.datetime.fromtimestamp(rejected_at, dt.UTC).strftime("%Y-%m-%d %H:%M UTC") in text
    assert recent_alerts(store.path)[0].email == EmailStatus.SENT

    for _ in range(5):  # still rejected: no second email
        clock.advance(10 * MINUTE)
        assert monitor.tick(config) == []
    assert len(smtp.mailbox.raw) == 1

    # A new key is saved and delivery runs, but Segment has not accepted a batch yet: no recovery.
    set_state(store, ConnectorStatus.RUNNING, since=clock.advance(10))
    assert monitor.tick(config) == []
    deliver_all(store, at=clock.advance(5))
    [recovery] = monitor.tick(config)
    assert (recovery.kind, recovery.phase) == (AlertKind.CREDENTIALS, Phase.RECOVERY)
    assert len(smtp.mailbox.raw) == 2
    second = smtp.mailbox.messages()[1]
    assert second["Subject"] == f"[tui-currents] Connector '{NAME}': Segment accepts the write key again"
    assert smtp.mailbox.recipients[1] == [CONTACT]
    assert monitor.tick(config) == [] and len(smtp.mailbox.raw) == 2


def test_old_backlog_alerts_after_the_threshold_and_recovers_when_drained(
    smtp: SmtpServer, store: Store, clock: Clock
) -> None:
    config = make_config(smtp.settings())
    monitor = AlertMonitor(store.path, sender=sender_for(smtp), clock=clock, store=store)
    queue(store, config, 3, at=clock.now)
    set_state(store, ConnectorStatus.BACKING_OFF, since=clock.now, last_error="503 from Segment")

    clock.advance(59 * MINUTE)
    assert monitor.tick(config) == []
    clock.advance(2 * MINUTE)
    [alert] = monitor.tick(config)
    assert (alert.kind, alert.phase, alert.since) == (AlertKind.BACKLOG, Phase.ALERT, T0)
    [message] = smtp.mailbox.messages()
    assert message["Subject"] == f"[tui-currents] Connector '{NAME}': events have waited more than 1 hour"
    text = body(message)
    assert "3 events" in text and "1 hour 1 minute ago" in text and "backing off" in text
    assert "503 from Segment" in text

    clock.advance(20 * MINUTE)
    assert monitor.tick(config) == []
    deliver_all(store, at=clock.now)
    set_state(store, ConnectorStatus.IDLE, since=clock.now)
    clock.advance(10)
    [recovery] = monitor.tick(config)
    assert (recovery.kind, recovery.phase) == (AlertKind.BACKLOG, Phase.RECOVERY)
    assert smtp.mailbox.subjects()[1] == f"[tui-currents] Connector '{NAME}': the backlog has caught up"
    assert "No events are waiting" in body(smtp.mailbox.messages()[1])


def test_a_paused_connector_gets_no_backlog_alert_but_a_retention_warning(
    smtp: SmtpServer, store: Store, clock: Clock
) -> None:
    config = make_config(smtp.settings(), retention_days=1, paused=True)
    monitor = AlertMonitor(store.path, sender=sender_for(smtp), clock=clock, store=store)
    queue(store, config, 2, at=clock.now)
    set_state(store, ConnectorStatus.PAUSED, since=clock.now)
    clock.advance(3 * HOUR)
    assert monitor.tick(config) == []
    clock.advance(16 * HOUR)  # 19 h: below 80 % of one day (19.2 h)
    assert monitor.tick(config) == []
    clock.advance(30 * MINUTE)
    [warning] = monitor.tick(config)
    assert (warning.kind, warning.phase) == (AlertKind.RETENTION, Phase.ALERT)
    [message] = smtp.mailbox.messages()
    assert (
        message["Subject"]
        == f"[tui-currents] Connector '{NAME}': waiting events expire in 4 hours 30 minutes"
    )
    text = body(message)
    assert "1 day" in text and "dead letters" in text
    assert f"tui-currents connector resume {NAME}" in text
    assert "--retention-days 2" in text


def test_expiry_into_the_dead_letters_after_the_retention_warning(
    smtp: SmtpServer, store: Store, clock: Clock
) -> None:
    config = make_config(smtp.settings(), retention_days=1)
    monitor = AlertMonitor(store.path, sender=sender_for(smtp), clock=clock, store=store)
    monitor.tick(config)  # first sight of the connector: its dead-letter count is the baseline
    queue(store, config, 4, at=clock.now)
    set_state(store, ConnectorStatus.BACKING_OFF, since=clock.now)

    clock.advance(2 * HOUR)
    assert [(a.kind, a.phase) for a in monitor.tick(config)] == [(AlertKind.BACKLOG, Phase.ALERT)]
    clock.advance(18 * HOUR)
    assert [(a.kind, a.phase) for a in monitor.tick(config)] == [(AlertKind.RETENTION, Phase.ALERT)]

    clock.advance(5 * HOUR)
    assert store.expire(NAME, older_than=clock.now - DAY, now=clock.now) == 4
    new = monitor.tick(config)
    assert sorted((a.kind, a.phase) for a in new) == sorted(
        [
            (AlertKind.BACKLOG, Phase.RECOVERY),
            (AlertKind.RETENTION, Phase.RECOVERY),
            (AlertKind.DEAD_LETTERS, Phase.ALERT),
        ]
    )
    dead = next(m for m in smtp.mailbox.messages() if "dead letters" in str(m["Subject"]))
    assert dead["Subject"] == f"[tui-currents] Connector '{NAME}': events are going to the dead letters"
    text = body(dead)
    assert "4 events" in text and "expired" in text
    assert len(smtp.mailbox.raw) == 5


def test_dead_letters_alert_once_and_recover_after_a_quiet_hour(
    smtp: SmtpServer, store: Store, clock: Clock
) -> None:
    config = make_config(smtp.settings())
    reject(store, config, 2, at=clock.now)  # older dead letters, from before the monitor ran: not news
    monitor = AlertMonitor(store.path, sender=sender_for(smtp), clock=clock, store=store)
    assert monitor.tick(config) == []

    first_rejected = clock.advance(MINUTE)
    reject(store, config, 3, at=first_rejected)
    clock.advance(10)
    [alert] = monitor.tick(config)
    assert (alert.kind, alert.phase, alert.since) == (AlertKind.DEAD_LETTERS, Phase.ALERT, first_rejected)
    text = body(smtp.mailbox.messages()[0])
    assert text.startswith(f"3 events of connector '{NAME}'")
    assert "missing required field `id`" in text
    assert "Dead letters kept for this connector: 5." in text

    reject(store, config, 2, at=clock.advance(5 * MINUTE))
    assert monitor.tick(config) == []
    last_rise = clock.now
    clock.advance(59 * MINUTE)
    assert monitor.tick(config) == []
    assert len(smtp.mailbox.raw) == 1

    clock.now = last_rise + HOUR
    [recovery] = monitor.tick(config)
    assert (recovery.kind, recovery.phase) == (AlertKind.DEAD_LETTERS, Phase.RECOVERY)
    recovered = smtp.mailbox.messages()[1]
    assert recovered["Subject"] == f"[tui-currents] Connector '{NAME}': no new dead letters for 1 hour"
    assert "5 events moved to the dead letters" in body(recovered)


# --------------------------------------------------------------------------------- rate limit, restarts


def test_an_unreadable_receiver_token_alerts_each_enabled_connector_of_its_workspace_and_recovers(
    smtp: SmtpServer, store: Store, tmp_path: Path
) -> None:
    def connector(name: str, workspace: str, contact: str, **options: object) -> Connector:
        return Connector(
            name=name, workspace=workspace, contact_email=contact, events=[EMAIL_SEND], **options
        )

    config = Config(
        workspaces=[Workspace("acme"), Workspace("globex")],
        connectors=[
            connector(NAME, "acme", CONTACT),
            connector("SMS", "acme", "sms@example.com", paused=True),  # paused: its events are refused too
            connector("Archive", "acme", "archive@example.com", enabled=False),  # takes no events
            connector("Globex", "globex", "globex@example.com"),  # another workspace, readable
        ],
        smtp=smtp.settings(),
    )
    engine = Control(store.path)  # the engine's side: how it records what its receiver cannot read
    try:
        problem = f"{tmp_path / 'keyring.cfg'} is missing. Put it back (from a backup)."
        engine.set_receiver_problems({"acme": problem})
        began = time.time()
        clock = Clock(began)
        monitor = AlertMonitor(store.path, sender=sender_for(smtp), clock=clock, store=store)
        queue(store, config, 4, at=began)
        assert monitor.tick(config) == []  # within the grace: a blip mails no one
        clock.advance(30)
        assert monitor.tick(config) == [] and smtp.mailbox.raw == []

        clock.advance(40)
        new = monitor.tick(config)
        assert sorted((a.connector, a.kind, a.phase, a.email) for a in new) == [
            (NAME, AlertKind.RECEIVER_TOKEN, Phase.ALERT, EmailStatus.PENDING),
            ("SMS", AlertKind.RECEIVER_TOKEN, Phase.ALERT, EmailStatus.PENDING),
        ]
        assert all(a.since is not None and abs(a.since - began) < 5 for a in new)
        assert sorted(smtp.mailbox.recipients) == [[CONTACT], ["sms@example.com"]]
        by_recipient = dict(
            zip((r[0] for r in smtp.mailbox.recipients), smtp.mailbox.messages(), strict=True)
        )
        message = by_recipient[CONTACT]
        assert message["Subject"] == (
            f"[tui-currents] Connector '{NAME}': Braze's events are refused (receiver token unreadable)"
        )
        text = body(message)
        assert "Braze workspace 'acme'" in text and "503" in text and problem in text  # what happened
        assert "nothing is acknowledged" in text and "4 events" in text  # what is kept
        assert "keyring file back" in text and PASSPHRASE_ENV in text and "tui-currents status" in text
        assert open_alerts(store.path) and {a.kind for a in open_alerts(store.path)} == {
            AlertKind.RECEIVER_TOKEN
        }

        for _ in range(3):  # still unreadable: no second email
            clock.advance(10 * MINUTE)
            assert monitor.tick(config) == []
        assert len(smtp.mailbox.raw) == 2

        engine.set_receiver_problems({})  # the keyring can be read again
        clock.advance(10)
        recoveries = monitor.tick(config)
        assert sorted((a.connector, a.phase) for a in recoveries) == [
            (NAME, Phase.RECOVERY),
            ("SMS", Phase.RECOVERY),
        ]
        subjects = smtp.mailbox.subjects()[2:]
        assert f"[tui-currents] Connector '{NAME}': the receiver token can be read again" in subjects
        assert open_alerts(store.path) == []
        assert monitor.tick(config) == [] and len(smtp.mailbox.raw) == 4
    finally:
        engine.close()


def test_alerts_are_rate_limited_per_kind_and_connector(smtp: SmtpServer, store: Store, clock: Clock) -> None:
    config = make_config(smtp.settings())
    monitor = AlertMonitor(store.path, sender=sender_for(smtp), clock=clock, store=store)

    def rejected() -> list:
        set_state(store, ConnectorStatus.CREDENTIALS_REJECTED, since=clock.now)
        return [(a.kind, a.phase) for a in monitor.tick(config)]

    def accepted() -> list:
        queue(store, config, 1, at=clock.now)
        set_state(store, ConnectorStatus.RUNNING, since=clock.now)
        deliver_all(store, at=clock.now)
        return [(a.kind, a.phase) for a in monitor.tick(config)]

    assert rejected() == [(AlertKind.CREDENTIALS, Phase.ALERT)]
    clock.advance(MINUTE)
    assert accepted() == [(AlertKind.CREDENTIALS, Phase.RECOVERY)]
    clock.advance(4 * MINUTE)
    assert rejected() == []  # 5 minutes after the last alert: held back
    clock.advance(5 * MINUTE)
    assert accepted() == []  # the held-back alert owes no recovery
    clock.advance(5 * MINUTE)
    assert rejected() == []
    clock.now = T0 + 30 * MINUTE - 1
    assert monitor.tick(config) == []
    clock.now = T0 + 30 * MINUTE
    assert [(a.kind, a.phase) for a in monitor.tick(config)] == [(AlertKind.CREDENTIALS, Phase.ALERT)]
    assert smtp.mailbox.subjects() == [
        f"[tui-currents] Connector '{NAME}': Segment rejected the write key",
        f"[tui-currents] Connector '{NAME}': Segment accepts the write key again",
        f"[tui-currents] Connector '{NAME}': Segment rejected the write key",
    ]


def test_the_rate_limit_is_configurable(smtp: SmtpServer, store: Store, clock: Clock) -> None:
    config = make_config(smtp.settings())
    monitor = AlertMonitor(
        store.path,
        sender=sender_for(smtp),
        clock=clock,
        store=store,
        thresholds=Thresholds(rate_limit=2 * MINUTE, backlog_age=10 * MINUTE),
    )
    queue(store, config, 1, at=clock.now)
    set_state(store, ConnectorStatus.BACKING_OFF, since=clock.now)
    clock.advance(11 * MINUTE)
    assert [a.phase for a in monitor.tick(config)] == [Phase.ALERT]
    deliver_all(store, at=clock.now)
    clock.advance(MINUTE)
    assert [a.phase for a in monitor.tick(config)] == [Phase.RECOVERY]
    queue(store, config, 1, at=clock.now)
    clock.advance(11 * MINUTE)
    assert [a.phase for a in monitor.tick(config)] == [Phase.ALERT]
    assert smtp.mailbox.subjects()[0].endswith("events have waited more than 10 minutes")


def test_a_restarted_monitor_remembers_what_was_sent(
    smtp: SmtpServer, store: Store, clock: Clock, tmp_path: Path
) -> None:
    config = make_config(smtp.settings())
    first = AlertMonitor(store.path, sender=sender_for(smtp), clock=clock, store=store)
    set_state(store, ConnectorStatus.CREDENTIALS_REJECTED, since=clock.now)
    queue(store, config, 2, at=clock.now)
    assert len(first.tick(config)) == 1
    first.close()

    # A new engine: a new monitor with its own store connection over the same file.
    clock.advance(MINUTE)
    with AlertMonitor(store.path, sender=sender_for(smtp), clock=clock) as second:
        for _ in range(3):
            assert second.tick(config) == []
            clock.advance(MINUTE)
        assert len(smtp.mailbox.raw) == 1
        set_state(store, ConnectorStatus.RUNNING, since=clock.now)
        deliver_all(store, at=clock.now)
        [recovery] = second.tick(config)  # the remembered alert is owed its recovery
        assert recovery.phase is Phase.RECOVERY
    assert len(smtp.mailbox.raw) == 2


# ------------------------------------------------------------------------------------- without SMTP


def test_without_smtp_alerts_are_logged_once_and_recorded(
    store: Store, clock: Clock, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    assert recent_alerts(tmp_path / "absent.db") == [] and open_alerts(tmp_path / "absent.db") == []
    assert recent_alerts(store.path) == []  # a store without the alert tables yet

    config = make_config(None)
    monitor = AlertMonitor(store.path, sender=smtp_sender_for(config, None), clock=clock, store=store)
    assert monitor.sender is None
    set_state(store, ConnectorStatus.CREDENTIALS_REJECTED, since=clock.now)
    with caplog.at_level(logging.INFO, logger="tui_currents.alerts"):
        [alert] = monitor.tick(config)
        clock.advance(MINUTE)
        assert monitor.tick(config) == []
    lines = [r for r in caplog.records if r.name == "tui_currents.alerts"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "Segment rejected the write key" in lines[0].getMessage()
    assert "no SMTP server is configured" in lines[0].getMessage()

    [recorded] = recent_alerts(store.path)
    assert recorded == alert
    assert recorded.email is EmailStatus.NOT_EMAILED and recorded.recipient == CONTACT
    assert f"connector edit {NAME} --write-key-stdin" in recorded.body
    assert open_alerts(store.path) == [recorded]

    set_state(store, ConnectorStatus.IDLE, since=clock.advance(MINUTE))  # nothing waits: nothing to prove
    [recovery] = monitor.tick(config)
    assert [a.id for a in recent_alerts(store.path)] == [recovery.id, alert.id]
    assert recent_alerts(store.path, 1) == [recovery]
    assert recent_alerts(store.path, connector="Other") == []
    assert open_alerts(store.path) == []
    assert monitor.send_pending() == 0


def test_a_removed_connector_is_forgotten(store: Store, clock: Clock) -> None:
    config = make_config(None)
    monitor = AlertMonitor(store.path, sender=None, clock=clock, store=store)
    set_state(store, ConnectorStatus.CREDENTIALS_REJECTED, since=clock.now)
    monitor.tick(config)
    assert len(open_alerts(store.path)) == 1
    monitor.tick(Config(workspaces=config.workspaces))
    assert open_alerts(store.path) == []
    assert len(recent_alerts(store.path)) == 1  # the history stays


async def test_run_ticks_in_a_worker_thread_until_cancelled(store: Store) -> None:
    config = make_config(None)
    monitor = AlertMonitor(store.path, sender=None, store=store)
    set_state(store, ConnectorStatus.CREDENTIALS_REJECTED, since=0)
    task = asyncio.create_task(monitor.run(lambda: config, interval=0.01))
    try:
        for _ in range(200):
            if recent_alerts(store.path):
                break
            await asyncio.sleep(0.01)
        assert [a.kind for a in recent_alerts(store.path)] == [AlertKind.CREDENTIALS]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# ------------------------------------------------------------------------------- failures and secrets


def test_a_failed_send_stays_pending_and_is_sent_at_a_later_tick(
    store: Store, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    server = SmtpServer()  # not started: the port refuses connections
    config = make_config(server.settings())
    monitor = AlertMonitor(store.path, sender=sender_for(server), clock=clock, store=store)
    set_state(store, ConnectorStatus.CREDENTIALS_REJECTED, since=clock.now)
    reject(store, config, 1, at=clock.now)
    try:
        with caplog.at_level(logging.INFO, logger="tui_currents.alerts"):
            monitor.tick(config)  # baseline for dead letters; the credentials alert cannot be sent
            reject(store, config, 1, at=clock.advance(10))
            monitor.tick(config)
            monitor.tick(config)
        failures = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(failures) == 1  # logged once while the same failure lasts
        assert f"could not reach the SMTP server 127.0.0.1:{server.port}" in failures[0].getMessage()
        pending = recent_alerts(store.path)
        assert [(a.kind, a.email) for a in pending] == [
            (AlertKind.DEAD_LETTERS, EmailStatus.PENDING),
            (AlertKind.CREDENTIALS, EmailStatus.PENDING),
        ]
        credentials = pending[1]
        assert credentials.attempts == 3 and "127.0.0.1" in (credentials.last_error or "")

        server.start()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="tui_currents.alerts"):
            clock.advance(10)
            assert monitor.tick(config) == []
        assert server.mailbox.subjects() == [
            f"[tui-currents] Connector '{NAME}': Segment rejected the write key",
            f"[tui-currents] Connector '{NAME}': events are going to the dead letters",
        ]
        assert all(a.email is EmailStatus.SENT for a in recent_alerts(store.path))
        assert any("takes alert emails again" in r.getMessage() for r in caplog.records)
        monitor.tick(config)
        assert len(server.mailbox.raw) == 2
    finally:
        server.stop()


def test_pending_emails_survive_a_restart_and_are_given_up_after_a_day(store: Store, clock: Clock) -> None:
    server = SmtpServer()  # not started yet
    config = make_config(server.settings())
    set_state(store, ConnectorStatus.CREDENTIALS_REJECTED, since=clock.now)
    with AlertMonitor(store.path, sender=sender_for(server), clock=clock, store=store) as first:
        first.tick(config)
    queue(store, config, 1, at=clock.now)
    set_state(store, ConnectorStatus.BACKING_OFF, since=clock.now)
    server.start()
    try:
        clock.advance(MINUTE)
        with AlertMonitor(store.path, sender=sender_for(server), clock=clock, store=store) as second:
            second.tick(config)
            assert len(server.mailbox.raw) == 1
            server.stop()
            clock.advance(2 * HOUR)
            [backlog] = second.tick(config)
            assert backlog.kind is AlertKind.BACKLOG
            clock.advance(DAY + MINUTE)
            second.tick(config)
        assert recent_alerts(store.path)[0].email is EmailStatus.GAVE_UP
    finally:
        server.stop()


def test_secrets_never_reach_emails_records_or_logs(
    home: Home, store: Store, clock: Clock, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_key = "wk_SENTINEL_9f8e7d6c5b4a"
    monkeypatch.setenv(write_key_env_var(NAME), write_key)
    secrets = Secrets(home)
    assert secrets.get_write_key(NAME) == write_key  # read as the engine reads it (and so masked in logs)
    secrets.set_smtp_password(PASSWORD)  # the real keyring backend (encrypted file)

    server = SmtpServer().start()
    try:
        config = make_config(server.settings())
        sender = smtp_sender_for(config, secrets)
        assert PASSWORD not in repr(sender)
        monitor = AlertMonitor(store.path, sender=sender, clock=clock, store=store)
        # Suppose Segment's answer quoted the key back: the alert must still not carry it.
        set_state(
            store,
            ConnectorStatus.CREDENTIALS_REJECTED,
            since=clock.now,
            last_error=f"401: write key {write_key} is invalid",
        )
        with caplog.at_level(logging.DEBUG, logger="tui_currents.alerts"):
            monitor.tick(config)
            assert server.logins == [True] and len(server.mailbox.raw) == 1

            # The server now expects another password: the login fails, and the failure says so plainly.
            server.password = "another-password-123"
            set_state(store, ConnectorStatus.BACKING_OFF, since=clock.now)
            queue(store, config, 1, at=clock.now)
            clock.advance(2 * HOUR)
            monitor.tick(config)
        failed = recent_alerts(store.path)[0]
        assert failed.email is EmailStatus.PENDING
        assert f"refused the login of '{SMTP_USER}'" in (failed.last_error or "")
        assert "535" in (failed.last_error or "")
    finally:
        server.stop()

    texts = [raw.decode("utf-8", "replace") for raw in server.mailbox.raw]
    texts += [f"{a.subject}\n{a.body}\n{a.last_error}" for a in recent_alerts(store.path)]
    texts += [record.getMessage() for record in caplog.records]
    assert any("refused the login" in text for text in texts)
    for text in texts:
        assert PASSWORD not in text and write_key not in text
    for path in store.path.parent.glob("currents.db*"):
        assert PASSWORD.encode() not in path.read_bytes()


# ---------------------------------------------------------------------------------------------- TLS


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls_is_used_and_the_certificate_checked(security: str, tmp_path: Path) -> None:
    cert_file, key_file = support.self_signed_certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    if security == "starttls":  # plain connection, upgraded; login only allowed after the upgrade
        server = SmtpServer(tls_context=server_tls, require_starttls=True, auth_require_tls=True)
    else:  # TLS from the first byte
        # (aiosmtpd does not count TLS from the first byte as TLS for AUTH, hence the False)
        server = SmtpServer(ssl_context=server_tls, auth_require_tls=False)
    server.start()
    try:
        trusting = SmtpSender(
            server.settings(security),
            lambda: PASSWORD,
            timeout=5.0,
            ssl_context=ssl.create_default_context(cafile=str(cert_file)),
        )
        message = email.message.EmailMessage()
        message["Subject"], message["From"], message["To"] = "test", FROM, CONTACT
        message.set_content("hello")
        trusting.send(message)
        assert server.logins == [True] and server.mailbox.subjects() == ["test"]

        untrusting = SmtpSender(server.settings(security), lambda: PASSWORD, timeout=5.0)
        with pytest.raises(SendFailed, match="certificate was not accepted") as failed:
            untrusting.send(message)
        assert failed.value.affects_all
        assert len(server.mailbox.raw) == 1 and server.logins == [True]
    finally:
        server.stop()


def test_the_password_is_never_sent_unencrypted_to_a_remote_host() -> None:
    settings = SmtpSettings(host="192.0.2.1", port=25, from_address=FROM, username=SMTP_USER, security="none")
    asked = []
    sender = SmtpSender(settings, lambda: asked.append(1) or PASSWORD, timeout=1.0)
    with pytest.raises(SendFailed, match="refusing to send the SMTP password unencrypted") as failed:
        sender.send(email.message.EmailMessage())
    assert asked == [] and PASSWORD not in str(failed.value)


def test_the_alert_tables_are_in_the_store_file_in_wal_mode(store: Store, clock: Clock) -> None:
    AlertMonitor(store.path, sender=None, clock=clock, store=store).close()
    db = sqlite3.connect(store.path)
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"alerts", "alert_state", "outbox"} <= tables
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()
    assert oct(store.path.stat().st_mode & 0o777) == "0o600"


def test_a_store_that_cannot_be_read_is_logged_once_and_ticks_go_on(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path / "currents.db")
    monitor = AlertMonitor(store.path, sender=None, clock=clock, store=store)
    store.close()  # the engine's store went away under the monitor
    with caplog.at_level(logging.INFO, logger="tui_currents.alerts"):
        assert monitor.tick(make_config(None)) == []
        assert monitor.tick(make_config(None)) == []
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("alerts: could not check the connectors")
    monitor.close()
