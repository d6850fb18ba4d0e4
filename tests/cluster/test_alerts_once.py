"""One alert per cluster: two instances' alert monitors read the same cluster-wide figures and decide the
same alert at the same moment; the first to claim the episode in the cluster emails it (and posts it to its
webhook), the other records it as sent by another instance. The same for the recovery, and a new episode
is claimed again. Real NATS cluster, real SMTP server on loopback, each instance with its own home file."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

from tests.cluster.conftest import OpenOutbox
from tests.cluster.test_jetstream_outbox import eventually
from tests.test_alerts import NAME, Clock, SmtpServer, make_config, sender_for
from tui_currents.alerts import AlertKind, AlertMonitor, EmailStatus, Phase, recent_alerts
from tui_currents.cluster import JetStreamOutbox
from tui_currents.store import ConnectorState, ConnectorStatus, Store, webhook_cursor


def instance(open_outbox: OpenOutbox, name: str, folder: Path) -> JetStreamOutbox:
    """An instance's queue on the cluster, with its home's own alert log (as open_outbox gives a member)."""
    outbox = open_outbox(instance=name)
    outbox.side_tables = Store(folder / f"{name}.db")
    return outbox


def tick_both(monitors: list[AlertMonitor], config) -> None:
    """Both monitors check at the same moment, as two instances do."""
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda monitor: monitor.tick(config), monitors))


def fates(outboxes: list[JetStreamOutbox]) -> list[tuple[str, str, EmailStatus]]:
    """Every instance's recorded alerts: (phase, instance, email status), oldest first."""
    return sorted(
        (alert.phase.value, outbox.instance, alert.email)
        for outbox in outboxes
        for alert in recent_alerts(outbox.side_tables.path)
    )


def test_an_alert_and_its_recovery_go_out_once_per_cluster(open_outbox: OpenOutbox, tmp_path: Path):
    smtp = SmtpServer().start()
    try:
        outboxes = [instance(open_outbox, name, tmp_path) for name in ("a", "b")]
        clock = Clock()
        config = make_config(smtp.settings())
        monitors = [
            AlertMonitor(o.side_tables.path, sender=sender_for(smtp), clock=clock, store=cast("Store", o))
            for o in outboxes
        ]
        tick_both(monitors, config)

        rejected = ConnectorState(ConnectorStatus.CREDENTIALS_REJECTED, since=clock.now, last_error="401")
        outboxes[0].set_state(NAME, rejected)
        assert eventually(lambda: NAME in outboxes[1].states())  # heard by the other instance
        tick_both(monitors, config)
        assert len(smtp.mailbox.raw) == 1
        alerts = fates(outboxes)
        assert [(phase, email) for phase, _, email in alerts] in (
            [("alert", EmailStatus.ANOTHER_INSTANCE), ("alert", EmailStatus.SENT)],
            [("alert", EmailStatus.SENT), ("alert", EmailStatus.ANOTHER_INSTANCE)],
        )
        sender = next(name for _, name, email in alerts if email is EmailStatus.SENT)

        # The webhook of each instance posts only what that instance sent.
        posted = [
            webhook_cursor.next_alerts(o.side_tables.path, enabled=True, started_at=0.0, limit=50)
            for o in outboxes
        ]
        assert [len(rows) for rows in posted] == [1, 0] if sender == "a" else [0, 1]

        clock.advance(60)
        outboxes[1].set_state(NAME, ConnectorState(ConnectorStatus.RUNNING, since=clock.now))
        assert eventually(lambda: outboxes[0].states()[NAME].state == ConnectorStatus.RUNNING)
        tick_both(monitors, config)
        assert len(smtp.mailbox.raw) == 2
        recoveries = [(name, email) for phase, name, email in fates(outboxes) if phase == Phase.RECOVERY]
        assert sorted(email for _, email in recoveries) == sorted(
            [EmailStatus.SENT, EmailStatus.ANOTHER_INSTANCE]
        )

        # A new episode is claimed again, once.
        clock.advance(3600)  # past the rate limit of one alert per kind and connector
        outboxes[0].set_state(NAME, rejected)
        assert eventually(lambda: outboxes[1].states()[NAME].state == ConnectorStatus.CREDENTIALS_REJECTED)
        tick_both(monitors, config)
        assert len(smtp.mailbox.raw) == 3
        subjects = [str(m["Subject"]) for m in smtp.mailbox.messages()]
        assert "rejected the write key" in subjects[0] and "accepts the write key again" in subjects[1]
        assert "rejected the write key" in subjects[2]
        kinds = {a.kind for o in outboxes for a in recent_alerts(o.side_tables.path)}
        assert kinds == {AlertKind.CREDENTIALS}
    finally:
        smtp.stop()


def test_an_instance_lagging_behind_cannot_claim_the_recovery_of_a_newer_episode(open_outbox: OpenOutbox):
    a, b = open_outbox(instance="a"), open_outbox(instance="b")
    kind = AlertKind.BACKLOG.value
    assert a.claim_alert(NAME, kind, "alert") is True
    assert b.claim_alert(NAME, kind, "alert") is False  # b joins a's episode
    assert a.claim_alert(NAME, kind, "alert") is True  # a record that failed after the claim is redone
    assert a.claim_alert(NAME, kind, "recovery") is True
    assert a.claim_alert(NAME, kind, "alert") is True  # a new episode, before b saw the recovery
    assert b.claim_alert(NAME, kind, "recovery") is False  # b's episode was recovered already
    assert b.claim_alert(NAME, kind, "alert") is False  # the new episode is a's
    assert b.claim_alert(NAME, kind, "recovery") is True  # b recovers the episode it now takes part in
    assert a.claim_alert(NAME, kind, "recovery") is False
    assert a.claim_alert(NAME, AlertKind.DEAD_LETTERS.value, "alert") is True  # kinds are apart
