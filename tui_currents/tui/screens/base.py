"""What every full screen shares: the mode bar, the footer, and a refresh loop reading off the UI thread."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, cast

from textual import work
from textual.app import ComposeResult
from textual.message_pump import MessagePump
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import Worker, WorkerCancelled

from tui_currents.tui.messages import BackendReady
from tui_currents.tui.widgets.mode_bar import ModeBar

if TYPE_CHECKING:  # app.py imports the screens: only the type checker needs it here
    from tui_currents.tui.app import CurrentsApp

READ_GROUP = "view-read"  # the worker group of a screen's reads (one at a time per screen)


def app_of(node: MessagePump) -> CurrentsApp:
    """The app a screen or widget runs in, as tui-currents' app: its backend and its operations, typed.

    Every screen of this package runs inside `CurrentsApp` (see `run_app`)."""
    return cast("CurrentsApp", node.app)


class ViewScreen(Screen):
    """A full screen of the app. Subclasses give `compose_view` and `load` (called every refresh)."""

    TITLE_TEXT = ""
    HELP_ID = ""
    REFRESH = True  # call `load` every app.refresh_interval seconds

    @property
    def currents_app(self) -> CurrentsApp:
        """The app, with its backend and operations (Textual's `app` knows only the base class)."""
        return app_of(self)

    def help_topic(self) -> tuple[str, str]:
        """(help id, title) of the help for this screen (the help key opens it)."""
        return self.HELP_ID, self.TITLE_TEXT

    def compose(self) -> ComposeResult:
        yield ModeBar(self.TITLE_TEXT)
        yield from self.compose_view()
        # Compact, and without the palette's own key (it is in the help): the footer fits 80 columns with
        # help and quit always in it.
        yield Footer(compact=True, show_command_palette=False)

    def compose_view(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self._problem: str | None = None
        if self.currents_app.backend_ready:
            self.call_after_refresh(self.refresh_view)
        if self.REFRESH:
            self.set_interval(self.currents_app.refresh_interval, self.refresh_view)

    def on_backend_ready(self, message: BackendReady) -> None:
        self.query_one(ModeBar).refresh_mode()
        self.query_one(ModeBar).read_cluster()
        self.call_after_refresh(self.refresh_view)

    def _can_read(self) -> bool:
        # Covered by another screen: no reads until it is shown again.
        return self.currents_app.backend_ready and self.is_attached and self.app.screen is self

    def _running_read(self) -> Worker[None] | None:
        for worker in self.app.workers:
            if worker.node is self and worker.group == READ_GROUP and not worker.is_finished:
                return worker
        return None

    def refresh_view(self) -> Worker[None] | None:
        """Start `load` in a worker unless a read of this screen is still running (slow disks must not
        pile up reads, nor cancel each other before any finishes); returns the read under way, if any."""
        if not self._can_read():
            return None
        return self._running_read() or self._read()

    async def reload(self) -> None:
        """Read now and wait for it, after a change the user made: a read still running is cancelled
        (its answer may predate the change)."""
        if not self._can_read():
            return
        with contextlib.suppress(WorkerCancelled):  # the screen went away meanwhile
            await self._read().wait()

    @work(exclusive=True, group=READ_GROUP, exit_on_error=False)
    async def _read(self) -> None:
        try:
            await self.load()
        except Exception as exc:  # a store or config problem must not close the app: say it once
            self.report_problem(exc)
        else:
            self._problem = None

    def report_problem(self, exc: Exception) -> None:
        """Show a read problem once (not at every refresh) and keep the screen running."""
        text = str(exc) or type(exc).__name__
        if text != getattr(self, "_problem", None):
            self._problem = text
            self.app.notify(text, title="Could not read", severity="error", timeout=15)

    async def load(self) -> None:
        """Read what the screen shows (override)."""

    def on_screen_resume(self) -> None:
        if self.currents_app.backend_ready:
            self.query_one(ModeBar).refresh_mode()
            self.query_one(ModeBar).read_cluster()
            self.call_after_refresh(self.refresh_view)
