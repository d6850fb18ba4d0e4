"""Which outbox a home uses, opened in one place.

Everything above the queue (the engine, delivery, the sources, status, the TUI and the commands) opens it
here and talks to it through `outbox.Outbox` only. A home with a [cluster] table in its config.toml is a
member of a cluster: its queue is the cluster's (`cluster.JetStreamOutbox` on NATS JetStream); any other
home's queue is its SQLite store. Either way the side tables (engine commands and presence, the alert
log, the webhook's cursor, the import ledger) stay in the home's own SQLite file.
"""

from __future__ import annotations

from tui_currents.outbox import Outbox
from tui_currents.paths import Home


def queue_exists(home: Home) -> bool:
    """Whether the home has a queue to read yet: a cluster member always has (the cluster's); a single
    box once its engine (or an import) created the store file."""
    from tui_currents.cluster.membership import cluster_settings

    return home.store_file.exists() or cluster_settings(home) is not None


def open_outbox(
    home: Home, *, readonly: bool = False, synchronous: str = "FULL", timeout: float | None = None
) -> Outbox:
    """The home's queue, ready to use. `readonly` for readers in other processes (status, the console):
    a home whose queue was never created raises `StoreUnavailable` with `cause == NOT_CREATED`.
    A cluster member's queue raises `StoreUnavailable` when the cluster cannot be reached (naming the
    URLs tried), refuses the credentials, or runs without JetStream. `timeout` (a cluster member only):
    the most its connect and each of its requests may take, instead of the queue's defaults."""
    from tui_currents.cluster.membership import cluster_settings
    from tui_currents.store import Store  # the store package is heavy; only the callers that open one pay

    settings = cluster_settings(home)
    if settings is None:
        return Store(home.store_file, readonly=readonly, synchronous=synchronous)
    from tui_currents.cluster import JetStreamOutbox
    from tui_currents.cluster.base import REQUEST_SECONDS
    from tui_currents.cluster.identity import instance_name, runs_the_engine, writer_key
    from tui_currents.outbox import StoreUnavailable

    engine = not readonly and runs_the_engine(home)
    outbox = JetStreamOutbox(
        settings.nats,
        instance=instance_name(home),
        name=settings.name,
        replicas=settings.replicas,
        creds=settings.creds,
        tls_ca=settings.tls_ca,
        counter_key=None if engine or readonly else writer_key(home),
        presence=engine,
        readonly=readonly,
        timeout=REQUEST_SECONDS if timeout is None else timeout,
        connect_within=timeout,
    )
    try:  # the side tables (alert log, receiver problems) stay in the home's own file
        outbox.side_tables = Store(home.store_file, readonly=readonly, synchronous=synchronous)
    except StoreUnavailable:
        if not readonly:
            outbox.close()
            raise
    return outbox
