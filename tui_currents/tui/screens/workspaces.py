"""The workspaces view: each Braze workspace with its receiver path and connectors; add one, show its
receiver token once (to paste into Braze, with a copy key), rotate a token.

A token is read from the keyring only when asked for, shown in a dialog, and forgotten when it closes.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, Static

from tui_currents.tui.backend import ConfigError, SecretsUnavailable
from tui_currents.tui.screens.base import ViewScreen, app_of
from tui_currents.tui.screens.modals import ConfirmScreen


class TokenScreen(ModalScreen[None]):
    """A receiver token, shown once: `c` copies it (through the terminal, over SSH too), esc closes."""

    BINDINGS = [
        Binding("c", "copy", "Copy", id="token.copy"),
        Binding("escape,q,enter", "close", "Close", id="token.close"),
    ]

    def __init__(self, workspace: str, token: str, note: str) -> None:
        super().__init__()
        self.workspace = workspace
        self._token = token
        self.note = note

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label(Text(f"Receiver token of {self.workspace}"), classes="dialog-title")
            yield Static(Text(self.note), classes="dialog-detail")
            yield Static(Text(self._token), id="token")
            yield Label("c: copy · esc: close (it is not shown again)", classes="dialog-hint")

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self._token)
        self.app.notify("Token copied to the clipboard.", timeout=3)

    def action_close(self) -> None:
        self._token = ""
        self.dismiss(None)


class NameScreen(ModalScreen[str | None]):
    """Ask for a new workspace's name."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="name.cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label("New Braze workspace", classes="dialog-title")
            yield Input(placeholder="e.g. marketing", id="workspace-name")
            yield Static(id="name-error", classes="field-error")
            yield Label("enter: add (a receiver token is generated) · esc: cancel", classes="dialog-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        name = event.value.strip()
        problems = app_of(self).backend.workspace_problems(name)
        if problems:
            error = self.query_one("#name-error", Static)
            error.update(Text(f"✖ {problems[0]}"))
            error.display = True
            return
        self.dismiss(name)

    def action_cancel(self) -> None:
        self.dismiss(None)


class WorkspacesScreen(ViewScreen):
    """Every Braze workspace of this home."""

    TITLE_TEXT = "Workspaces"
    HELP_ID = "workspaces"
    BINDINGS = [
        Binding("a", "add", "Add", id="workspaces.add"),
        Binding("enter,s", "show_token", "Show token", id="workspaces.token"),
        Binding("r", "rotate", "Rotate token", id="workspaces.rotate"),
        Binding("escape,q", "close", "Back", id="workspaces.back"),
    ]

    def compose_view(self) -> ComposeResult:
        table: DataTable = DataTable(
            id="workspaces", cursor_type="row", zebra_stripes=True, cursor_foreground_priority="css"
        )
        table.add_column("Workspace", key="name", width=20)
        table.add_column("Braze posts to", key="path", width=30)
        table.add_column("Connectors", key="connectors")
        yield table
        yield Static(
            "Braze's Custom HTTP Currents export posts to the path, with the token as its bearer token.",
            classes="detail",
        )

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(DataTable).focus()

    async def load(self) -> None:
        backend = self.currents_app.backend
        try:
            cfg = await backend.run(backend.load_config)
        except ConfigError as exc:
            self.report_problem(exc)
            return
        table = self.query_one(DataTable)
        names = [w.name for w in cfg.workspaces]
        current = self.selected
        table.clear()
        for workspace in cfg.workspaces:
            connectors = ", ".join(c.name for c in cfg.connectors_of(workspace.name)) or "none yet"
            table.add_row(workspace.name, workspace.receiver_path, connectors, key=workspace.name)
        if current in names:
            table.move_cursor(row=names.index(current), animate=False)

    @property
    def selected(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        try:
            return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # the cursor is out of range during a rebuild
            return None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.run_worker(self.action_show_token())

    def action_add(self) -> None:
        async def named(name: str | None) -> None:
            if not name:
                return
            try:
                token = await self.currents_app.backend.add_workspace(name)
            except (ConfigError, SecretsUnavailable, ValueError) as exc:
                self.app.notify(str(exc), title="Not added", severity="error", timeout=12)
                return
            await self.reload()
            self.app.push_screen(
                TokenScreen(name, token, "Added. Paste this token into Braze's Currents export for it.")
            )

        self.app.push_screen(NameScreen(), named)

    async def action_show_token(self) -> None:
        if (name := self.selected) is None:
            self.app.notify("There is no workspace yet: press a to add one.", severity="warning")
            return
        try:
            backend = self.currents_app.backend
            token = await backend.run(backend.secrets.get_receiver_token, name)
        except SecretsUnavailable as exc:
            self.app.notify(f"The keyring cannot be read: {exc}", severity="error", timeout=12)
            return
        if token is None:
            self.app.notify(f"{name!r} has no token stored: press r to make one.", severity="warning")
            return
        self.app.push_screen(TokenScreen(name, token, "Paste it into Braze's Currents export."))

    def action_rotate(self) -> None:
        if (name := self.selected) is None:
            return

        async def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                token = await self.currents_app.backend.rotate_receiver_token(name)
            except SecretsUnavailable as exc:
                self.app.notify(f"Not rotated: {exc}", severity="error", timeout=12)
                return
            self.app.push_screen(
                TokenScreen(name, token, "The old token no longer works: paste this one into Braze now.")
            )

        self.app.push_screen(
            ConfirmScreen(
                f"Rotate the receiver token of {name!r}?",
                "The current token stops working at once: Braze gets 401 until the new one is pasted in "
                "its Currents export (Braze retries, so nothing is lost if that is done soon).",
                yes="Rotate",
                danger=True,
            ),
            answered,
        )

    def action_close(self) -> None:
        self.app.pop_screen()
