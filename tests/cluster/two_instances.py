"""Two instances of tui-currents on one NATS JetStream cluster, as real processes on loopback.

Two homes with the same [cluster] settings and the same workspace and connector (written by hand in each),
two `tui-currents run` engines, one Segment stand-in process (tests/reliability/harness.py), and Braze-like
senders posting batches alternately to the two receivers, each batch sent again until answered 2xx. During
the run one instance can be SIGKILLed and restarted and one NATS node SIGKILLed and restarted; at the end
every acknowledged event must be at the stand-in. Used by tests/cluster/test_two_instances.py and by
bench/bench_cluster.py (which also reads the CPU each process used).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.cluster.conftest import NatsCluster, member_config
from tests.reliability.harness import (
    WRITE_KEY,
    BrazeSender,
    EngineProcess,
    StandIn,
    descendants,
    engine_env,
    make_batches,
    make_home,
    wait_delivered,
)

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None, *, with_children: bool = True) -> float:
    """CPU (user + system) used so far by `pid` and, with `with_children`, every live process below it."""
    if pid is None:
        return 0.0
    total = 0.0
    for each in [pid, *(descendants(pid) if with_children else [])]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


@dataclass
class TwoRun:
    """What a run of two instances did."""

    sent: int = 0
    acknowledged: int = 0
    lost: set[str] = field(default_factory=set)
    arrived: dict[str, int] = field(default_factory=dict)
    unexpected: int = 0  # ids at the stand-in that were never sent
    violations: int = 0  # breaches of Segment's contract the stand-in saw
    seconds: float = 0.0  # from the first post until every acknowledged event was at the stand-in
    instance_kills: int = 0
    node_kills: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process kind
    statuses: dict[int, int] = field(default_factory=dict)  # answers to the senders, by status

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.arrived.values())


def member_homes(
    workdir: Path, count: int, cluster: NatsCluster | None, name: str, endpoint: str
) -> list[Path]:
    """`count` homes with the same connector (to `endpoint`) and the same [cluster] table (none without a
    cluster: then each home keeps its own SQLite queue)."""
    homes = []
    for index in range(count):
        home = make_home(workdir / f"home{index}", endpoint)
        if cluster is not None:
            member_config(home, cluster.urls, name)
        homes.append(home)
    return homes


async def run_two(
    workdir: Path,
    cluster: NatsCluster | None,
    name: str,
    *,
    instances: int = 2,
    events: int = 20_000,
    kill_instance: bool = True,
    kill_node: bool = True,
    seed: int = 5,
    time_limit: float = 240.0,
    latency: float = 0.0,
    concurrency: int = 4,
) -> TwoRun:
    """Post `events` events alternately to `instances` engines (see the module's docstring). Without a
    `cluster`, one engine on its own SQLite queue (the single-box figure)."""
    nodes = cluster.nodes if cluster is not None else []
    rng = random.Random(seed)
    run = TwoRun()
    standin = StandIn(workdir / "standin", [WRITE_KEY], seed=seed).start()
    engines: list[EngineProcess] = []
    try:
        if latency:
            await standin.faults(latency=latency)
        homes = member_homes(workdir, instances, cluster, name, standin.url)
        engines = [
            EngineProcess(h, engine_env(), log=workdir / f"engine{i}.log") for i, h in enumerate(homes)
        ]
        await asyncio.gather(*(engine.start(timeout=60) for engine in engines))
        cpu_before = {i: cpu_seconds(e.pid) for i, e in enumerate(engines)}
        nats_before = [cpu_seconds(n.process.pid if n.process else None) for n in nodes]
        batches = make_batches(events, seed)
        senders = [BrazeSender(e.url, concurrency=concurrency, seed=seed + i) for i, e in enumerate(engines)]
        began = time.monotonic()
        deadline = began + time_limit

        def acked() -> int:
            return sum(s.acked for s in senders)

        async def faults() -> None:
            if kill_instance:
                while acked() < events // 3 and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                victim = engines[0]
                run.cpu["killed instance, before its kill"] = cpu_seconds(victim.pid) - cpu_before[0]
                victim.kill()
                run.instance_kills += 1
                await asyncio.sleep(0.5)
                await victim.start(timeout=60)
                cpu_before[0] = cpu_seconds(victim.pid)
            if kill_node and cluster is not None:
                while acked() < 2 * events // 3 and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                node = rng.randrange(len(cluster.nodes))
                cluster.kill(node)
                run.node_kills += 1
                await asyncio.sleep(2.0)
                await asyncio.to_thread(cluster.restart, node, False)

        fault_task = asyncio.create_task(faults())
        await asyncio.gather(
            *(s.send(batches[i::instances], deadline=deadline) for i, s in enumerate(senders)), fault_task
        )
        acked_ids = set().union(*(s.acked_ids for s in senders))
        run.arrived = await wait_delivered(standin, acked_ids, max(10.0, deadline - time.monotonic()))
        run.seconds = time.monotonic() - began
        for i, engine in enumerate(engines):
            run.cpu[f"instance {i}"] = (
                run.cpu.get(f"instance {i}", 0.0) + cpu_seconds(engine.pid) - cpu_before[i]
            )
        if nodes:
            nats_after = [cpu_seconds(n.process.pid if n.process else None) for n in nodes]
            run.cpu["NATS nodes"] = sum(nats_after) - sum(nats_before)
        run.sent = sum(len(s.sent_ids) for s in senders)
        run.acknowledged = len(acked_ids)
        run.lost = acked_ids - run.arrived.keys()
        run.unexpected = len(run.arrived.keys() - set().union(*(s.sent_ids for s in senders)))
        run.violations = (await standin.stats())["violations"]
        for sender in senders:
            for status, n in sender.statuses.items():
                run.statuses[status] = run.statuses.get(status, 0) + n
        return run
    finally:
        for engine in engines:
            await engine.stop()
            engine.close()
        standin.stop()
