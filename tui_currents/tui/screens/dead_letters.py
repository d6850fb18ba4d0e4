"""Dead letters: messages that will not be sent unless requeued, with the reason, to retry or export."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static
from textual.widgets.data_table import RowKey

from tui_currents.tui.backend import decode_json
from tui_currents.tui.models import DeadLetterRow
from tui_currents.tui.screens.base import ViewScreen
from tui_currents.tui.screens.modals import MessageScreen
from tui_currents.tui.widgets.status import kind_style

LIST_LIMIT = 500


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%m-%d %H:%M:%S")


def _tail_of(event_type: str, width: int) -> str:
    """The end of a dotted event type, its most telling part."""
    return event_type if len(event_type) <= width else "…" + event_type[-(width - 1) :]


class DeadLettersScreen(ViewScreen):
    """The newest dead letters of every connector."""

    TITLE_TEXT = "Dead letters"
    HELP_ID = "dead_letters"
    BINDINGS = [
        Binding("r", "retry", "Retry", id="dead_letters.retry"),
        Binding("R", "retry_all", "Retry all", id="dead_letters.retry_all"),
        Binding("e", "export", "Export", id="dead_letters.export"),
        Binding("escape,q", "close", "Back", id="dead_letters.back"),
    ]

    def compose_view(self) -> ComposeResult:
        yield Static(id="dead-summary")
        table: DataTable = DataTable(
            id="dead-letters", cursor_type="row", zebra_stripes=True, cursor_foreground_priority="css"
        )
        table.add_column("When (UTC)", key="at", width=14)
        table.add_column("Connector", key="connector", width=12)
        table.add_column("Event type", key="type", width=22)
        table.add_column("Tries", key="attempts", width=5)
        table.add_column("Reason", key="reason")
        yield table
        yield Static(id="dead-detail", classes="detail")
        self._letters: dict[int, DeadLetterRow] = {}

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(DataTable).focus()

    async def load(self) -> None:
        backend = self.currents_app.backend
        letters = await backend.run(backend.dead_letters, limit=LIST_LIMIT)
        ids = [d.id for d in letters]
        table = self.query_one(DataTable)
        if ids != list(self._letters):
            current = self.selected_id
            table.clear()
            for d in letters:
                table.add_row(
                    _when(d.at),
                    Text(d.connector, no_wrap=True, overflow="ellipsis"),
                    Text(_tail_of(d.event_type, 22), no_wrap=True),
                    Text(str(d.attempts), justify="right"),
                    Text(" ".join(d.reason.split()), no_wrap=True, overflow="ellipsis"),
                    key=str(d.id),
                )
            if current in ids:
                table.move_cursor(row=ids.index(current), animate=False)
        self._letters = {d.id: d for d in letters}
        summary = Text(no_wrap=True, overflow="ellipsis")
        if not letters:
            summary.append("No dead letters. Messages land here when Segment rejects them or they expire.")
        else:
            more = " (newest shown)" if len(letters) >= LIST_LIMIT else ""
            summary.append(
                f"{len(letters)} dead letter{'s' if len(letters) != 1 else ''}{more}", style="bold"
            )
            summary.append(" · fix the cause, then r: retry this one · R: retry all · e: export")
        last_export = self.currents_app.last_export
        if last_export is not None:
            summary.append(f"\nLast export: {last_export}", style=kind_style(self.app, "muted"))
        self.query_one("#dead-summary", Static).update(summary)
        self._show_detail()

    @property
    def selected_id(self) -> int | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:  # the cursor is out of range during a rebuild
            return None
        return _letter_id(key)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        letter = self._letters.get(self.selected_id) if self.selected_id is not None else None
        detail = self.query_one("#dead-detail", Static)
        if letter is None:
            detail.update("")
            return
        text = Text()
        text.append("Reason: ", style="bold")
        text.append(letter.reason + "\n")
        text.append(
            f"messageId {letter.message_id or '-'} · {letter.event_type} · {letter.connector}\n",
            style=kind_style(self.app, "muted"),
        )
        if letter.message is None:
            text.append(
                "Rejected while mapping: there is no Segment message to retry (enter shows the event).",
                style=kind_style(self.app, "muted"),
            )
        else:
            text.append("enter: show the Segment message", style=kind_style(self.app, "muted"))
        detail.update(text)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        letter_id = _letter_id(event.row_key)
        letter = self._letters.get(letter_id) if letter_id is not None else None
        if letter is None:
            return
        if letter.message is not None:
            body, note = decode_json(letter.message), f"Segment message · dead letter: {letter.reason}"
        else:
            body, note = (
                decode_json(letter.event),
                f"The Currents event as received · rejected: {letter.reason}",
            )
        self.app.push_screen(MessageScreen(f"Dead letter {letter.id} · {letter.event_type}", body, note))

    def action_retry(self) -> None:
        if (chosen := self.selected_id) is None:
            self.app.notify("There are no dead letters to retry.")
            return
        self.currents_app.retry_dead_letters(ids=[chosen])

    def action_retry_all(self) -> None:
        if not self._letters:
            self.app.notify("There are no dead letters to retry.")
            return
        self.currents_app.retry_dead_letters()

    async def action_export(self) -> None:
        await self.currents_app.export_dead_letters()
        await self.reload()

    def action_close(self) -> None:
        self.app.pop_screen()


def _letter_id(key: RowKey) -> int | None:
    """The dead letter's id a table row stands for (rows are keyed by it)."""
    return int(key.value) if key.value is not None else None
