"""The live tail of one connector or all: what arrived, what it became in Segment, and what happened to it.

The store is polled a few times a second for rows after the last one seen; each poll is one query and one
batched update of the view, however many events arrived.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Input, Static

from tui_currents.tui.models import TailLine
from tui_currents.tui.screens.base import ViewScreen
from tui_currents.tui.screens.modals import MessageScreen
from tui_currents.tui.widgets.tail_view import FATE_KINDS, TailFilter, TailView

POLL_LIMIT = 5_000  # rows per poll; at 10 Hz that is 50,000 rows/s, well above what the engine writes
FATE_CYCLE: tuple[frozenset[str], ...] = (
    frozenset(),
    frozenset({"delivered"}),
    frozenset({"queued"}),
    frozenset({"dead letter", "rejected"}),
    frozenset({"not selected", "anonymous", "unsupported", "not forwardable", "duplicate"}),
)
FATE_CYCLE_NAMES = ("all fates", "delivered", "queued", "dead letters", "filtered")


class TailScreen(ViewScreen):
    """Events flowing through one connector (or all), newest at the bottom."""

    HELP_ID = "tail"
    REFRESH = False
    BINDINGS = [
        Binding("space", "pause", "Pause", id="tail_screen.pause"),
        Binding("slash", "filter_text", "Filter", id="tail_screen.filter"),
        Binding("f", "cycle_fate", "Fate", id="tail_screen.fate"),
        Binding("y", "filter_type", "This type", show=False, id="tail_screen.type"),
        Binding("c", "clear_filter", "Clear filter", show=False, id="tail_screen.clear"),
        Binding("escape,q", "close", "Back", id="tail_screen.back"),
    ]

    def __init__(self, connector: str | None, *, keep: int = 5_000) -> None:
        self.connector = connector
        self.TITLE_TEXT = f"Tail of {connector}" if connector else "Tail of all connectors"
        self.keep = keep
        self.after: int | None = None
        self.paused = False
        self._fate_index = 0
        self._types: frozenset[str] = frozenset()
        self._missed = 0
        super().__init__()

    def compose_view(self) -> ComposeResult:
        yield TailView(max_lines=self.keep, show_connector=self.connector is None, id="tail")
        with Horizontal(id="tail-filter-row"):
            yield Static("filter:", id="tail-filter-label")
            yield Input(
                placeholder="text in type, Segment event, user or reason (enter: apply, esc: close)",
                id="tail-filter",
                compact=True,
            )
        yield Static(id="tail-status")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#tail-filter-row").display = False
        self.query_one(TailView).focus()
        self.set_interval(self.currents_app.poll_interval, self.poll)
        self._show_status()

    @property
    def tail_view(self) -> TailView:
        return self.query_one(TailView)

    # ------------------------------------------------------------------ polling

    def poll(self) -> None:
        """One read of new tail rows and one batched update of the view (none while one still runs)."""
        self.refresh_view()

    def _can_read(self) -> bool:
        # Unlike other screens the tail keeps reading under a dialog (e.g. a message shown from it).
        return not self.paused and self.currents_app.backend_ready and self.is_attached

    async def load(self) -> None:
        backend = self.currents_app.backend
        if self.after is None:
            self.after = await backend.run(backend.tail_start, self.keep)
        rows = await backend.run(backend.tail, after=self.after, limit=POLL_LIMIT, connector=self.connector)
        if not rows:
            return
        self.after = rows[-1].seq
        self.tail_view.append(rows)
        self._show_status()

    # ------------------------------------------------------------------ status line

    def _show_status(self) -> None:
        view = self.tail_view
        text = Text(no_wrap=True, overflow="ellipsis")
        if self.paused:
            text.append(" PAUSED ", style="reverse bold")
            text.append(" space: resume · ")
        shown = len(view.lines)
        text.append(f"{view.position} · {shown} line{'s' if shown != 1 else ''}")
        description = view.filter.describe()
        if description:
            text.append(f" · filter {description}", style="bold")
        text.append(" · enter: message · f: fate · /: text")
        # One line of fixed height across the screen: its size never changes, so no layout of the whole
        # screen is asked for (with one after every poll, layouts took ~a fifth of the app's loop under load).
        self.query_one("#tail-status", Static).update(text, layout=False)

    # ------------------------------------------------------------------ actions

    def action_pause(self) -> None:
        """Stop reading new rows (the store keeps them); resume continues where it stopped."""
        self.paused = not self.paused
        self._show_status()

    def action_filter_text(self) -> None:
        row = self.query_one("#tail-filter-row")
        row.display = True
        box = self.query_one("#tail-filter", Input)
        box.value = self.tail_view.filter.text
        box.focus()

    @on(Input.Submitted, "#tail-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self._apply_filter(text=event.value)
        self.query_one("#tail-filter-row").display = bool(event.value.strip())
        self.tail_view.focus()

    @on(Input.Changed, "#tail-filter")
    def _filter_typed(self, event: Input.Changed) -> None:
        self._apply_filter(text=event.value)

    def action_cycle_fate(self) -> None:
        self._fate_index = (self._fate_index + 1) % len(FATE_CYCLE)
        self._apply_filter()
        self.app.notify(f"Showing {FATE_CYCLE_NAMES[self._fate_index]}.", timeout=2)

    def action_filter_type(self) -> None:
        """Show only the event type of the line under the cursor (again: all types)."""
        if self._types:
            self._types = frozenset()
        else:
            line = self.tail_view.cursor_line or (self.tail_view.lines[-1] if self.tail_view.lines else None)
            if line is None:
                return
            self._types = frozenset({line.event_type})
        self._apply_filter()

    def action_clear_filter(self) -> None:
        self._types = frozenset()
        self._fate_index = 0
        self.query_one("#tail-filter", Input).value = ""
        self.query_one("#tail-filter-row").display = False
        self._apply_filter(text="")
        self.tail_view.focus()

    def _apply_filter(self, *, text: str | None = None) -> None:
        current = self.tail_view.filter
        self.tail_view.set_filter(
            TailFilter(
                event_types=self._types,
                fates=FATE_CYCLE[self._fate_index],
                text=current.text if text is None else text,
            )
        )
        self._show_status()

    def action_close(self) -> None:
        box = self.query_one("#tail-filter", Input)
        if box.has_focus:
            # Escape in the filter box closes the box and keeps the filter.
            self.query_one("#tail-filter-row").display = bool(box.value.strip())
            self.tail_view.focus()
            return
        self.app.pop_screen()

    def on_tail_view_moved(self) -> None:
        self._show_status()

    @on(TailView.Chosen)
    async def _show_message(self, event: TailView.Chosen) -> None:
        line = event.line
        backend = self.currents_app.backend
        message = await backend.run(backend.tail_message, line.seq)
        title = f"{line.segment_event or line.event_type} · {line.fate}"
        if message is not None:
            note = f"The exact Segment message queued for {line.connector}."
            if line.fate in ("dead letter", "rejected") and line.reason:
                note += f" It became a dead letter: {line.reason}"
            self.app.push_screen(MessageScreen(title, message, note))
            return
        kind = FATE_KINDS.get(line.fate)
        if kind == "filtered" or line.fate == "rejected":
            why = f"{line.fate}: {line.reason}" if line.reason else line.fate
            note = f"Not sent to Segment ({why}), so there is no Segment message. What the tail knows:"
        else:
            note = "This message is no longer in the store's tail feed (it keeps the latest rows). Known:"
        self.app.push_screen(MessageScreen(title, _known(line), note))


def _known(line: TailLine) -> dict:
    return {
        "connector": line.connector,
        "event_type": line.event_type,
        "segment_event": line.segment_event,
        "user": line.user,
        "messageId": line.message_id,
        "fate": line.fate,
        "reason": line.reason,
    }
