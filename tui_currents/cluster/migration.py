"""Carrying a home's queued events into the cluster's queue (`cluster init`), through the outbox contract.

For each connector, in queue order: lease a batch from the home's SQLite store, commit it to the cluster
(returns once a quorum of NATS nodes stored it), then mark it delivered in the store. A crash between
the two leaves the batch in the store (its lease ends with the process) and the next run commits it
again: the cluster stores a batch committed twice once (its `Nats-Msg-Id` is derived from its content,
and the same store leases the same batch again), and at worst a repeat carries the same messageIds,
which Segment deduplicates. Nothing is taken out of the store before the cluster has it.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from tui_currents.cluster.membership import ClusterSettings
from tui_currents.outbox import Outbox, OutboxRow
from tui_currents.paths import Home
from tui_currents.received import Received

SOURCE = "cluster init"
BATCH_MESSAGES = 1_000
BATCH_BYTES = 4 * 1024 * 1024  # well under the cluster's message size once split (codec.chunks)
LEASE_SECONDS = 3_600.0  # held by this process only: its end (or a crash) gives them back
# Tests stop `cluster init` at a named step (SIGKILL, as a crash would) to check that a re-run finishes
# the job. Never set in production; the name says so.
CRASH_AT_ENV = "TUI_CURRENTS_TEST_CRASH_AT"


def crash_point(step: str) -> None:
    """Die here, as a crash would, when a test asked for it (see CRASH_AT_ENV)."""
    if os.environ.get(CRASH_AT_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def as_received(connector: str, rows: list[OutboxRow]) -> Received:
    """Leased rows as a batch to commit: each one queued for `connector`, with its Segment message."""
    received = Received(items=len(rows))
    entries = [[row.event_type, None, None, "queued", None, row.message_id, row.bytes] for row in rows]
    received.tails[connector] = (entries, [row.body for row in rows])
    for row in rows:
        key = (connector, row.event_type, "queued")
        received.fates[key] = received.fates.get(key, 0) + 1
    return received


def open_local_store(home: Home) -> Outbox | None:
    """The home's own SQLite queue, or None when it was never created (nothing to carry)."""
    if not home.store_file.exists():
        return None
    from tui_currents.store import Store

    return Store(home.store_file)


def local_waiting(home: Home, connectors: list[str]) -> int:
    """Events waiting in the home's own SQLite queue for these connectors (and any other it has)."""
    store = open_local_store(home)
    if store is None:
        return 0
    with store:
        names = set(connectors) | set(store.counters())
        return sum(store.backlog(name).messages for name in names)


def carry_events(
    home: Home,
    settings: ClusterSettings,
    connectors: list[str],
    *,
    instance: str,
    progress: Callable[[str, int], None] | None = None,
) -> int:
    """Move every event waiting in the home's SQLite queue into the cluster's queue; returns how many.
    Creates the cluster's queue (streams, consumers' bucket) when it does not exist yet.
    Raises StoreUnavailable (either side) with what was kept; a re-run continues where it stopped."""
    from tui_currents.cluster.outbox import JetStreamOutbox

    moved = 0
    with JetStreamOutbox(
        settings.nats,
        instance=instance,
        name=settings.name,
        replicas=settings.replicas,
        creds=settings.creds,
        tls_ca=settings.tls_ca,
    ) as cluster:
        local = open_local_store(home)
        if local is None:
            return 0
        with local:
            names = list(dict.fromkeys([*connectors, *sorted(local.counters())]))
            for connector in names:
                while rows := local.lease(
                    connector, max_messages=BATCH_MESSAGES, max_bytes=BATCH_BYTES, lease_seconds=LEASE_SECONDS
                ):
                    cluster.commit(as_received(connector, rows), source=SOURCE)
                    crash_point("events")
                    local.delivered(connector, [row.seq for row in rows])
                    moved += len(rows)
                    if progress is not None:
                        progress(connector, len(rows))
    return moved
