"""Throughput and health: per connector events/s over time, delivered against failed, backlog, retry pauses
and the busiest event types, each card coloured by its state so a problem shows before it is read; on a
cluster member, first the cluster: its instances and the queue stream's replicas."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Label, Static

from tui_currents import catalog
from tui_currents.tui.backend import ConfigError
from tui_currents.tui.models import ConnectorRow
from tui_currents.tui.screens.base import ViewScreen
from tui_currents.tui.widgets import cluster
from tui_currents.tui.widgets.mode_bar import ModeBar
from tui_currents.tui.widgets.status import count, kind_style, rate, state_text
from tui_currents.tui.widgets.throughput import WINDOWS, render_chart


def chart(app, delivered: list[float], failed: list[float], width: int, window: int) -> Text:
    """The throughput chart in the theme's colours for the chosen window."""
    label, seconds, _ = WINDOWS[window]
    return render_chart(
        delivered,
        failed,
        width=width,
        window=label,
        seconds=seconds,
        delivered_style=kind_style(app, "good"),
        failed_style=kind_style(app, "bad"),
        axis_style=kind_style(app, "muted"),
    )


class HealthCard(Vertical):
    """One connector's health."""

    def __init__(self, name: str) -> None:
        super().__init__(classes="health-card")
        self.connector = name

    def compose(self) -> ComposeResult:
        yield Static(classes="health-title")
        yield Static(classes="health-figures")
        yield Static(classes="health-chart")
        yield Static(classes="health-top")

    def show(
        self, row: ConnectorRow, throughput: tuple[list[float], list[float]], now: float, window: int
    ) -> None:
        app = self.app
        for kind in ("good", "warning", "bad", "muted"):
            self.set_class(row.state_kind == kind, f"-{kind}")
        title = Text(no_wrap=True, overflow="ellipsis")
        title.append(row.name, style="bold")
        title.append("   ")
        title.append_text(state_text(app, row.state, row.state_kind))
        title.append(f"   {rate(row.events_per_second)} ev/s received")
        self.query_one(".health-title", Static).update(title)
        width = max(self.content_size.width, 40)
        self.query_one(".health-chart", Static).update(chart(app, *throughput, width, window))

        figures = Text(no_wrap=False)
        # No share of "delivered": with a backlog waiting it would read as done when most is not.
        figures.append("delivered ")
        figures.append(count(row.delivered), style=kind_style(app, "good"))
        figures.append("  ·  failed ")
        figures.append(count(row.failed), style=kind_style(app, "bad") if row.failed else "")
        figures.append("  ·  backlog ")
        figures.append(
            count(row.backlog),
            style=kind_style(app, "warning") if row.backlog and row.state_kind != "good" else "",
        )
        figures.append(f"  ·  retries {count(row.retried)}")
        if row.paused_until and row.paused_until > now and row.state in ("paused", "backing off"):
            figures.append(f" · next try in {row.paused_until - now:.0f} s", style=kind_style(app, "warning"))
        if row.detail:
            figures.append(f"\n{row.detail}", style=kind_style(self.app, "muted"))
        if row.last_error and row.state_kind in ("warning", "bad"):
            figures.append(f"\nlast error: {row.last_error}", style=kind_style(app, "bad"))
        if row.warning:
            figures.append(f"\n{row.warning}", style=kind_style(app, "warning"))
        self.query_one(".health-figures", Static).update(figures)

        top = Text("top: ", style=kind_style(self.app, "muted"), no_wrap=True, overflow="ellipsis")
        if not row.top_event_types:
            top.append("nothing forwarded yet", style=kind_style(self.app, "muted"))
        for i, (event_type, n) in enumerate(row.top_event_types):
            entry = catalog.find(event_type)
            top.append(
                ("" if i == 0 else " · ") + (entry.segment_event if entry else event_type) + f" {count(n)}"
            )
        self.query_one(".health-top", Static).update(top)


