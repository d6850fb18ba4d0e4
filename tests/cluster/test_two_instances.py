"""Two `tui-currents run` instances on one 3-node JetStream cluster, posted to alternately: one instance
SIGKILLed and restarted and one NATS node SIGKILLed during the run, and every acknowledged event still
reaches the Segment stand-in (duplicates only under the same messageId); a Retry-After from Segment
pauses both instances."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.cluster.conftest import NatsCluster
from tests.cluster.two_instances import member_homes, run_two
from tests.reliability.harness import (
    WRITE_KEY,
    BrazeSender,
    EngineProcess,
    StandIn,
    engine_env,
    make_batches,
    pause_violations,
    wait_delivered,
)


async def test_every_acknowledged_event_arrives_through_kills_of_an_instance_and_a_node(
    tmp_path: Path, nats_cluster: NatsCluster, queue_name: str
):
    run = await run_two(tmp_path, nats_cluster, queue_name, events=20_000)
    assert (run.instance_kills, run.node_kills) == (1, 1)
    assert run.acknowledged == run.sent == 20_000, run.statuses
    assert not run.lost, f"{len(run.lost)} acknowledged events never reached Segment"
    assert run.unexpected == 0  # every arrival is a sent event: a duplicate repeats a messageId
    assert run.violations == 0
    assert run.duplicates < run.acknowledged // 10  # only what was in flight at a kill is sent again


# Two services end to end, with `-m soak`; every run keeps the shared hold's own test (test_shared_holds.py).
@pytest.mark.soak
async def test_a_retry_after_from_segment_pauses_both_instances(
    tmp_path: Path, nats_cluster: NatsCluster, queue_name: str
):
    standin = StandIn(tmp_path / "standin", [WRITE_KEY]).start()
    engines: list[EngineProcess] = []
    try:
        homes = member_homes(tmp_path, 2, nats_cluster, queue_name, standin.url)
        engines = [EngineProcess(h, engine_env(), log=tmp_path / f"e{i}.log") for i, h in enumerate(homes)]
        await asyncio.gather(*(e.start(timeout=60) for e in engines))
        await standin.faults(latency=0.05)
        batches = make_batches(3_000, seed=9)
        senders = [BrazeSender(e.url) for e in engines]
        deadline = time.monotonic() + 120
        await asyncio.gather(*(s.send(batches[i::2], deadline=deadline) for i, s in enumerate(senders)))
        acked = senders[0].acked_ids | senders[1].acked_ids
        assert len(acked) == 3_000
        await wait_delivered(standin, acked, 60)
        # Now Segment asks to wait once while events keep coming to both instances (500/s for 8 s).
        more = make_batches(4_000, seed=10)
        await standin.faults(next_statuses=[429], retry_after=4)
        await asyncio.gather(
            *(s.send(more[i::2], deadline=deadline + 60, rate=250) for i, s in enumerate(senders))
        )
        acked |= senders[0].acked_ids | senders[1].acked_ids
        arrived = await wait_delivered(standin, acked, 60)
        assert acked <= arrived.keys()
        requests = await standin.requests()
        assert sum(r.status == 429 for r in requests) == 1
        # The pause holds for both: after the 429, no request from either instance within the wait (but
        # for those already on their way when it was answered).
        assert pause_violations(requests, 4.0, grace=0.5) == []
        paused_at = next(r.at for r in requests if r.status == 429)
        assert any(r.at > paused_at + 4.0 for r in requests)  # and both went on after it
    finally:
        for engine in engines:
            await engine.stop()
            engine.close()
        standin.stop()
