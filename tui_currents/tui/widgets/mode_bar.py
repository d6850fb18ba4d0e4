"""The top bar: which screen this is, and whether this app runs the engine or is a console of the service;
on a cluster member, a second line names the cluster and how many instances are alive."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from tui_currents.tui.widgets.cluster import headline

CLUSTER_READ_GROUP = "cluster-read"


class ModeBar(Vertical):
    """Screen title on the left, mode on the right; a second line in demo mode says nothing leaves."""

    DEFAULT_CSS = """
    ModeBar {
        dock: top;
        height: auto;
        & > #mode-line { background: $panel; color: $text; height: 1; }
        & > #cluster-line { background: $panel; color: $text; height: 1; }
        & > #demo-line { background: $warning 30%; color: $text; height: 1; text-style: bold; }
    }
    """

    def __init__(self, title: str) -> None:
        super().__init__()
        self.title_text = title

    def compose(self) -> ComposeResult:
        yield Static(id="mode-line")
        yield Static(id="cluster-line")
        yield Static(id="demo-line")

    def on_mount(self) -> None:
        self.refresh_mode()
        # A service may start or stop while this console is open.
        self.set_interval(2.0, self.refresh_mode)
        # Instances come and go: the cluster is read as often as the screens refresh (a read takes ~2 ms).
        self.set_interval(getattr(self.app, "refresh_interval", 1.0), self.read_cluster)

    def read_cluster(self) -> None:
        """Read the cluster's state in a worker (the backend reads it in a thread), then redraw; on a
        member home only, by the bar in sight, one read at a time."""
        backend = getattr(self.app, "backend", None)
        if backend is None or not getattr(self.app, "backend_ready", True) or backend.cluster_name is None:
            return
        if not self.is_attached or self.screen is not self.app.screen:
            return
        if any(
            w.node is self and w.group == CLUSTER_READ_GROUP and not w.is_finished for w in self.app.workers
        ):
            return
        self.run_worker(self._read_cluster(), group=CLUSTER_READ_GROUP, exit_on_error=False)

    async def _read_cluster(self) -> None:
        backend = getattr(self.app, "backend", None)
        if backend is not None:
            await backend.refresh_cluster()
        self.refresh_mode()

    def refresh_mode(self) -> None:
        """Redraw from the app's backend (the mode can change when a service starts or stops)."""
        backend = getattr(self.app, "backend", None)
        if backend is None:
            mode = ""
        elif getattr(self.app, "backend_ready", True):
            mode = backend.mode_text()
        else:
            mode = "starting…"  # the first frame comes before the engine has started (or found a service)
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(" tui-currents ", style="bold")
        line.append(f"› {self.title_text}")
        width = max(self.size.width, 80)
        gap = max(width - line.cell_len - len(mode) - 1, 1)
        line.append(" " * gap)
        line.append(mode, style="italic")
        # Each line is one row high across the screen whatever it says: no layout of the whole screen is
        # needed to show new words (showing or hiding a line asks for one itself).
        self.query_one("#mode-line", Static).update(line, layout=False)
        cluster = self.query_one("#cluster-line", Static)
        name = getattr(backend, "cluster_name", None)
        if name is not None:
            words = headline(name, getattr(backend, "cluster", None))
            cluster.update(Text(f" {words}", no_wrap=True, overflow="ellipsis"), layout=False)
        cluster.display = name is not None
        demo = self.query_one("#demo-line", Static)
        if backend is not None and backend.demo:
            demo.update(
                Text(
                    f" DEMO: nothing leaves this machine · home {_shown_path(backend.home.root)}",
                    no_wrap=True,
                    overflow="ellipsis",
                ),
                layout=False,
            )
            demo.display = True
        else:
            demo.display = False

    def on_resize(self) -> None:
        self.refresh_mode()


def _shown_path(path: Path) -> str:
    """A path as a person reads it: the user's home folder as `~`."""
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)
