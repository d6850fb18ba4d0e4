"""What `tui-currents cluster status` shows: the instances (address, version, last heartbeat), the queue
stream (messages, bytes, replicas, leader, lagging replicas) and each connector's shared consumer (waiting,
in flight, redelivered). `cluster_status` reads it as data (for --json), `format_cluster_status` writes it
for people."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from tui_currents.paths import Home

if TYPE_CHECKING:
    from tui_currents.cluster.outbox import JetStreamOutbox

ALIVE_SECONDS = 5.0  # an engine that has not beaten for this long is shown as gone


class NotAMember(Exception):
    """The home has no [cluster] table: there is no cluster to show."""


def cluster_status(home: Home, *, now: float | None = None) -> dict[str, Any]:
    """The cluster's state as JSON-ready data. Raises NotAMember for a home outside any cluster, and
    StoreUnavailable when the cluster cannot be reached (with what to do)."""
    from tui_currents.cluster.membership import cluster_settings
    from tui_currents.cluster.outbox import JetStreamOutbox
    from tui_currents.outbox_home import open_outbox

    if cluster_settings(home) is None:
        raise NotAMember(
            f"{home.root} is not a member of a cluster (no [cluster] table in its config.toml); "
            "`tui-currents cluster join` makes it one."
        )
    outbox = open_outbox(home, readonly=True)
    try:
        assert isinstance(outbox, JetStreamOutbox)  # a member home's queue
        return status_of(outbox, now=now)
    finally:
        outbox.close()


def status_of(
    outbox: JetStreamOutbox, *, now: float | None = None, deadline: float | None = None
) -> dict[str, Any]:
    """`cluster_status` read through a queue already open (a console refreshing it keeps one connection:
    opening one costs more than the read). `deadline`: the most seconds to wait (see `cluster_view`).
    Raises StoreUnavailable when the cluster cannot be read."""
    view = outbox.cluster_view(deadline=deadline)
    this = outbox.instance
    now = time.time() if now is None else now
    instances = []
    for name, presence in sorted(view["instances"].items()):
        age = max(0.0, now - float(presence.get("at") or 0))
        state = presence.get("state")
        shown = (
            "running"
            if state == "running" and age < ALIVE_SECONDS
            else "stopped"
            if state == "stopped"
            else "gone"
        )
        instances.append(
            {
                "instance": name,
                "this_home": name == this,
                "state": shown,
                "address": presence.get("address"),
                "host": presence.get("host"),
                "pid": presence.get("pid"),
                "version": presence.get("version"),
                "last_heartbeat": presence.get("at"),
                "seconds_since_heartbeat": round(age, 1),
            }
        )
    return {
        "cluster": view["name"],
        "servers": view["servers"],
        "instances": instances,
        "running_instances": sum(i["state"] == "running" for i in instances),
        "stream": view["stream"],
        "connectors": dict(sorted(view["connectors"].items())),
    }


def format_cluster_status(status: dict[str, Any]) -> str:
    """`cluster_status`'s data as the lines `cluster status` prints."""
    stream = status["stream"]
    lines = [
        f"Cluster {status['cluster']!r} on {', '.join(status['servers'])}: "
        f"{status['running_instances']} of {len(status['instances'])} instances running",
        "",
        "Instances:",
    ]
    if not status["instances"]:
        lines.append("  (none has started an engine yet)")
    for item in status["instances"]:
        mark = " (this home)" if item["this_home"] else ""
        lines.append(
            f"  {item['instance']}{mark}: {item['state']}, receiver {item['address'] or '-'}, "
            f"version {item['version'] or '?'}, last heartbeat {item['seconds_since_heartbeat']:g} s ago"
        )
    lagging = ", ".join(stream["lagging"]) or "none"
    lines += [
        "",
        f"Queue stream {stream['name']}: {stream['messages']:,} messages, {stream['bytes']:,} bytes, "
        f"{stream['replicas']} replicas, leader {stream['leader'] or '(none: no quorum)'}, "
        f"lagging: {lagging}",
        "",
        "Connectors (batch messages):",
    ]
    if not status["connectors"]:
        lines.append("  (no delivery has started yet)")
    for name, consumer in status["connectors"].items():
        lines.append(
            f"  {name}: {consumer['waiting']:,} waiting, {consumer['in_flight']:,} in flight, "
            f"{consumer['redelivered']:,} redelivered"
        )
    return "\n".join(lines)
