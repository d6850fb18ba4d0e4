"""Publish (commit), lease and ack (delivered) throughput of JetStreamOutbox on a 3-node loopback cluster.

    .venv/bin/python -m tests.cluster.measure_throughput [events] [events per commit] [committing threads]

Starts its own cluster (nats-server from the test extra) in a temporary folder and prints events/s.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from tests.cluster.conftest import NatsCluster
from tests.test_store import queued
from tui_currents.cluster import JetStreamOutbox
from tui_currents.received import Received

CONNECTOR = "Production"


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    per_commit = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    batches = [
        Received.of([(CONNECTOR, queued(str(uuid.uuid4()))) for _ in range(per_commit)])
        for _ in range(events // per_commit)
    ]
    size = sum(len(b) for r in batches for b in r.tails[CONNECTOR][1]) / (len(batches) * per_commit)
    with tempfile.TemporaryDirectory() as folder:
        cluster = NatsCluster.create(Path(folder))
        cluster.start()
        try:
            outbox = JetStreamOutbox(cluster.urls, instance="bench", name="bench")
            began = time.perf_counter()
            shares = [batches[i::threads] for i in range(threads)]
            workers = [
                threading.Thread(target=lambda share=share: [outbox.commit(r, source="bench") for r in share])
                for share in shares
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            commit_seconds = time.perf_counter() - began
            began = time.perf_counter()
            done = 0
            while done < len(batches) * per_commit:
                rows = outbox.lease(CONNECTOR, max_messages=500, max_bytes=4_000_000, lease_seconds=60)
                if not rows:
                    continue
                outbox.delivered(CONNECTOR, [r.seq for r in rows])
                done += len(rows)
            lease_seconds = time.perf_counter() - began
            outbox.close()
        finally:
            cluster.stop()
    total = len(batches) * per_commit
    print(
        f"{total} events of ~{size:.0f} B, {per_commit} per commit, {threads} committing thread(s), "
        "R3 on 3 nodes:\n"
        f"  commit (publish + quorum ack): {total / commit_seconds:,.0f} events/s "
        f"({len(batches) / commit_seconds:,.0f} commits/s)\n"
        f"  lease + delivered (ack):       {total / lease_seconds:,.0f} events/s"
    )


if __name__ == "__main__":
    main()
