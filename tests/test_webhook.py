"""Alert webhooks: the engine's alerts posted as JSON (Slack-compatible `text`) to a loopback receiver,
retried with backoff, never holding up delivery; the URL kept in the keyring and out of every log."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.support import wait_for
from tui_currents import catalog, config
from tui_currents.alerts import AlertMonitor
from tui_currents.engine import Engine, EngineOptions
from tui_currents.paths import Home
from tui_currents.sandbox import SegmentSandbox
from tui_currents.secrets import Secrets, receiver_token_env_var, write_key_env_var
from tui_currents.sources.demo import DemoGenerator
from tui_currents.store import ConnectorState, Store
from tui_currents.webhook import WebhookPoster

WORKSPACE = "prod"
TOKEN = "webhook-test-receiver-token-0123456789"
KEY = "webhook-test-write-key-0123456789"
HOOK_PATH = "/services/T0000/B0000/webhook-path-secret-0123456789"
FAST = {"backoff_scale": 0.01, "key_poll_seconds": 0.2, "idle_poll_seconds": 0.05, "state_interval": 0.1}


class Hook:
    """A loopback webhook receiver: answers `statuses` first (then 200), or holds each post `hold` seconds."""

    def __init__(self, statuses: list[int] | None = None, hold: float = 0.0):
        self.statuses = list(statuses or [])
        self.hold = hold
        self.posts: list[tuple[float, dict]] = []
        self.accepted: list[dict] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.posts.append((time.monotonic(), body))
        if self.hold:
            await asyncio.sleep(self.hold)
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            self.accepted.append(body)
        return web.Response(status=status, text="ok" if status == 200 else "no")

    async def __aenter__(self) -> Hook:
        app = web.Application()
        app.router.add_post(HOOK_PATH, self._post)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}{HOOK_PATH}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


def add_connector(home: Home, url: str) -> None:
    config.add_workspace(home, config.Workspace(name=WORKSPACE))
    config.add_connector(
        home,
        config.Connector(
            name="Marketing",
            workspace=WORKSPACE,
            contact_email="ops@example.com",
            region="custom",
            endpoint=url,
            events=catalog.resolve_events("Email"),
        ),
    )


def email_events(n: int, seed: int = 5) -> list[dict]:
    generator = DemoGenerator(seed=seed)
    return [generator.event("users.messages.email.Send", anonymous=False) for _ in range(n)]


@pytest.fixture
def secrets(home: Home, monkeypatch: pytest.MonkeyPatch) -> Secrets:
    monkeypatch.setenv(write_key_env_var("Marketing"), KEY)
    monkeypatch.setenv(receiver_token_env_var(WORKSPACE), TOKEN)
    return Secrets(home)


@pytest.fixture
async def sandbox() -> AsyncIterator[SegmentSandbox]:
    async with SegmentSandbox(write_keys={KEY}, reject_unknown_keys=True) as sb:
        yield sb


async def start_engine(home: Home, secrets: Secrets, hook: Hook) -> Engine:
    secrets.set_webhook_url(hook.url)  # the real encrypted keyring file
    config.set_webhook(home, True)
    engine = Engine(
        home, secrets, EngineOptions(receiver_port=0, alert_interval=0.2, delivery_overrides=FAST)
    )
    await engine.start()
    return engine


async def send(engine: Engine, events: list[dict]) -> None:
    import httpx

    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{engine.receiver_url}/currents/{WORKSPACE}",
            json={"events": events},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert response.status_code == 200


async def test_a_rejected_key_is_posted_with_slack_text_and_retried_with_backoff(
    home: Home, secrets: Secrets, sandbox: SegmentSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.faults.update(status_for_keys={KEY: 401})
    add_connector(home, sandbox.url)
    async with Hook(statuses=[500, 503]) as hook:
        engine = await start_engine(home, secrets, hook)
        try:
            await send(engine, email_events(5))
            assert await wait_for(lambda: len(hook.accepted) >= 1, timeout=30), hook.posts
        finally:
            await engine.stop()
    bodies = [body for _, body in hook.posts]
    assert len(bodies) == 3 and len({b["id"] for b in bodies}) == 1  # one alert, posted until taken
    times = [at for at, _ in hook.posts]
    assert times[1] - times[0] >= 0.9 and times[2] - times[1] >= 1.8  # backoff: 1 s, then 2 s
    alert = hook.accepted[0]
    assert isinstance(alert["text"], str) and "Marketing" in alert["text"]
    assert alert["kind"] == "credentials rejected" and alert["phase"] == "alert"
    assert alert["connector"] == "Marketing" and alert["subject"] in alert["text"]
    assert KEY not in json.dumps(alert)
    # The URL is a secret: not in any log line, nor in the config file.
    assert HOOK_PATH not in caplog.text and "webhook-path-secret" not in caplog.text
    assert "webhook-path-secret" not in home.config_file.read_text()
    assert "alert webhook: it answered HTTP 500" in caplog.text


async def test_a_hanging_webhook_never_holds_up_delivery(
    home: Home, secrets: Secrets, sandbox: SegmentSandbox
) -> None:
    events = email_events(40)
    sandbox.faults.update(reject_message_ids=[events[0]["id"]])  # a dead letter: an alert to post
    add_connector(home, sandbox.url)
    async with Hook(hold=30) as hook:
        engine = await start_engine(home, secrets, hook)
        try:
            await send(engine, events[:20])
            assert await wait_for(lambda: len(hook.posts) >= 1, timeout=30)  # the post hangs from now on
            started = time.monotonic()
            await send(engine, events[20:])
            assert await wait_for(lambda: sandbox.accepted_count >= 39, timeout=10)
            assert time.monotonic() - started < 5
            assert not hook.accepted  # still hanging meanwhile
            stopping = time.monotonic()
        finally:
            await engine.stop()
        assert time.monotonic() - stopping < 10  # stopping does not wait for the webhook either
    assert hook.posts[0][1]["kind"] == "dead letters"


def record_rejection(store: Store, monitor: AlertMonitor, cfg: config.Config, name: str) -> None:
    store.set_state(name, ConnectorState(state="credentials rejected", since=time.time()))
    assert monitor.check(cfg)


async def test_old_alerts_are_not_posted_and_a_restart_posts_nothing_twice(home: Home) -> None:
    add_connector(home, "http://127.0.0.1:9/")
    cfg = config.load(home)
    store = Store(home.store_file)
    monitor = AlertMonitor(home.store_file, sender=None, store=store)
    enabled = {"on": False}
    try:
        async with Hook() as hook:
            record_rejection(store, monitor, cfg, "Marketing")  # before the webhook was turned on

            async def run_once(seconds: float) -> None:
                poster = WebhookPoster(home.store_file, lambda: hook.url, poll_seconds=0.05)
                task = asyncio.create_task(poster.run(lambda: enabled["on"]))
                await asyncio.sleep(seconds)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

            await run_once(0.3)
            enabled["on"] = True
            await run_once(0.3)
            assert hook.posts == []  # old news is not posted
            # Idle with nothing waiting: nothing left to prove the key with, so the rejection clears.
            store.set_state("Marketing", ConnectorState(state="idle", since=time.time()))
            assert monitor.check(cfg)  # the recovery
            await run_once(0.5)
            await run_once(0.3)  # a restart
        assert [body["phase"] for _, body in hook.posts] == ["recovery"]
    finally:
        monitor.close()
        store.close()


def cli(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "tui_currents", "--home", str(home), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )


def test_the_webhook_url_is_stored_in_the_keyring_from_stdin_never_in_the_config(home: Home) -> None:
    url = f"https://hooks.example.com{HOOK_PATH}"
    result = cli(home.root, "alerts", "webhook", stdin=url + "\n")
    assert result.returncode == 0, result.stderr
    assert config.load(home).alerts.webhook is True
    assert "webhook-path-secret" not in home.config_file.read_text()
    assert Secrets(home).get_webhook_url() == url
    plain = cli(home.root, "alerts", "webhook", stdin=f"http://hooks.example.com{HOOK_PATH}")
    assert plain.returncode == 2
    assert "use https://" in plain.stderr and "webhook-path-secret" not in plain.stderr
    result = cli(home.root, "alerts", "forget-webhook")
    assert result.returncode == 0, result.stderr
    assert config.load(home).alerts.webhook is False
    assert Secrets(home).get_webhook_url() is None


def test_a_url_written_in_the_config_file_is_refused_without_quoting_it(home: Home) -> None:
    home.config_file.write_text(f'[alerts]\nwebhook = "https://hooks.example.com{HOOK_PATH}"\n')
    with pytest.raises(config.ConfigError) as error:
        config.load(home)
    message = str(error.value)
    assert "the webhook's URL is a secret" in message and "tui-currents alerts webhook" in message
    assert "webhook-path-secret" not in message


async def test_webhook_on_without_a_url_says_how_to_fix_it_and_posts_once_it_is_stored(
    home: Home, caplog: pytest.LogCaptureFixture
) -> None:
    add_connector(home, "http://127.0.0.1:9/")
    cfg = config.load(home)
    store = Store(home.store_file)
    monitor = AlertMonitor(home.store_file, sender=None, store=store)
    stored: dict[str, str | None] = {"url": None}
    try:
        async with Hook() as hook:
            poster = WebhookPoster(
                home.store_file, lambda: stored["url"], poll_seconds=0.05, backoff_seconds=0.1
            )
            task = asyncio.create_task(poster.run(lambda: True))
            await asyncio.sleep(0.3)  # the cursor starts at the newest alert
            record_rejection(store, monitor, cfg, "Marketing")
            assert await wait_for(lambda: "no URL is stored in the keyring" in caplog.text, timeout=5)
            assert "tui-currents alerts webhook" in caplog.text
            stored["url"] = hook.url
            poster.url_changed()
            assert await wait_for(lambda: len(hook.accepted) == 1, timeout=5)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert hook.accepted[0]["kind"] == "credentials rejected"
    finally:
        monitor.close()
        store.close()
