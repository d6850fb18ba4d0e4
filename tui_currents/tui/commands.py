"""The command palette's commands (ctrl+p), named by area: "connector: ...", "view: ...", "theme: ..."."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.markup import escape

from tui_currents.tui.backend import ConfigError


@dataclass(frozen=True, slots=True)
class Command:
    """One palette entry."""

    name: str
    help: str
    run: Callable[[], object]


def editor_commands(editor) -> list[Command]:
    """The editor's own actions, for the palette opened over it."""
    from tui_currents.tui.widgets.event_tree import EventTree

    tree = editor.query_one(EventTree)
    verb = "launch" if editor.creating else "update"
    return [
        Command(
            f"editor: {verb}", "Save this connector (ctrl+s)", partial(editor.run_action, f"save('{verb}')")
        ),
        Command("editor: cancel", "Close the editor (asks first if anything changed)", editor.action_cancel),
        Command("editor: select every event type", "Tick the whole event tree", tree.action_select_all),
        Command("editor: select no event type", "Untick the whole event tree", tree.action_select_none),
        Command("editor: filter event types", "Type to narrow the event tree", tree.action_filter),
    ]


def app_commands(app, screen=None) -> list[Command]:
    """Every command the app offers now (connectors and themes as they are at this moment), and those of
    `screen`, the screen the palette was opened over."""
    from tui_currents.tui.screens.editor import EditorScreen

    commands = editor_commands(screen) if isinstance(screen, EditorScreen) else []
    commands += [
        Command("connector: new", "Create a connector (the editor)", app.new_connector),
        Command("view: connectors", "The list of connectors (home)", app.show_home),
        Command(
            "view: tail (all connectors)", "Live events of every connector", partial(app.open_tail, None)
        ),
        Command("view: health", "Throughput and health of every connector", app.open_health),
        Command("view: workspaces", "Braze workspaces: add one, show or rotate a token", app.open_workspaces),
        Command(
            "view: dead letters", "Messages that were not delivered, with reasons", app.open_dead_letters
        ),
        Command("dead letters: retry all", "Requeue every dead letter (asks first)", app.retry_dead_letters),
        Command(
            "dead letters: export",
            "Write the dead letters as JSON lines into the home",
            app.export_dead_letters,
        ),
        Command("app: help", "Keys of the current screen", app.action_help),
        Command("app: quit", "Leave (an in-process engine stops; queued events are kept)", app.action_quit),
    ]
    try:
        connectors = app.backend.load_config().connectors
    except ConfigError:
        connectors = []
    for c in connectors:
        name = c.name
        commands += [
            Command(f"connector: edit {name}", f"Change {name}", partial(app.edit_connector, name)),
            Command(
                f"connector: {'resume' if c.paused else 'pause'} {name}",
                "Sending stops; events keep being queued" if not c.paused else "Send what is queued",
                partial(app.set_paused, name, not c.paused),
            ),
            Command(
                f"connector: delete {name}", "Remove it (asks first)", partial(app.delete_connector, name)
            ),
            Command(
                f"connector: send test events {name}",
                "One event of each selected type",
                partial(app.send_test_events, name),
            ),
            Command(f"view: tail {name}", f"Live events of {name}", partial(app.open_tail, name)),
        ]
    for theme in app.our_themes:
        commands.append(
            Command(
                f"theme: {theme}",
                escape("Switch theme (saved in [ui] theme)"),  # help text is markup: [ui] is literal
                partial(app.set_theme, theme),
            )
        )
    return commands


class CurrentsCommands(Provider):
    """tui-currents' commands for Textual's command palette."""

    async def startup(self) -> None:
        # Once per opening of the palette: the config file is read once, not at every key typed.
        self._commands = app_commands(self.app, self.screen)

    async def discover(self) -> Hits:
        for command in self._commands:
            yield DiscoveryHit(command.name, command.run, help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._commands:
            score = matcher.match(command.name)
            if score > 0:
                yield Hit(score, matcher.highlight(command.name), command.run, help=command.help)
