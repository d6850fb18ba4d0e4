"""Cluster mode (in progress): the outbox contract on a NATS JetStream cluster, shared by several instances.

`JetStreamOutbox` implements `tui_currents.outbox.Outbox`; nothing in the engine or the CLI uses it yet.
It is imported on first use (the NATS client takes most of a second to import, which every command of
the CLI would otherwise pay to register `cluster ...`).
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tui_currents.cluster.outbox import JetStreamOutbox

__all__ = ["JetStreamOutbox"]


def __getattr__(name: str) -> Any:
    if name == "JetStreamOutbox":
        from tui_currents.cluster.outbox import JetStreamOutbox

        return JetStreamOutbox
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
