"""The alert monitor: reads the store, steps the rules, records what they decide, sends pending emails."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from tui_currents.alerts.records import Alert, EmailStatus
from tui_currents.alerts.rules import AlertKind, Memory, Phase, Reading, Thresholds, step
from tui_currents.alerts.smtp import SendFailed
from tui_currents.alerts.wording import Facts, compose, headline
from tui_currents.alerts.wording import _duration as duration
from tui_currents.config import Config
from tui_currents.connector_view import ConnectorView, EngineSighting, ReceiverProblem, connector_views
from tui_currents.store import Store, StoreUnavailable
from tui_currents.store.alert_log import NewAlert

log = logging.getLogger("tui_currents.alerts")


class AlertSender(Protocol):
    """Something that delivers a recorded alert to a person (the SMTP sender is one)."""

    @property
    def server(self) -> str:
        """Where alerts go, for log lines (never holding a secret)."""
        ...

    def send_alert(self, alert: Alert) -> None:
        """Deliver one alert; raise SendFailed with a message a person can act on."""
        ...


class AlertMonitor:
    """Decides, records, logs and emails a connector's alerts; see the package's docstring.

    `store_path` is the store's SQLite file (the alert tables are part of its schema). Pass the engine's
    open `store` to read and record through it; otherwise the monitor opens its own. `sender` is an
    SmtpSender (or another AlertSender), or None when no SMTP server is configured (alerts are then logged
    and recorded only); the engine may replace `monitor.sender` after a config change. `clock` gives the
    time (seconds since the epoch). Thread-safe; `tick` is meant to be called from a worker thread.
    """

    def __init__(
        self,
        store_path: Path | str,
        *,
        sender: AlertSender | None,
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
        self._store = store if store is not None else Store(self.path)  # creates the alert tables too
        self._lock = threading.RLock()
        self._last_failure: str | None = None  # the last send failure logged (not repeated every tick)
        self._last_check_error: str | None = None
        self._last_send_error: str | None = None

    def close(self) -> None:
        """Close the monitor's own store, if it opened one."""
        with self._lock:
            if self._own_store:
                self._store.close()

    def __enter__(self) -> AlertMonitor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the engine's entry points

    def tick(self, config: Config) -> list[Alert]:
        """One round: `check` then `send_pending`. Never raises: problems are logged (once while the same
        problem lasts). Returns the new alerts and recoveries."""
        with self._lock:
            new: list[Alert] = []
            try:
                new = self.check(config)
                self._last_check_error = None
            except Exception as exc:
                if str(exc) != self._last_check_error:
                    self._last_check_error = str(exc)
                    log.error("alerts: could not check the connectors (tried again at each check): %s", exc)
            try:
                self.send_pending()
                self._last_send_error = None
            except Exception as exc:
                # The same store problem as the check's is not told twice.
                if str(exc) not in (self._last_send_error, self._last_check_error):
                    log.error("alerts: could not send the pending alert emails: %s", exc)
                self._last_send_error = str(exc)
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
        """Read the store, step the rules, and record the alerts that begin or end (pending an email when
        a sender is set and the connector has a contact email). Returns them, oldest first."""
        with self._lock:
            now = self.clock()
            changed: dict[tuple[str, str], str] = {}
            drafts: list[NewAlert] = []
            stored = self._store.alert_memories()
            for view in self.connector_views(config, now):
                reading = self._reading(view)
                connector = view.configured
                assert connector is not None  # connector_views gives the configured ones only
                for kind in AlertKind:
                    key = (connector.name, kind.value)
                    before = stored.get(key)
                    memory = Memory.from_json(before) if before is not None else Memory()
                    result = step(kind, memory, reading, now, self.thresholds)
                    if result.phase is not None:
                        facts = Facts(connector, reading, result.memory, now, self.thresholds)
                        drafts.append(self._draft(kind, result.phase, facts))
                    after = result.memory.to_json()
                    if after != before:
                        changed[key] = after
            names = {c.name for c in config.connectors}
            gone = [key for key in stored if key[0] not in names]
            if not drafts and not changed and not gone:
                return []
            drafts = [self._claimed(draft) for draft in drafts]
            alerts = [Alert.from_record(r) for r in self._store.record_alerts(drafts, changed, gone)]
            for alert in alerts:
                self._log(alert)
            return alerts

    def connector_views(self, config: Config, now: float) -> list[ConnectorView]:
        """Every configured connector as `status` and the terminal app see it (the engine runs here)."""
        problems = {
            workspace: ReceiverProblem(text, since)
            for workspace, (text, since) in self._store.receiver_problems().items()
        }
        engine = EngineSighting.this_process(problems)
        return connector_views(config.connectors, self._store, engine, now=now)

    def _reading(self, view: ConnectorView) -> Reading:
        name = view.name
        connector = view.configured
        assert connector is not None
        token = view.token_problem
        return Reading(
            state=view.recorded,
            backlog=view.backlog,
            delivered=view.delivered,
            dead_lettered=view.dead_lettered,
            active=view.active,
            retention_days=connector.retention_days,
            newest_dead_letters=lambda n: self._store.dead_letters(name, limit=n),
            enabled=view.enabled,
            token_problem=token.text if token else None,
            token_problem_since=token.since if token else None,
        )

    def _draft(self, kind: AlertKind, phase: Phase, facts: Facts) -> NewAlert:
        subject, body = compose(kind, phase, facts, self.host_name)
        connector = facts.connector
        recipient = connector.contact_email or None
        email = EmailStatus.PENDING if self.sender is not None and recipient else EmailStatus.NOT_EMAILED
        return NewAlert(
            facts.now, connector.name, kind.value, phase.value, facts.memory.since, recipient, subject, body,
            email.value,
        )  # fmt: skip

    def _claimed(self, draft: NewAlert) -> NewAlert:
        """On a cluster every instance decides the same alert from the same figures: only the instance
        that claims the episode first sends it (email and webhook); the others record it as sent by
        another instance. A claim that cannot be made (NATS unreachable) sends it: twice is better than
        never."""
        claim = getattr(self._store, "claim_alert", None)  # a cluster queue's; a single box has none
        if claim is None:
            return draft
        try:
            won = claim(draft.connector, draft.kind, draft.phase)
        except StoreUnavailable as exc:
            log.warning(
                "alerts: could not claim %r for this instance, so it is sent here: %s", draft.subject, exc
            )
            return draft
        return draft if won else dataclasses.replace(draft, email=EmailStatus.ANOTHER_INSTANCE.value)

    def _log(self, alert: Alert) -> None:
        if alert.email is EmailStatus.ANOTHER_INSTANCE:
            how = "sent by the instance of the cluster that raised it first"
        elif alert.email is EmailStatus.PENDING:
            how = f"emailing {alert.recipient}"
        elif self.sender is None:
            how = "not emailed: no SMTP server is configured ([smtp] in the config)"
        else:
            how = "not emailed: the connector has no contact email"
        level = logging.WARNING if alert.phase is Phase.ALERT else logging.INFO
        log.log(level, "%s: %s (%s)", alert.phase.value, headline(alert.subject), how)

    # ------------------------------------------------------------------ sending

    def send_pending(self) -> int:
        """Email the pending alerts, oldest first; returns how many were sent. A failure is logged (once
        while it lasts) and the email stays pending for the next round; one the server cannot take at all
        stops the round. Emails pending longer than `Thresholds.give_up_after` are given up."""
        with self._lock:
            store = self._store
            now = self.clock()
            for record in store.pending_alerts(before=now - self.thresholds.give_up_after):
                store.alert_given_up(record.id)
                log.error(
                    "alerts: gave up emailing %r to %s after %d attempts over %s; last error: %s",
                    record.subject, record.recipient, record.attempts,
                    duration(self.thresholds.give_up_after), record.last_error or "none",
                )  # fmt: skip
            sender = self.sender
            if sender is None:
                return 0
            sent = 0
            for record in store.pending_alerts():
                alert = Alert.from_record(record)
                try:
                    sender.send_alert(alert)
                except SendFailed as failed:
                    reason = str(failed)
                    store.alert_send_failed(alert.id, reason)
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
                store.alert_sent(alert.id, self.clock())
                sent += 1
                if self._last_failure is not None:
                    self._last_failure = None
                    log.info("alerts: the SMTP server %s takes alert emails again", sender.server)
                log.info("alerts: emailed %r to %s", alert.subject, alert.recipient)
            return sent
