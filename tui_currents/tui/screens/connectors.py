"""The home screen: every connector with its destination, state and figures, and what to do with it."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from tui_currents.tui.backend import ConfigError
from tui_currents.tui.models import ConnectorRow
from tui_currents.tui.screens.base import ViewScreen
from tui_currents.tui.widgets.status import count, kind_style, rate, state_text

# (key, header, width); the last error takes what is left.
COLUMNS = (
    ("name", "Connector", 12),
    ("workspace", "Workspace", 9),
    ("destination", "To", 6),
    ("state", "State", 14),
    ("rate", "ev/s", 5),
    ("backlog", "Backlog", 7),
    ("delivered", "Deliv.", 6),
    ("dead", "Dead", 4),
    ("error", "Last error", None),
)
# Which columns give way first when the terminal is narrow (the detail panel below shows them all).
DROPPED_FIRST = ("workspace", "rate", "delivered", "destination")
CELL_PADDING = 2  # DataTable pads each cell by one column on each side
MIN_ERROR_WIDTH = 18
# States as they read in the narrow column: short, and still telling one from another.
SHORT_STATES = {"credentials rejected": "key rejected", "no write key": "no key"}


def visible_columns(width: int) -> tuple[str, ...]:
    """The column keys that fit `width` cells, dropping the least needed first; the last error keeps at
    least MIN_ERROR_WIDTH cells."""
    keys = [key for key, _, _ in COLUMNS]
    widths = {key: w for key, _, w in COLUMNS if w is not None}
    for dropped in (None, *DROPPED_FIRST):
        if dropped is not None:
            keys.remove(dropped)
        used = sum(widths[k] + CELL_PADDING for k in keys if k in widths) + CELL_PADDING
        if width - used >= MIN_ERROR_WIDTH:
            break
    return tuple(keys)


EMPTY_TEXT = (
    "[b]No connectors yet.[/b]\n\n"
    "A connector forwards the events of one Braze workspace to one Segment source. "
    "Press [b]n[/b] to create the first one: name it, give a contact email and the Braze workspace "
    "(a new workspace name is added for you), paste the Segment source's write key, pick US or EU, "
    "and choose the event types.\n\n"
    "Then point Braze's Custom HTTP Currents connector at this machine's receiver, "
    "http://HOST:8750/currents/WORKSPACE, with the workspace's token "
    "(shown by `tui-currents workspace token WORKSPACE`).\n\n"
    "Press [b]?[/b] for help and [b]ctrl+p[/b] for every command by name. "
    "`tui-currents demo` shows it all with demo data, sent nowhere but a local sandbox."
)


class ConnectorsScreen(ViewScreen):
    """Connectors: the home screen."""

    TITLE_TEXT = "Connectors"
    HELP_ID = "connectors"
    BINDINGS = [
        Binding("n", "new", "New", id="connectors.new"),
        Binding("e", "edit", "Edit", id="connectors.edit"),
        Binding("p", "pause", "Pause", id="connectors.pause"),
        Binding("d,delete", "delete", "Delete", show=False, id="connectors.delete"),
        Binding("t", "tail", "Tail", id="connectors.tail"),
        Binding("T", "tail_all", "Tail all", show=False, id="connectors.tail_all"),
        Binding("s", "test", "Test", id="connectors.test"),
        Binding("h", "health", "Health", id="connectors.health"),
        Binding("x", "dead_letters", "Dead letters", id="connectors.dead_letters"),
        Binding("w", "workspaces", "Workspaces", show=False, id="connectors.workspaces"),
        Binding("q", "app.quit", "Quit", show=False, id="connectors.quit"),
    ]

    def compose_view(self) -> ComposeResult:
        with Vertical(id="connectors-body"):
            yield Static(EMPTY_TEXT, id="empty", classes="empty-state")
            table: DataTable = DataTable(
                id="connectors", cursor_type="row", zebra_stripes=True, cursor_foreground_priority="css"
            )
            yield table
            yield Static(id="connector-detail", classes="detail")
        self._rows: dict[str, ConnectorRow] = {}
        self._columns: tuple[str, ...] = ()

    def _fit_columns(self) -> None:
        """Lay the table's columns out for the screen's width (again when it changes)."""
        wanted = visible_columns(self.size.width or 80)
        if wanted == self._columns:
            return
        table = self.query_one(DataTable)
        table.clear(columns=True)
        for key, label, width in COLUMNS:
            if key in wanted:
                table.add_column(label, key=key, width=width)
        self._columns = wanted
        if self._rows:
            rows = list(self._rows.values())
            self._rows = {}
            self._show(rows)

    def on_resize(self) -> None:
        self._fit_columns()

    def on_mount(self) -> None:
        super().on_mount()
        self._fit_columns()
        self.query_one("#empty").display = False
        self.query_one(DataTable).focus()

    # ------------------------------------------------------------------ data

    async def load(self) -> None:
        backend = self.currents_app.backend
        try:
            rows = await backend.run(backend.connector_rows)
        except ConfigError as exc:
            self._show_problem(str(exc))
            return
        self._show(rows)

    def _show_problem(self, text: str) -> None:
        empty = self.query_one("#empty", Static)
        empty.update(Text(f"The config file cannot be used:\n\n{text}\n\nFix it, and this screen updates."))
        empty.display = True
        self.query_one(DataTable).display = False

    def _show(self, rows: list[ConnectorRow]) -> None:
        table = self.query_one(DataTable)
        empty = self.query_one("#empty", Static)
        if not rows:
            empty.update(EMPTY_TEXT)
            empty.display = True
            table.display = False
            self.query_one("#connector-detail", Static).display = False
            self._rows = {}
            return
        empty.display = False
        table.display = True
        self.query_one("#connector-detail", Static).display = True
        names = [r.name for r in rows]
        if names != list(self._rows):
            current = self.selected_name
            table.clear()
            for row in rows:
                table.add_row(*self._cells(row), key=row.name)
            if current in names:
                table.move_cursor(row=names.index(current), animate=False)
        else:
            for row in rows:
                for key, value in zip(self._columns, self._cells(row), strict=True):
                    table.update_cell(row.name, key, value)
        self._rows = {r.name: r for r in rows}
        self._show_detail()

    def _cells(self, row: ConnectorRow) -> list[Text]:
        app = self.app
        dead_style = kind_style(app, "bad") if row.dead_letters else None
        backlog_kind = "warning" if row.backlog and row.state_kind != "good" else None
        cells = {
            "name": Text(row.name, no_wrap=True, overflow="ellipsis"),
            "workspace": Text(row.workspace, no_wrap=True, overflow="ellipsis"),
            "destination": Text(row.destination.split(":")[0], no_wrap=True, overflow="ellipsis"),
            "state": state_text(app, SHORT_STATES.get(row.state, row.state), row.state_kind),
            "rate": Text(rate(row.events_per_second), justify="right"),
            "backlog": Text(
                count(row.backlog),
                justify="right",
                style=kind_style(app, backlog_kind) if backlog_kind else "",
            ),
            "delivered": Text(count(row.delivered), justify="right"),
            "dead": Text(count(row.dead_letters), justify="right", style=dead_style or ""),
            "error": Text(
                _short(row.last_error or "", 60),
                no_wrap=True,
                overflow="ellipsis",
                style=kind_style(self.app, "muted"),
            ),
        }
        return [cells[key] for key in self._columns]

    @property
    def selected_name(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count or not table.display:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:  # no rows or the cursor is out of range during a rebuild
            return None
        return key.value

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_edit()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        name = self.selected_name
        row = self._rows.get(name) if name else None
        detail = self.query_one("#connector-detail", Static)
        if row is None:
            detail.update("")
            return
        app = self.app
        text = Text(no_wrap=False)
        text.append(row.name, style="bold")
        text.append(f" · workspace {row.workspace} · to Segment {row.destination}\n")
        text.append("State: ")
        text.append_text(state_text(app, row.state, row.state_kind))
        if row.detail:
            text.append(f" — {row.detail}")
        text.append("\n")
        text.append(
            f"Delivered {count(row.delivered)} · retried {count(row.retried)}"
            f" · dead letters {count(row.dead_letters)} · backlog {count(row.backlog)}\n"
        )
        if row.warning:
            text.append(f"Warning: {row.warning}\n", style=kind_style(app, "warning"))
        if row.last_error:
            text.append("Last error: ", style="bold")
            text.append(row.last_error, style=kind_style(app, "bad"))
        detail.update(text)

    # ------------------------------------------------------------------ actions

    def action_new(self) -> None:
        self.currents_app.new_connector()

    def action_edit(self) -> None:
        if name := self._need_selection("edit"):
            self.currents_app.edit_connector(name)

    async def action_pause(self) -> None:
        if name := self._need_selection("pause or resume"):
            row = self._rows.get(name)
            await self.currents_app.set_paused(name, not (row.paused if row else False))
            await self.reload()

    def action_delete(self) -> None:
        if name := self._need_selection("delete"):
            self.currents_app.delete_connector(name)

    def action_tail(self) -> None:
        self.currents_app.open_tail(self.selected_name)

    def action_tail_all(self) -> None:
        self.currents_app.open_tail(None)

    async def action_test(self) -> None:
        if name := self._need_selection("send test events through"):
            await self.currents_app.send_test_events(name)

    def action_health(self) -> None:
        self.currents_app.open_health()

    def action_dead_letters(self) -> None:
        self.currents_app.open_dead_letters()

    def action_workspaces(self) -> None:
        self.currents_app.open_workspaces()

    def _need_selection(self, what: str) -> str | None:
        name = self.selected_name
        if name is None:
            self.app.notify(
                f"There is no connector to {what} yet: press n to create one.", severity="warning"
            )
        return name


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
