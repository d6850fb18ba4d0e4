"""What a mapping worker does with a request body, with no more imports than that needs.

Each worker is a process of its own (tui_currents.sources.mapping_worker), and what it imports is memory
it holds for the engine's whole life, once per worker: the parsing, the routing and the mapping, not the
engine's asyncio, configuration files or logging.
"""

from __future__ import annotations

from tui_currents.received import Received
from tui_currents.sources.batch_body import events_of
from tui_currents.sources.ingest import Routes, route

READY = "ready"  # a worker's first message: its imports are done


def read_batch(workspace: str, connectors: Routes, body: bytes) -> tuple[int, Received]:
    """(events in the body, the batch in the store's form) of a Currents request body. Raises
    batch_body.NotABatch when the body is not a batch. Runs in a mapping worker (or a thread)."""
    events = events_of(body)
    if not events:
        return 0, Received()
    items, _ = route(workspace, connectors, events)
    return len(events), Received.of(items)
