"""What a console's refresh of the cluster's state costs: opening a queue connection for each read (what
`cluster status` does once) against reading through one kept open (what the TUI does every second), and how
long a read waits when NATS is gone.

    .venv/bin/python -m tests.cluster.measure_status_read [reads]

Starts its own 3-node cluster on loopback; prints medians and worst cases in ms.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.cluster.conftest import NatsCluster, member_config
from tui_currents.cluster.outbox import JetStreamOutbox
from tui_currents.cluster.status import status_of
from tui_currents.outbox import StoreUnavailable
from tui_currents.outbox_home import open_outbox
from tui_currents.paths import Home

DEADLINE = 2.0  # the TUI's bound on a read (tui/backend.py CLUSTER_READ_SECONDS)


def main(reads: int = 30) -> None:
    folder = Path(tempfile.mkdtemp(prefix="status-read-"))
    cluster = NatsCluster.create(folder / "nats")
    cluster.start()
    try:
        home = Home.at(folder / "home").ensure()
        member_config(home.root, cluster.urls, "measure")
        open_outbox(home).close()  # the JetStream assets
        opened, kept = [], []
        for _ in range(reads):
            began = time.perf_counter()
            outbox = open_outbox(home, readonly=True)
            assert isinstance(outbox, JetStreamOutbox)
            status_of(outbox)
            outbox.close()
            opened.append((time.perf_counter() - began) * 1000)
        reader = open_outbox(home, readonly=True)
        assert isinstance(reader, JetStreamOutbox)
        for _ in range(reads):
            began = time.perf_counter()
            status_of(reader, deadline=DEADLINE)
            kept.append((time.perf_counter() - began) * 1000)
        report("open, read, close", opened)
        report("read on a kept connection", kept)
        cluster.kill(0)
        cluster.kill(1)
        # The survivor answers from what it knows until its Raft groups notice the quorum gone.
        killed = time.monotonic()
        while waited("two of three nodes down", reader) == "read" and time.monotonic() - killed < 15:
            time.sleep(0.25)
        print(f"  (reads failed from {time.monotonic() - killed:.1f} s after the kill)")
        cluster.kill(2)
        time.sleep(0.5)  # the client notices the last server gone
        waited("every node down", reader)
        reader.close()
    finally:
        cluster.stop()


def report(what: str, ms: list[float]) -> None:
    print(f"{what}: median {statistics.median(ms):.1f} ms, worst {max(ms):.1f} ms over {len(ms)} reads")


def waited(what: str, reader: JetStreamOutbox) -> str:
    began = time.perf_counter()
    try:
        status_of(reader, deadline=DEADLINE)
        outcome = "read"
    except StoreUnavailable as exc:
        outcome = exc.cause
    print(f"{what}: {outcome} after {(time.perf_counter() - began) * 1000:.0f} ms")
    return outcome


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:2]))
