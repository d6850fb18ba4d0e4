"""Which outbox a home uses, opened in one place.

Everything above the queue (the engine, delivery, the sources, status, the TUI and the commands) opens it
here and talks to it through `outbox.Outbox` only, so a second implementation (the cluster's) changes this
module, not its callers. Today a home's outbox is its SQLite store.
"""

from __future__ import annotations

from tui_currents.outbox import Outbox
from tui_currents.paths import Home


def open_outbox(home: Home, *, readonly: bool = False, synchronous: str = "FULL") -> Outbox:
    """The home's queue, ready to use. `readonly` for readers in other processes (status, the console):
    a home whose queue was never created raises `StoreUnavailable` with `cause == NOT_CREATED`."""
    from tui_currents.store import Store  # the store package is heavy; only the callers that open one pay

    return Store(home.store_file, readonly=readonly, synchronous=synchronous)
