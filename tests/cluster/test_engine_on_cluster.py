"""The engine on a member home: posts from Braze go through the cluster queue to the Segment stand-in;
with two of three NATS nodes gone, a post is answered 503 with Retry-After (nothing acknowledged), and
when they come back posts are answered 200 again and delivery resumes by itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.cluster.conftest import NatsCluster, member_config
from tests.support import wait_for
from tests.test_engine import FAST, KEY, TOKEN, WORKSPACE, add_connector, env_secrets, known_events
from tui_currents.cluster import JetStreamOutbox
from tui_currents.engine import Engine, EngineOptions
from tui_currents.paths import Home
from tui_currents.sandbox import SegmentSandbox
from tui_currents.secrets import Secrets
from tui_currents.store import Store

__all__ = ["env_secrets"]  # a fixture, used by name


async def post(engine: Engine, events: list[dict]) -> httpx.Response:
    """A post as Braze makes it, waiting as long as the receiver may take to answer (a commit without a
    quorum gives up after twice the queue's timeout)."""
    async with httpx.AsyncClient(timeout=40.0) as client:
        return await client.post(
            f"{engine.receiver_url}/currents/{WORKSPACE}",
            json={"events": events},
            headers={"Authorization": f"Bearer {TOKEN}", "Braze-Currents-Version": "1"},
        )


@pytest.fixture
async def sandbox() -> AsyncIterator[SegmentSandbox]:
    async with SegmentSandbox(write_keys={KEY}, reject_unknown_keys=True) as sb:
        yield sb


@pytest.fixture
async def member_engine(
    home: Home, env_secrets: Secrets, sandbox: SegmentSandbox, nats_cluster: NatsCluster, queue_name: str
) -> AsyncIterator[Engine]:
    add_connector(home, sandbox.url)
    member_config(home.root, nats_cluster.urls, queue_name)
    engine = Engine(home, env_secrets, EngineOptions(receiver_port=0, delivery_overrides=FAST))
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


async def test_the_engine_of_a_member_home_forwards_through_the_cluster(
    member_engine: Engine, sandbox: SegmentSandbox
):
    assert isinstance(member_engine.store, JetStreamOutbox)
    events = known_events(50)
    assert (await post(member_engine, events)).status_code == 200
    assert await wait_for(lambda: sandbox.accepted_count == 50, timeout=20)
    outbox = member_engine.store
    address = member_engine.receiver_url
    assert await wait_for(lambda: outbox._instances.get(outbox.instance, {}).get("address") == address, 5)
    assert outbox._instances[outbox.instance]["state"] == "running"
    # the alert monitor reads the cluster's figures and keeps its log in the home's own SQLite file
    assert member_engine._alerts is not None and member_engine.config is not None
    assert member_engine._alerts.check(member_engine.config) == []
    memories = outbox.alert_memories()
    assert ("Marketing", "dead letters") in memories and outbox.receiver_problems() == {}
    with Store(member_engine.home.store_file) as local:
        assert local.alert_memories() == memories


async def test_quorum_lost_while_running_is_503_and_recovers_by_itself(
    member_engine: Engine, sandbox: SegmentSandbox, nats_cluster: NatsCluster
):
    before = known_events(30, seed=1)
    assert (await post(member_engine, before)).status_code == 200
    assert await wait_for(lambda: sandbox.accepted_count == 30, timeout=20)

    nats_cluster.kill(1)
    nats_cluster.kill(2)
    during = known_events(20, seed=2)
    began = time.monotonic()
    answer = await post(member_engine, during)
    assert answer.status_code == 503, answer.text
    assert int(answer.headers["Retry-After"]) > 0
    assert time.monotonic() - began < 35  # answered within the receiver's bound
    await asyncio.sleep(1.0)
    assert sandbox.accepted_count == 30  # nothing of the refused batch went anywhere

    nats_cluster.restart(1, wait=False)
    nats_cluster.restart(2, wait=False)
    deadline = time.monotonic() + 60
    while True:  # as Braze does: the refused batch is sent again until it is acknowledged
        answer = await post(member_engine, during)
        if answer.status_code == 200:
            break
        assert answer.status_code == 503, answer.text
        assert time.monotonic() < deadline, "posts were not accepted again once the nodes were back"
        await asyncio.sleep(1.0)
    assert await wait_for(lambda: sandbox.accepted_count == 50, timeout=60)  # delivery resumed by itself
    assert {m["messageId"] for m in sandbox.accepted} == {e["id"] for e in before + during}
