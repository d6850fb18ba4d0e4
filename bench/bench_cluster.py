"""Cluster mode against the single box, in one run on the same machine: events/s end to end (Braze-like
posts to the receiver until every acknowledged event is at the Segment stand-in) with

- one engine on its own SQLite queue (the default, a single box),
- one engine on a 3-node NATS JetStream cluster on loopback (R3),
- two engines on that cluster, posted to alternately,

and the CPU each process used per 1,000 events (each engine with its mapping worker; the three NATS
nodes together). Everything runs on this machine's cores: the stand-in, the senders, the engines and the
NATS nodes share them, so the figures say how the setups compare here, not what a real deployment with a
machine per instance and per NATS node reaches (see the README's "Beyond one machine").

    .venv/bin/python bench/bench_cluster.py [--events 20000] [--concurrency 8] [--only sqlite,one,two]

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.cluster and tests.reliability

from tests.cluster.conftest import NatsCluster  # noqa: E402
from tests.cluster.two_instances import TwoRun, run_two  # noqa: E402

SETUPS = {
    "sqlite": ("1 instance, SQLite (single box)", 1, False),
    "one": ("1 instance, JetStream R3 on 3 nodes", 1, True),
    "two": ("2 instances, JetStream R3 on 3 nodes", 2, True),
}


def row(title: str, run: TwoRun) -> str:
    rate = run.acknowledged / run.seconds if run.seconds else 0.0
    per_k = 1000 / max(1, run.acknowledged)
    engines = ", ".join(
        f"{run.cpu[k] * per_k * 1000:,.0f}" for k in sorted(run.cpu) if k.startswith("instance")
    )
    nats = f"{run.cpu['NATS nodes'] * per_k * 1000:,.0f}" if "NATS nodes" in run.cpu else "-"
    lost = len(run.lost)
    return (
        f"| {title} | {run.acknowledged:,} | {run.seconds:.1f} | {rate:,.0f} | {engines} | {nats} | "
        f"{lost} | {run.duplicates} |"
    )


async def main_async(args: argparse.Namespace) -> int:
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    lines = [
        f"{args.events:,} events per setup (batches of 100, {args.concurrency} posts in flight per instance)",
        "",
        "| setup | acknowledged | seconds | events/s | CPU ms per 1,000 events of the run, each engine "
        "| the same, 3 NATS nodes together | lost | duplicates |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as folder:
        cluster = NatsCluster.create(Path(folder) / "nats")
        cluster.start()
        try:
            for name in wanted:
                title, instances, clustered = SETUPS[name]
                run = await run_two(
                    Path(folder) / name,
                    cluster if clustered else None,
                    f"b{uuid.uuid4().hex[:8]}",
                    instances=instances,
                    events=args.events,
                    kill_instance=False,
                    kill_node=False,
                    concurrency=args.concurrency,
                    time_limit=600.0,
                )
                lines.append(row(title, run))
                print(lines[-1], flush=True)
                failed |= bool(run.lost) or run.acknowledged != run.sent
        finally:
            cluster.stop()
    print("\n".join(lines))
    return 1 if failed else 0


def main() -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--only", default=",".join(SETUPS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
