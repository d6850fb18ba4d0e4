"""What one instance learns from Segment holds on every instance sharing the cluster queue: a Retry-After
pauses every instance's delivery of that connector, a refused write key stops every instance sending with
it, and a new key resumes them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from tests.cluster.conftest import OpenOutbox
from tests.cluster.test_jetstream_outbox import C1, batch
from tests.support import wait_for
from tui_currents import segment
from tui_currents.delivery import ConnectorDelivery
from tui_currents.outbox import ConnectorStatus
from tui_currents.sandbox import SegmentSandbox

KEY = "shared-holds-write-key-1"
NEW_KEY = "shared-holds-write-key-2"
FAST = {"backoff_scale": 0.01, "key_poll_seconds": 0.2, "idle_poll_seconds": 0.05, "state_interval": 0.1}


@pytest.fixture
async def sandbox() -> AsyncIterator[SegmentSandbox]:
    async with SegmentSandbox(write_keys={KEY, NEW_KEY}) as sb:
        yield sb


@contextlib.asynccontextmanager
async def two_instances(
    open_outbox: OpenOutbox, sandbox: SegmentSandbox, key: Callable[[], str]
) -> AsyncIterator[tuple[list, list[ConnectorDelivery]]]:
    """Two instances of the same queue (two JetStreamOutbox), each with its delivery of C1 running."""
    outboxes = [open_outbox("a"), open_outbox("b")]
    async with httpx.AsyncClient() as client:
        deliveries = [
            ConnectorDelivery(outbox, C1, segment.batch_url("us", sandbox.url), key, client=client, **FAST)
            for outbox in outboxes
        ]
        tasks = [asyncio.create_task(d.run()) for d in deliveries]
        try:
            yield outboxes, deliveries
        finally:
            for d in deliveries:
                await d.stop()
            await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_retry_after_answered_to_one_instance_pauses_both(
    open_outbox: OpenOutbox, sandbox: SegmentSandbox
):
    sandbox.faults.update(next_statuses=[429], retry_after=3)
    async with two_instances(open_outbox, sandbox, lambda: KEY) as (outboxes, deliveries):
        for i in range(20):  # enough batch messages for both instances to hold some
            await asyncio.to_thread(outboxes[i % 2].commit, batch(5)[0], source="test")
        assert await wait_for(lambda: any(r.status == 429 for r in sandbox.requests), timeout=15)
        paused_at = next(r.at for r in sandbox.requests if r.status == 429)
        assert await wait_for(
            lambda: all(d.state is not None and d.state.state == ConnectorStatus.PAUSED for d in deliveries),
            timeout=2,
        ), [d.state for d in deliveries]
        assert await wait_for(lambda: sandbox.accepted_count == 100, timeout=20)
        during = [r for r in sandbox.requests if paused_at + 0.5 < r.at < paused_at + 2.8]
        assert during == []  # neither sent while Segment asked to wait (but what was on its way)
        assert sandbox.duplicates == 0


async def test_a_refused_key_stops_both_and_a_new_key_resumes_both(
    open_outbox: OpenOutbox, sandbox: SegmentSandbox
):
    sandbox.faults.update(status_for_keys={KEY: 401})
    current = {"key": KEY}
    a, b = open_outbox("a"), open_outbox("b")
    for i in range(20):
        await asyncio.to_thread((a, b)[i % 2].commit, batch(5)[0], source="test")
    async with httpx.AsyncClient() as client:
        url = segment.batch_url("us", sandbox.url)
        first = ConnectorDelivery(a, C1, url, lambda: current["key"], client=client, **FAST)
        second = ConnectorDelivery(b, C1, url, lambda: current["key"], client=client, **FAST)
        tasks = [asyncio.create_task(first.run())]
        try:
            assert await wait_for(lambda: _refused(first), timeout=10), first.state
            assert len(sandbox.requests) == 1
            tasks.append(asyncio.create_task(second.run()))  # starts after the refusal: never tries the key
            assert await wait_for(lambda: _refused(second), timeout=10), second.state
            await asyncio.sleep(1.0)
            assert len(sandbox.requests) == 1
            current["key"] = NEW_KEY  # e.g. `connector edit` on any instance, mirrored to every one
            for delivery in (first, second):
                delivery.credentials_changed()
            assert await wait_for(lambda: sandbox.accepted_count == 100, timeout=20)
            assert {r.status for r in list(sandbox.requests)[1:]} == {200}
        finally:
            for delivery in (first, second):
                await delivery.stop()
            await asyncio.gather(*tasks, return_exceptions=True)


def _refused(delivery: ConnectorDelivery) -> bool:
    return delivery.state is not None and delivery.state.state == ConnectorStatus.CREDENTIALS_REJECTED
