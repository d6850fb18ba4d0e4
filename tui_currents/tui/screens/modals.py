"""Small dialogs: confirm an action, show one Segment message, show the keys of a screen."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from tui_currents.tui.widgets.status import kind_style


class ConfirmScreen(ModalScreen[bool]):
    """Ask a yes/no question; dismisses with True only on an explicit yes."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: str, detail: str = "", *, yes: str = "Yes", danger: bool = False) -> None:
        super().__init__()
        self.question = question
        self.detail = detail
        self.yes_label = yes
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label(Text(self.question), id="question", classes="dialog-title")
            if self.detail:
                yield Static(Text(self.detail), id="detail", classes="dialog-detail")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes_label} (y)", id="yes", variant="error" if self.danger else "primary")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class MessageScreen(ModalScreen[None]):
    """The exact Segment message of one tail line, pretty-printed, with a copy key."""

    BINDINGS = [
        Binding("c", "copy", "Copy", id="message.copy"),
        Binding("escape,q,enter", "close", "Close", id="message.close"),
    ]

    def __init__(self, title: str, message: object, note: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.message = message
        self.note = note
        self.text = json.dumps(message, indent=2, ensure_ascii=False, sort_keys=False)

    def compose(self) -> ComposeResult:
        # Syntax brings in Pygments: imported when a message is first shown, not at start-up.
        from rich.syntax import Syntax

        with Vertical(id="dialog", classes="dialog wide"):
            yield Label(Text(self.title_text), classes="dialog-title")
            if self.note:
                yield Static(Text(self.note), classes="dialog-detail")
            with VerticalScroll(id="message-body"):
                yield Static(Syntax(self.text, "json", theme="ansi_dark", word_wrap=True), id="message-json")
            yield Label("c: copy (works over SSH) · esc: close", classes="dialog-hint")

    def action_copy(self) -> None:
        # The terminal's clipboard escape (OSC 52): no local clipboard tool needed, so it works over SSH.
        self.app.copy_to_clipboard(self.text)
        self.app.notify("Message copied to the clipboard.", timeout=3)

    def action_close(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True, slots=True)
class KeyHelp:
    """One row of the help screen: the keys of one binding."""

    key: str
    description: str
    where: str
    binding_id: str | None = None


class HelpScreen(ModalScreen[None]):
    """What this screen is for and the keys that work on it (as remapped by [ui.keymap])."""

    BINDINGS = [Binding("escape,q,f1,question_mark", "close", "Close", id="help.close")]

    def __init__(self, title: str, intro: str, keys: Sequence[KeyHelp]) -> None:
        super().__init__()
        self.title_text = title
        self.intro = intro
        self.keys = keys

    def compose(self) -> ComposeResult:
        # Markdown brings in markdown-it: imported when the help is first opened, not at start-up.
        from textual.widgets import Markdown

        table = Table(box=None, show_header=True, header_style="bold", expand=True, pad_edge=False)
        table.add_column("key", no_wrap=True)
        table.add_column("does")
        table.add_column("where", style=kind_style(self.app, "muted"), no_wrap=True)
        for item in self.keys:
            does = Text(item.description)
            if item.binding_id:
                does.append(f"  {item.binding_id}", style=kind_style(self.app, "muted"))
            table.add_row(Text(item.key, style="bold"), does, Text(item.where))
        with Vertical(id="dialog", classes="dialog wide"):
            yield Label(Text(f"Help: {self.title_text}"), classes="dialog-title")
            with VerticalScroll(id="help-body"):
                yield Static(table, id="help-keys")
                yield Markdown(self.intro, id="help-intro")
                yield Static(
                    Text(
                        'Remap a key in the config file by its id: [ui.keymap] "connectors.new" = "ctrl+n".'
                    ),
                    classes="dialog-detail",
                )
            yield Label("esc: close · ctrl+p: every command by name", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
