"""Cluster mode (in progress): the outbox contract on a NATS JetStream cluster, shared by several instances.

`JetStreamOutbox` implements `tui_currents.outbox.Outbox`; nothing in the engine or the CLI uses it yet.
"""

from tui_currents.cluster.outbox import JetStreamOutbox

__all__ = ["JetStreamOutbox"]