class HealthScreen(ViewScreen):
    """Every connector's throughput and health."""

    TITLE_TEXT = "Throughput and health"
    HELP_ID = "health"
    BINDINGS = [
        Binding("w", "switch_window", "Minute/hour", id="health.window"),
        Binding("escape,q", "close", "Back", id="health.back"),
    ]

    def compose_view(self) -> ComposeResult:
        self.window = 0  # index into WINDOWS: the last minute first
        yield Label("", id="health-summary")
        with VerticalScroll(id="health-cards"):
            with Vertical(classes="health-card", id="health-cluster"):
                yield Static(classes="health-title", id="cluster-title")
                yield Static(id="cluster-body")
            with Vertical(classes="health-card -total", id="health-total"):
                yield Static(classes="health-title", id="total-title")
                yield Static(classes="health-chart", id="total-chart")

    def on_mount(self) -> None:  # Textual calls ViewScreen.on_mount as well (handlers run along the MRO)
        self.query_one("#health-cluster").display = False  # a member home's only

    def action_switch_window(self) -> None:
        """Between the last minute and the last hour."""
        self.window = (self.window + 1) % len(WINDOWS)
        self.call_after_refresh(self.refresh_view)

    async def load(self) -> None:
        backend = self.currents_app.backend
        await self.show_cluster()
        try:
            rows = await backend.run(backend.connector_rows)
        except ConfigError as exc:
            self.query_one("#health-summary", Label).update(Text(str(exc)))
            return
        now = self.currents_app.clock()
        cards = self.query_one("#health-cards", VerticalScroll)
        existing = {card.connector: card for card in cards.query(HealthCard)}
        if [r.name for r in rows] != list(existing):
            await cards.remove_children(HealthCard)
            existing = {row.name: HealthCard(row.name) for row in rows}
            await cards.mount_all(existing.values())
        _, seconds, bucket = WINDOWS[self.window]
        for row in rows:
            existing[row.name].show(row, backend.throughput(row.name, seconds, bucket), now, self.window)
        total_title = Text(no_wrap=True, overflow="ellipsis")
        total_title.append("All connectors", style="bold")
        total_title.append(f"   {rate(sum(r.events_per_second for r in rows))} ev/s received")
        total_title.append("   w: last minute / last hour", style=kind_style(self.app, "muted"))
        self.query_one("#total-title", Static).update(total_title)
        width = max(self.query_one("#health-total").content_size.width, 40)
        self.query_one("#total-chart", Static).update(
            chart(self.app, *backend.throughput(None, seconds, bucket), width, self.window)
        )
        running = backend.engine_running
        problems = [r for r in rows if r.state_kind == "bad"]
        slow = [r for r in rows if r.state_kind == "warning"]
        summary = Text(no_wrap=True, overflow="ellipsis")
        if not rows:
            summary.append("No connectors yet: press q to go back and n to create one.")
        elif not running:
            summary.append(
                "○ no engine runs on this home: nothing is sent (start one: tui-currents run)",
                style=kind_style(self.app, "muted"),
            )
        elif problems:
            summary.append(
                f"✖ {len(problems)} connector{'s need' if len(problems) > 1 else ' needs'} attention",
                style=kind_style(self.app, "bad"),
            )
        elif slow:
            summary.append(
                f"▲ {len(slow)} connector{'s' if len(slow) > 1 else ''} retrying",
                style=kind_style(self.app, "warning"),
            )
        else:
            summary.append("● all connectors healthy", style=kind_style(self.app, "good"))
        if rows:
            total = sum(r.events_per_second for r in rows)
            summary.append(
                f"  ·  {rate(total)} ev/s in all  ·  backlog {count(sum(r.backlog for r in rows))}"
            )
        self.query_one("#health-summary", Label).update(summary)

    async def show_cluster(self) -> None:
        """The cluster section (and the header's count, from the same read), on a member home only."""
        backend = self.currents_app.backend
        card = self.query_one("#health-cluster", Vertical)
        if backend.cluster_name is None:
            card.display = False
            return
        summary = await backend.refresh_cluster()
        title, body, kind = cluster.section(self.app, summary, backend.cluster_name)
        for each in ("good", "warning", "bad", "muted"):
            card.set_class(kind == each, f"-{each}")
        self.query_one("#cluster-title", Static).update(title)
        self.query_one("#cluster-body", Static).update(body)
        card.display = True
        self.query_one(ModeBar).refresh_mode()

    def action_close(self) -> None:
        self.app.pop_screen()
