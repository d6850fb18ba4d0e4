"""The engine end to end on loopback: Braze-like posts -> receiver -> store -> delivery -> Segment sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support import delivery_layout, wait_for  # noqa: F401 - a fixture, used by name
from tui_currents import catalog, config, control
from tui_currents.engine import Engine, EngineLocked, EngineOptions
from tui_currents.paths import Home
from tui_currents.sandbox import SegmentSandbox
from tui_currents.secrets import Secrets, receiver_token_env_var, write_key_env_var
from tui_currents.sources.demo import DemoGenerator
from tui_currents.store import Store

WORKSPACE = "prod"
TOKEN = "receiver-token-for-engine-tests-0123456789"
KEY = "engine-test-write-key-1"
pytestmark = pytest.mark.usefixtures("delivery_layout")
FAST = {"backoff_scale": 0.01, "key_poll_seconds": 0.2, "idle_poll_seconds": 0.05, "state_interval": 0.1}


def add_connector(home: Home, url: str, name: str = "Marketing", events: list[str] | None = None, **kw):
    cfg = config.load(home)
    if not any(w.name == WORKSPACE for w in cfg.workspaces):
        config.add_workspace(home, config.Workspace(name=WORKSPACE))
    connector = config.Connector(
        name=name,
        workspace=WORKSPACE,
        contact_email="ops@example.com",
        region="custom",
        endpoint=url,
        events=events if events is not None else catalog.supported_types(),
        **kw,
    )
    config.add_connector(home, connector)
    return connector


@pytest.fixture
async def sandbox() -> AsyncIterator[SegmentSandbox]:
    async with SegmentSandbox(write_keys={KEY}, reject_unknown_keys=True) as sb:
        yield sb


@pytest.fixture
def env_secrets(home: Home, monkeypatch: pytest.MonkeyPatch) -> Secrets:
    """Keys through the per-connector environment overrides (no keyring cost)."""
    monkeypatch.setenv(write_key_env_var("Marketing"), KEY)
    monkeypatch.setenv(receiver_token_env_var(WORKSPACE), TOKEN)
    return Secrets(home)


@pytest.fixture
async def engine(home: Home, env_secrets: Secrets, sandbox: SegmentSandbox) -> AsyncIterator[Engine]:
    add_connector(home, sandbox.url)
    eng = Engine(home, env_secrets, EngineOptions(receiver_port=0, delivery_overrides=FAST))
    await eng.start()
    try:
        yield eng
    finally:
        await eng.stop()


async def post(engine: Engine, events: list[dict], token: str = TOKEN) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(
            f"{engine.receiver_url}/currents/{WORKSPACE}",
            json={"events": events},
            headers={"Authorization": f"Bearer {token}", "Braze-Currents-Version": "1"},
        )


def known_events(n: int, seed: int = 7, anonymous: bool = False) -> list[dict]:
    gen = DemoGenerator(seed=seed)
    return [gen.event(anonymous=anonymous) for _ in range(n)]


async def test_posted_events_reach_segment_mapped_once_each(engine: Engine, sandbox: SegmentSandbox) -> None:
    events = known_events(300)
    for i in range(0, 300, 100):
        response = await post(engine, events[i : i + 100])
        assert response.status_code == 200
    # Braze redelivers at least once: the same batch again must not reach Segment twice.
    assert (await post(engine, events[:100])).status_code == 200
    assert await wait_for(lambda: sandbox.accepted_count >= 300)
    await asyncio.sleep(0.3)
    assert sandbox.accepted_count == 300
    assert sandbox.duplicates == 0
    by_id = {m["messageId"]: m for m in sandbox.accepted}
    for event in events:
        message = by_id[event["id"]]
        assert message["type"] == "track"
        assert message["event"] == catalog.find(event["event_type"]).segment_event
        assert message["userId"] == event["user"]["external_user_id"]
        assert message["anonymousId"] == event["user"]["user_id"]
    assert not sandbox.violations
    # Each request carried a fresh sentAt and the retry count header.
    assert all(r.retry_count == 0 for r in sandbox.requests)


async def test_a_wrong_token_is_refused_and_nothing_is_sent(engine: Engine, sandbox: SegmentSandbox) -> None:
    response = await post(engine, known_events(5), token="not-the-token-0123456789")
    assert response.status_code in (401, 403)
    await asyncio.sleep(0.3)
    assert sandbox.accepted_count == 0


async def test_selection_change_applies_live_and_queued_events_still_go(
    engine: Engine, sandbox: SegmentSandbox, home: Home
) -> None:
    email_send = "users.messages.email.Send"
    gen = DemoGenerator(seed=3)
    sandbox.faults.update(outage=True)  # hold deliveries so the first events stay queued
    before = [gen.event(email_send, anonymous=False) for _ in range(20)]
    assert (await post(engine, before)).status_code == 200
    connector = config.load(home).connector("Marketing")
    connector.events = [e for e in connector.events if e != email_send]
    config.update_connector(home, "Marketing", connector)
    assert await wait_for(lambda: email_send not in engine.config.connector("Marketing").events)
    after = [gen.event(email_send, anonymous=False) for _ in range(20)]
    assert (await post(engine, after)).status_code == 200
    sandbox.faults.update(outage=False)
    assert await wait_for(lambda: sandbox.accepted_count >= 20)
    await asyncio.sleep(0.3)
    delivered = {m["messageId"] for m in sandbox.accepted}
    assert delivered == {e["id"] for e in before}
    totals = engine.store.counter_totals("Marketing")
    assert totals.get("not_selected", 0) == 20


async def test_credentials_rejected_then_a_new_key_resumes_without_restart(
    home: Home, sandbox: SegmentSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(receiver_token_env_var(WORKSPACE), TOKEN)
    secrets = Secrets(home)  # the real encrypted-file keyring of the test home
    secrets.set_write_key("Marketing", "stale-key-from-an-old-source")
    add_connector(home, sandbox.url)
    eng = Engine(home, secrets, EngineOptions(receiver_port=0, delivery_overrides=FAST))
    await eng.start()
    try:
        events = known_events(50, seed=11)
        assert (await post(eng, events)).status_code == 200
        assert await wait_for(
            lambda: (
                eng.store.states().get("Marketing", None) is not None
                and eng.store.states()["Marketing"].state == "credentials rejected"
            )
        )
        assert sandbox.accepted_count == 0
        assert eng.store.backlog("Marketing").messages == 50  # kept, not dropped
        # A console (another process) saves the new key and asks the engine to reload.
        Secrets(home).set_write_key("Marketing", KEY)
        ctl = control.Control(home.store_file)
        ctl.post(control.RELOAD)
        ctl.close()
        assert await wait_for(lambda: sandbox.accepted_count == 50, timeout=15)
        assert await wait_for(lambda: eng.store.states()["Marketing"].state in ("running", "idle"))
    finally:
        await eng.stop()


async def test_restart_resumes_the_backlog(home: Home, env_secrets: Secrets, sandbox: SegmentSandbox) -> None:
    add_connector(home, sandbox.url)
    sandbox.faults.update(outage=True)
    first = Engine(home, env_secrets, EngineOptions(receiver_port=0, delivery_overrides=FAST))
    await first.start()
    events = known_events(120, seed=5)
    assert (await post(first, events)).status_code == 200
    await asyncio.sleep(0.3)
    await first.stop()
    assert sandbox.accepted_count == 0
    sandbox.faults.update(outage=False)
    second = Engine(home, env_secrets, EngineOptions(receiver_port=0, delivery_overrides=FAST))
    await second.start()
    try:
        assert await wait_for(lambda: sandbox.accepted_count == 120, timeout=15)
        assert {m["messageId"] for m in sandbox.accepted} == {e["id"] for e in events}
    finally:
        await second.stop()


async def test_one_engine_per_home(engine: Engine, home: Home, env_secrets: Secrets) -> None:
    second = Engine(home, env_secrets, EngineOptions(receiver_port=0))
    with pytest.raises(EngineLocked, match="already running"):
        await second.start()


async def test_send_test_events_sends_one_of_each_selected_type(
    home: Home, env_secrets: Secrets, sandbox: SegmentSandbox
) -> None:
    selected = catalog.resolve_events("Email,SMS")
    add_connector(home, sandbox.url, events=selected)
    eng = Engine(home, env_secrets, EngineOptions(receiver_port=0, delivery_overrides=FAST))
    await eng.start()
    try:
        ctl = control.Control(home.store_file)
        ctl.post(control.SEND_TEST_EVENTS, connector="Marketing")
        ctl.close()
        assert await wait_for(lambda: sandbox.accepted_count == len(selected), timeout=10)
        names = sorted(m["event"] for m in sandbox.accepted)
        assert names == sorted(catalog.find(t).segment_event for t in selected)
    finally:
        await eng.stop()


async def test_paused_connector_keeps_events_until_resumed(
    engine: Engine, sandbox: SegmentSandbox, home: Home
) -> None:
    config.set_paused(home, "Marketing", True)
    assert await wait_for(
        lambda: (
            engine.store.states().get("Marketing") is not None
            and engine.store.states()["Marketing"].state == "paused"
        )
    )
    events = known_events(30, seed=9)
    assert (await post(engine, events)).status_code == 200
    await asyncio.sleep(0.5)
    assert sandbox.accepted_count == 0
    assert Store(home.store_file, readonly=True).backlog("Marketing").messages == 30
    config.set_paused(home, "Marketing", False)
    assert await wait_for(lambda: sandbox.accepted_count == 30)


async def test_a_rejected_key_emails_the_contact_through_the_configured_smtp(
    home: Home, env_secrets: Secrets, sandbox: SegmentSandbox, unused_tcp_port: int
) -> None:
    from aiosmtpd.controller import Controller

    received: list[str] = []

    class Keep:
        async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
            received.append(envelope.content.decode("utf-8", "replace"))
            return "250 OK"

    smtp = Controller(Keep(), hostname="127.0.0.1", port=unused_tcp_port)
    smtp.start()
    try:
        add_connector(home, sandbox.url)
        cfg = config.load(home)
        cfg.smtp = config.SmtpSettings(
            host="127.0.0.1", port=unused_tcp_port, from_address="tc@example.com", security="none"
        )
        config.save(home, cfg)
        sandbox.faults.update(status_for_keys={KEY: 401})
        eng = Engine(
            home, env_secrets, EngineOptions(receiver_port=0, delivery_overrides=FAST, alert_interval=0.2)
        )
        await eng.start()
        try:
            assert (await post(eng, known_events(10, seed=2))).status_code == 200
            assert await wait_for(lambda: any("ops@example.com" in m for m in received), timeout=15)
            mail = next(m for m in received if "ops@example.com" in m)
            assert "Marketing" in mail and "rejected" in mail.lower()
            assert KEY not in mail and TOKEN not in mail
        finally:
            await eng.stop()
    finally:
        smtp.stop()
