"""How a member home's cluster reads: the header's few words, and the health screen's section (instances
with their heartbeat, the queue stream with its replicas). Words from `ClusterSummary`; no I/O."""

from __future__ import annotations

from rich.text import Text
from textual.app import App

from tui_currents.tui.models import CLUSTER_READ, ClusterInstanceRow, ClusterStreamRow, ClusterSummary
from tui_currents.tui.widgets.status import count, kind_style, state_text

INSTANCE_KINDS = {"running": "good", "stopped": "muted", "gone": "warning"}


def headline(name: str, summary: ClusterSummary | None) -> str:
    """ "cluster eu-prod · 2 instances", or what keeps the figures from being read ("· unreachable")."""
    if summary is None:
        return f"cluster {name} · reading…"
    if summary.reach != CLUSTER_READ:
        return f"cluster {name} · {summary.reach}"
    return f"cluster {name} · {summary.running} instance{'' if summary.running == 1 else 's'}"


def heartbeat_age(seconds: float) -> str:
    """An age for a narrow line: 0.4 s, 12 s, 3 min, 2 h."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def instance_line(app: App, row: ClusterInstanceRow) -> Text:
    """One instance: its state, name, receiver, version and last heartbeat as an age."""
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append_text(state_text(app, row.state, INSTANCE_KINDS.get(row.state, "warning")))
    line.append(f" {row.name}", style="bold")
    if row.this_home:
        line.append(" (this home)")
    line.append(f" · {row.address or 'no receiver'} · v{row.version or '?'}")
    line.append(f" · seen {heartbeat_age(row.heartbeat_age)} ago")
    return line


def stream_lines(app: App, stream: ClusterStreamRow) -> Text:
    """The queue stream: its size, then its replicas (the leader, those lagging behind)."""
    text = Text(no_wrap=False)
    text.append(f"queue {stream.name}: {count(stream.messages)} messages, {_size(stream.bytes)}\n")
    text.append(f"{stream.replicas} replicas · leader ")
    if stream.leader:
        text.append(stream.leader)
    else:
        text.append("none (no quorum)", style=kind_style(app, "bad"))
    text.append(" · lagging: ")
    if stream.lagging:
        text.append(", ".join(stream.lagging), style=kind_style(app, "warning"))
    else:
        text.append("none")
    return text


def section(app: App, summary: ClusterSummary | None, name: str) -> tuple[Text, Text, str]:
    """The health screen's cluster section: (title, body, kind for the card's colour)."""
    title = Text(no_wrap=True, overflow="ellipsis")
    title.append("Cluster ", style="bold")
    title.append(name, style="bold")
    if summary is None:
        return title, Text("reading…", style=kind_style(app, "muted")), "muted"
    if summary.reach != CLUSTER_READ:
        title.append("   ")
        title.append_text(state_text(app, summary.reach, "bad"))
        return title, Text(summary.problem or "", style=kind_style(app, "bad")), "bad"
    total = len(summary.instances)
    title.append(f"   {summary.running} of {total} instance{'' if total == 1 else 's'} running")
    body = Text(no_wrap=False)
    if not summary.instances:
        body.append("no instance has started an engine yet\n", style=kind_style(app, "muted"))
    for row in summary.instances:
        body.append_text(instance_line(app, row))
        body.append("\n")
    if summary.stream is not None:
        body.append_text(stream_lines(app, summary.stream))
    lagging = summary.stream is not None and (summary.stream.lagging or not summary.stream.leader)
    return title, body, "warning" if lagging or summary.running == 0 else "good"


def _size(n: int) -> str:
    """Bytes for people: 812 B, 4.1 kB, 12.3 MB."""
    if n < 1000:
        return f"{n} B"
    if n < 1_000_000:
        return f"{n / 1000:.1f} kB"
    if n < 1_000_000_000:
        return f"{n / 1_000_000:.1f} MB"
    return f"{n / 1_000_000_000:.1f} GB"
