"""Prometheus metrics of `tui-currents run`, scraped from the real service on loopback and parsed with
prometheus_client's parser: every counter agrees with `status --json` and with what Segment's stand-in got."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.service_support import Service, cli_json, free_port, service_env
from tui_currents import catalog, config
from tui_currents.metrics import FILTER_REASONS
from tui_currents.paths import Home
from tui_currents.sandbox import SegmentSandbox
from tui_currents.secrets import receiver_token_env_var, write_key_env_var
from tui_currents.sources.demo import DemoGenerator

WORKSPACE = "prod"
TOKEN = "metrics-test-receiver-token-0123456789"
KEYS = {"Marketing": "metrics-test-write-key-marketing", "Product": "metrics-test-write-key-product"}
EVENTS = {"Marketing": "Email", "Product": "Push notification,Canvas"}


def scrape(text: str) -> dict[str, dict[tuple, float]]:
    """Samples by name, then by their labels (sorted pairs)."""
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def one(samples: dict, name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


def setup_home(home: Home, sandboxes: dict[str, SegmentSandbox]) -> None:
    config.add_workspace(home, config.Workspace(name=WORKSPACE))
    for name, spec in EVENTS.items():
        config.add_connector(
            home,
            config.Connector(
                name=name,
                workspace=WORKSPACE,
                contact_email="ops@example.com",
                region="custom",
                endpoint=sandboxes[name].url,
                events=catalog.resolve_events(spec),
            ),
        )


@pytest.fixture
async def sandboxes() -> AsyncIterator[dict[str, SegmentSandbox]]:
    async with (
        SegmentSandbox(write_keys={KEYS["Marketing"]}, reject_unknown_keys=True) as marketing,
        SegmentSandbox(write_keys={KEYS["Product"]}, reject_unknown_keys=True) as product,
    ):
        yield {"Marketing": marketing, "Product": product}


async def test_metrics_agree_with_status_and_with_what_segment_received(
    home: Home, sandboxes: dict[str, SegmentSandbox]
) -> None:
    setup_home(home, sandboxes)
    generator = DemoGenerator(seed=17)
    events = [generator.event(anonymous=i % 7 == 0) for i in range(300)]
    email = [
        e
        for e in events
        if e["event_type"].startswith("users.messages.email.") and e["user"].get("external_user_id")
    ]
    # Segment refuses one message (dead letter) and fails twice first (retries).
    sandboxes["Marketing"].faults.update(next_statuses=[500, 503], reject_message_ids=[email[0]["id"]])
    port, metrics_port = free_port(), free_port()
    env = service_env(
        TUI_CURRENTS_KEYRING="file",
        **{receiver_token_env_var(WORKSPACE): TOKEN},
        **{write_key_env_var(name): key for name, key in KEYS.items()},
    )
    service = Service(home.root, "--port", str(port), "--metrics-port", str(metrics_port), env=env)
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    receiver = f"http://127.0.0.1:{port}/currents/{WORKSPACE}"
    try:
        await asyncio.to_thread(service.wait_http, metrics_url)
        answers: list[int] = []
        async with httpx.AsyncClient(timeout=30) as client:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            for start in (0, 100, 200, 0):  # the last batch again: Braze redelivers; duplicates
                response = await client.post(
                    receiver, json={"events": events[start : start + 100]}, headers=headers
                )
                answers.append(response.status_code)
            wrong = await client.post(
                receiver, json={"events": events[:3]}, headers={"Authorization": "Bearer no"}
            )
            answers.append(wrong.status_code)
            assert answers == [200, 200, 200, 200, 401]

            async def settled() -> dict:
                while True:
                    samples = scrape((await client.get(metrics_url)).text)
                    waiting = sum(samples.get("tui_currents_backlog_events", {}).values())
                    if samples.get("tui_currents_backlog_events") and waiting == 0:
                        return samples
                    await asyncio.sleep(0.2)

            samples = await asyncio.wait_for(settled(), 60)
            await asyncio.sleep(0.5)  # the last "delivered" marks and histogram observations land together
            samples = scrape((await client.get(metrics_url)).text)
        status = await asyncio.to_thread(cli_json, home.root, "status", "--json", env=env)
    finally:
        assert await asyncio.to_thread(service.stop) == 0, service.stderr()

    by_name = {c["name"]: c for c in status["connectors"]}
    assert set(by_name) == set(KEYS)
    for name, entry in by_name.items():
        counters = entry["counters"]
        for key in ("received", "queued", "delivered", "retried", "dead_lettered", "expired"):
            assert one(samples, f"tui_currents_{key}_events_total", connector=name) == counters[key], (
                name,
                key,
            )
        for reason in FILTER_REASONS:
            assert (
                one(samples, "tui_currents_filtered_events_total", connector=name, reason=reason)
                == counters[reason]
            )
        assert one(samples, "tui_currents_backlog_events", connector=name) == entry["backlog"] == 0
        assert one(samples, "tui_currents_dead_letters", connector=name) == entry["dead_letters"]
        assert one(samples, "tui_currents_oldest_waiting_seconds", connector=name) == 0
        # What the stand-in accepted under the connector's key is what the counter says was delivered.
        assert counters["delivered"] == sandboxes[name].accepted_for(KEYS[name]) > 0
        latency = one(samples, "tui_currents_delivery_latency_seconds_count", connector=name)
        assert latency == counters["delivered"]
        states = {
            dict(labels)["state"]: v
            for labels, v in samples["tui_currents_connector_state"].items()
            if dict(labels)["connector"] == name
        }
        assert sum(states.values()) == 1 and states[entry["state"]] == 1

    marketing = by_name["Marketing"]["counters"]
    assert marketing["retried"] > 0 and marketing["dead_lettered"] == 1
    assert marketing["not_selected"] > 0 and marketing["anonymous"] > 0 and marketing["duplicate"] > 0
    # Totals over every connector.
    for key in ("received", "delivered", "dead_lettered"):
        total = sum(c["counters"][key] for c in status["connectors"])
        assert one(samples, f"tui_currents_all_{key}_events_total") == total
    assert one(samples, "tui_currents_all_backlog_events") == 0
    # The receiver's answers by status code.
    assert one(samples, "tui_currents_receiver_requests_total", code="200") == 4
    assert one(samples, "tui_currents_receiver_requests_total", code="401") == 1


async def test_metrics_are_off_when_disabled_and_never_on_the_receiver_port(home: Home) -> None:
    config.add_workspace(home, config.Workspace(name=WORKSPACE))
    home.config_file.write_text(home.config_file.read_text() + "\n[metrics]\nenabled = false\n")
    port = free_port()
    service = Service(
        home.root,
        "--port",
        str(port),
        env=service_env(TUI_CURRENTS_KEYRING="file", **{receiver_token_env_var(WORKSPACE): TOKEN}),
    )
    try:
        health = await asyncio.to_thread(service.wait_http, f"http://127.0.0.1:{port}/healthz")
        assert health.status_code == 200
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/metrics")).status_code == 404
    finally:
        assert await asyncio.to_thread(service.stop) == 0
    assert "metrics served" not in service.stderr()


def test_a_metrics_port_in_use_is_one_line_and_forwarding_goes_on(home: Home) -> None:
    import socket

    config.add_workspace(home, config.Workspace(name=WORKSPACE))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        port = free_port()
        service = Service(
            home.root,
            "--port",
            str(port),
            "--metrics-port",
            str(busy),
            env=service_env(TUI_CURRENTS_KEYRING="file", **{receiver_token_env_var(WORKSPACE): TOKEN}),
        )
        try:
            assert service.wait_http(f"http://127.0.0.1:{port}/healthz").status_code == 200
        finally:
            assert service.stop() == 0
    text = service.stderr()
    assert f"the metrics listener could not listen on 127.0.0.1:{busy}" in text
    assert "Traceback" not in text


async def test_the_metrics_listener_takes_its_address_from_the_config(home: Home) -> None:
    config.add_workspace(home, config.Workspace(name=WORKSPACE))
    metrics_port = free_port()
    home.config_file.write_text(home.config_file.read_text() + f"\n[metrics]\nport = {metrics_port}\n")
    env = service_env(TUI_CURRENTS_KEYRING="file", **{receiver_token_env_var(WORKSPACE): TOKEN})
    service = Service(home.root, "--port", str(free_port()), env=env)
    try:
        response = await asyncio.to_thread(service.wait_http, f"http://127.0.0.1:{metrics_port}/metrics")
        assert response.status_code == 200
        samples = scrape(response.text)
        assert one(samples, "tui_currents_all_backlog_events") == 0
        assert "tui_currents_build_info" in samples
    finally:
        assert await asyncio.to_thread(service.stop) == 0
